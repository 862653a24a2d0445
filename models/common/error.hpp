#pragma once
// The one exception type models/ throws. Every message names what was wrong and the value seen;
// functions validate before they mutate, so state is unchanged when one is thrown.
#include <stdexcept>
#include <string>

namespace osd {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace osd
