// Every numeric flag read strictly (commands.h, `require_strict_numbers`). CLI11 2.1 converts with strtoll /
// strtoull / strtod in base 0 and without looking at errno: 2^63 became 2^63 - 1, "010" became 8, and an empty value
// could end up as the option's zero. Its validators see the text before conversion, so one check per option, added
// after every subcommand has registered its flags, covers them all (as a transform: it runs first and rewrites an
// integer in canonical base 10).
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

#include "commands.h"

namespace sana::cli {
namespace {

// The error when `parse` (a strtoX in base 10) does not consume all of `text` or reports a range error; else empty,
// and an integer's text rewritten in canonical form (CLI11 converts it again, in base 0: "010" must reach it as "10").
template <typename Parse>
std::string whole_number_error(std::string& text, const char* kind, bool integer, Parse parse) {
  if (text.empty()) return std::string("expected ") + kind + ", got an empty value";
  char* end = nullptr;
  errno = 0;
  const auto value = parse(text.c_str(), &end);
  if (end != text.c_str() + text.size() || std::isspace(static_cast<unsigned char>(text[0])))
    return std::string("expected ") + kind + ", got '" + text + "'";
  if (errno == ERANGE) return "'" + text + "' is out of range for " + kind;
  if (integer) text = std::to_string(value);
  return {};
}

CLI::Validator strict(const std::string& type) {
  const bool is_unsigned = type == "UINT", is_int = is_unsigned || type == "INT";
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        if (is_unsigned && text.find('-') != std::string::npos)
          return "expected a non-negative integer, got '" + text + "'";
        if (is_unsigned)
          return whole_number_error(text, "a 64-bit unsigned integer", true,
                                    [](const char* s, char** e) { return std::strtoull(s, e, 10); });
        if (is_int)
          return whole_number_error(text, "a 64-bit integer", true,
                                    [](const char* s, char** e) { return std::strtoll(s, e, 10); });
        return whole_number_error(text, "a number", false, [](const char* s, char** e) { return std::strtod(s, e); });
      },
      "");
}

}  // namespace

void require_strict_numbers(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) {
    // "INT", or "INT:..." once a check such as CLI::Range has added its description.
    const std::string full = option->get_type_name(), type = full.substr(0, full.find(':'));
    if (type == "INT" || type == "UINT" || type == "FLOAT") option->transform(strict(type));  // first, and may rewrite the text
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) require_strict_numbers(*sub);
}

}  // namespace sana::cli
