#include "models/text/byte_level.hpp"

#include "models/text/utf8.hpp"

namespace osd::text {

namespace {

struct Tables {
  std::array<std::string, 256> to_char;
  std::array<int16_t, 512> from_char;  // code points < 0x200 only
  Tables() {
    from_char.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp =
          printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
      append_utf8(to_char[b], cp);
      from_char[cp] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::array<std::string, 256>& byte_to_char() {
  return tables().to_char;
}

int char_to_byte(char32_t cp) {
  return cp < 512 ? tables().from_char[cp] : -1;
}

std::string bytes_to_chars(std::string_view s) {
  const auto& t = tables().to_char;
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) out += t[c];
  return out;
}

std::string chars_to_bytes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = valid_sequence_length(s, i);
    if (!n) n = 1;
    char32_t cp = static_cast<unsigned char>(s[i]);
    if (n == 2) cp = ((cp & 0x1F) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F);
    const int b = n <= 2 ? char_to_byte(cp) : -1;
    if (b >= 0)
      out += static_cast<char>(b);
    else
      out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace osd::text
