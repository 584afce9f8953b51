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

// The first line of a message (LibTorch's errors go on with backtraces and hints).
inline std::string first_line(const std::string& message) {
  const size_t end = message.find('\n');
  return end == std::string::npos ? message : message.substr(0, end);
}

}  // namespace sana
