// Output folders that never swallow user data (output_folder.h).
#include "sana/io/output_folder.h"

#include <filesystem>

#include "sana/error.h"

namespace fs = std::filesystem;

namespace sana {

bool same_path(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
  return fs::weakly_canonical(fs::absolute(a, ec), ec) == fs::weakly_canonical(fs::absolute(b, ec), ec);
}

bool path_inside(const std::string& inner, const std::string& outer) {
  std::error_code ec;
  const fs::path in = fs::weakly_canonical(fs::absolute(inner, ec), ec).lexically_normal();
  const fs::path out = fs::weakly_canonical(fs::absolute(outer, ec), ec).lexically_normal();
  // By components (/a/bc is not inside /a/b): inside when the way from outer to inner starts with neither ".." nor
  // is empty or ".".
  const fs::path rel = in.lexically_relative(out);
  return !rel.empty() && rel != "." && *rel.begin() != "..";
}

void check_output_folder(const std::string& out, const std::vector<std::pair<std::string, std::string>>& inputs,
                         const OutputFolderRule& rule) {
  if (out.empty()) throw Error(rule.flag + ": no output folder given");
  for (const auto& [flag, path] : inputs) {
    if (path.empty()) continue;
    if (same_path(out, path))
      throw Error(rule.flag + ": " + out + " is also the input of " + flag + "; write to another folder");
    if (path_inside(out, path))
      throw Error(rule.flag + ": " + out + " is inside " + path + ", the input of " + flag + "; write to another folder");
    // An input inside the output: only where the command may write (the whole folder, or its written parts).
    bool overlaps = rule.written_parts.empty() && path_inside(path, out);
    for (const auto& part : rule.written_parts) {
      const std::string written = (fs::path(out) / part).string();
      overlaps = overlaps || same_path(path, written) || path_inside(path, written);
    }
    if (overlaps)
      throw Error(rule.flag + ": " + out + " holds " + path + ", the input of " + flag + "; write to another folder");
  }
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
