#pragma once
// Typed access to tokenizer.json fields with errors that name the file and the key.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "models/common/error.hpp"

namespace osd::text {

inline std::string field_string(const nlohmann::json& j, const char* key, const std::string& where,
                                const std::string& fallback = "\x01") {
  if (!j.is_object()) throw Error(where + ": expected an object");
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback != "\x01") return fallback;
    throw Error(where + ": missing \"" + key + "\"");
  }
  if (!it->is_string()) throw Error(where + ": \"" + key + "\" is not a string");
  return it->get<std::string>();
}

inline bool field_bool(const nlohmann::json& j, const char* key, const std::string& where,
                       bool fallback) {
  if (!j.is_object()) throw Error(where + ": expected an object");
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(where + ": \"" + key + "\" is not true or false");
  return it->get<bool>();
}

inline int64_t field_int(const nlohmann::json& j, const char* key, const std::string& where,
                         int64_t fallback) {
  if (!j.is_object()) throw Error(where + ": expected an object");
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) throw Error(where + ": \"" + key + "\" is not an integer");
  return it->get<int64_t>();
}

// The components of a "Sequence" (j[key], an array), each made by make(element, where); null ones
// are left out.
template <typename Make>
auto make_list(const nlohmann::json& j, const char* key, const std::string& where, Make make) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) throw Error(where + ": \"" + key + "\" must be an array");
  std::vector<decltype(make(*it, where))> parts;
  for (size_t i = 0; i < it->size(); ++i)
    if (auto p = make((*it)[i], where + "." + key + "[" + std::to_string(i) + "]"))
      parts.push_back(std::move(p));
  return parts;
}

// {"String": "..."} or {"Regex": "..."}: a regex pattern either way (a string is escaped).
std::string field_pattern(const nlohmann::json& j, const std::string& where);

}  // namespace osd::text
