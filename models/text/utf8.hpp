#pragma once
// UTF-8 helpers shared by the tokenizers: code point iteration, lossy decoding of arbitrary bytes
// (each maximal invalid subpart becomes U+FFFD, as WHATWG TextDecoder and Rust's
// String::from_utf8_lossy do) and Unicode normalization forms (utf8proc).
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace osd::text {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not valid there.
size_t valid_sequence_length(std::string_view s, size_t i);
// The bytes of `s` with every invalid subpart replaced by U+FFFD (valid input is returned as is).
std::string lossy_utf8(std::string_view s);
bool is_valid_utf8(std::string_view s);
// Bytes in s[0..n) that end in the middle of a UTF-8 sequence (0..3): what a stream must hold back.
size_t incomplete_tail(std::string_view s);

void append_utf8(std::string& out, char32_t cp);
// The code point of one valid UTF-8 character.
char32_t code_point(std::string_view one_char);
// The code points of valid UTF-8 `s`, each as its own string (one "character" each).
std::vector<std::string_view> split_chars(std::string_view s);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
// Throws osd::Error if `s` is not valid UTF-8.
std::string normalize(std::string_view s, NormalForm form);
std::string lowercase(std::string_view s);
bool is_whitespace(char32_t cp);
// `s` without its leading (left) and/or trailing (right) Unicode whitespace.
std::string trim_whitespace(std::string_view s, bool left, bool right);

}  // namespace osd::text
