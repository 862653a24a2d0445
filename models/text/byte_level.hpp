#pragma once
// GPT-2's byte-level alphabet: every byte maps to a printable character (printable Latin-1 bytes
// to themselves, the rest to U+0100...), so byte-level BPE vocabularies are valid text.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace osd::text {

// The UTF-8 encoding of byte b's character.
const std::array<std::string, 256>& byte_to_char();
// Inverse: a character's code point -> its byte, or -1 if the character is not in the alphabet.
int char_to_byte(char32_t cp);

// Maps each byte of `s` to its character.
std::string bytes_to_chars(std::string_view s);
// Maps characters back to bytes; a character outside the alphabet is copied as its UTF-8 bytes.
std::string chars_to_bytes(std::string_view s);

}  // namespace osd::text
