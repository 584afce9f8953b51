#pragma once
// The one exception type of the library. Messages name the file, tensor or flag at fault and what was
// expected, so the CLI can print them as a single line.
#include <stdexcept>
#include <string>

namespace sana {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace sana
