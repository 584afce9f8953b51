// Output folders that never swallow user data (output_folder.h).
#include "sana/io/output_folder.h"

#include <filesystem>

#include "sana/error.h"

namespace fs = std::filesystem;

namespace sana {
namespace {

bool same_folder(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

}  // namespace

void check_output_folder(const std::string& out, const std::vector<std::pair<std::string, std::string>>& inputs,
                         const OutputFolderRule& rule) {
  if (out.empty()) throw Error(rule.flag + ": no output folder given");
  for (const auto& [flag, path] : inputs)
    if (!path.empty() && same_folder(out, path))
      throw Error(rule.flag + ": " + out + " is also the input of " + flag + "; write to another folder");
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out, ec)) throw Error(rule.flag + ": " + out + " exists and is not a folder");
  if (rule.resume || rule.overwrite) return;
  if (rule.written_parts.empty()) {
    if (!fs::is_empty(out, ec))
      throw Error(rule.flag + ": " + out + " is not empty; give an empty or new folder, --resume to continue the run "
                  "in it, or --overwrite to replace its contents");
    return;
  }
  for (const auto& part : rule.written_parts)
    if (fs::exists(fs::path(out) / part, ec))
      throw Error(rule.flag + ": " + (fs::path(out) / part).string() + " exists; this command would replace it "
                  "(--overwrite to allow that)");
}

}  // namespace sana
