#include "models/text/utf8.hpp"

#include <utf8proc.h>

#include <cstdlib>

#include "models/common/error.hpp"

namespace osd::text {

size_t valid_sequence_length(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return 1;
  size_t need = 0;
  unsigned lower = 0x80, upper = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lower = 0xA0;
    if (b == 0xED) upper = 0x9F;  // no surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lower = 0x90;
    if (b == 0xF4) upper = 0x8F;  // <= U+10FFFF
  } else {
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return 0;
    const auto c = static_cast<unsigned char>(s[i + k]);
    if (c < lower || c > upper) return 0;
    lower = 0x80;
    upper = 0xBF;
  }
  return need + 1;
}

std::string lossy_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = valid_sequence_length(s, i);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    // The maximal subpart: a lead byte followed by as many valid continuation bytes as fit.
    const auto b = static_cast<unsigned char>(s[i]);
    size_t j = i + 1;
    if (b >= 0xC2 && b <= 0xF4) {
      unsigned lower = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
      unsigned upper = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
      const size_t need = b <= 0xDF ? 1 : b <= 0xEF ? 2 : 3;
      for (size_t k = 0; k < need && j < s.size(); ++k, ++j) {
        const auto c = static_cast<unsigned char>(s[j]);
        if (c < lower || c > upper) break;
        lower = 0x80;
        upper = 0xBF;
      }
    }
    out += "\xEF\xBF\xBD";
    i = j;
  }
  return out;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = valid_sequence_length(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

size_t incomplete_tail(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    const auto b = static_cast<unsigned char>(s[s.size() - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking
    const size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

char32_t code_point(std::string_view c) {
  if (c.empty()) return 0;
  const auto b0 = static_cast<unsigned char>(c[0]);
  auto cont = [&](size_t k) {
    return static_cast<char32_t>(static_cast<unsigned char>(c[k]) & 0x3F);
  };
  if (c.size() == 1) return b0;
  if (c.size() == 2) return (static_cast<char32_t>(b0 & 0x1F) << 6) | cont(1);
  if (c.size() == 3) return (static_cast<char32_t>(b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2);
  return (static_cast<char32_t>(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
}

std::vector<std::string_view> split_chars(std::string_view s) {
  std::vector<std::string_view> chars;
  chars.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = valid_sequence_length(s, i);
    if (!n) n = 1;  // callers pass valid text; never loop forever on bad bytes
    chars.push_back(s.substr(i, n));
    i += n;
  }
  return chars;
}

namespace {

std::string utf8proc_apply(std::string_view s, int options, const char* what) {
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                              static_cast<utf8proc_ssize_t>(s.size()), &out,
                              static_cast<utf8proc_option_t>(options));
  if (n < 0) throw Error(std::string(what) + ": " + utf8proc_errmsg(n));
  std::string r(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}

}  // namespace

std::string normalize(std::string_view s, NormalForm form) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::NFC:
      options |= UTF8PROC_COMPOSE;
      break;
    case NormalForm::NFD:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case NormalForm::NFKC:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case NormalForm::NFKD:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  return utf8proc_apply(s, options, "unicode normalization");
}

std::string lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                    static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) throw Error("lowercase: text is not valid UTF-8");
    append_utf8(out, static_cast<char32_t>(utf8proc_tolower(cp)));
    i += static_cast<size_t>(n);
  }
  return out;
}

bool is_whitespace(char32_t cp) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cp == '\t' || cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x85 ||
         cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

std::string trim_whitespace(std::string_view s, bool left, bool right) {
  const auto chars = split_chars(s);
  size_t b = 0, e = chars.size();
  auto space = [&](size_t i) { return is_whitespace(code_point(chars[i])); };
  if (left)
    while (b < e && space(b)) ++b;
  if (right)
    while (e > b && space(e - 1)) --e;
  if (b == e) return {};
  const size_t from = static_cast<size_t>(chars[b].data() - s.data());
  const size_t to = static_cast<size_t>(chars[e - 1].data() - s.data()) + chars[e - 1].size();
  return std::string(s.substr(from, to - from));
}

}  // namespace osd::text
