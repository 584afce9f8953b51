#pragma once
// The rule for the folders a command writes (docs/RELIABILITY.md): never delete or replace what the command did not
// create unless the user asked for it. A command refuses an output folder that is one of its inputs, and one that
// already holds files, unless it continues its own run there (--resume) or the user passed --overwrite.
#include <string>
#include <utility>
#include <vector>

namespace sana {

struct OutputFolderRule {
  std::string flag = "-o/--out";  // how the output is spelled in messages
  bool resume = false;            // continuing a run that lives in the folder
  bool overwrite = false;         // the user allows replacing what is there
  // Paths the folder may only contain (e.g. the folders a command adds into a model folder); empty: the whole folder
  // must be empty.
  std::vector<std::string> written_parts;
};

// Whether two paths name one file or folder: the same one on disk where both exist (links included), else the same
// path once made absolute and normal.
bool same_path(const std::string& a, const std::string& b);

// Whether `inner` lies strictly inside the folder `outer` (by their absolute, normal paths, links resolved where
// they exist).
bool path_inside(const std::string& inner, const std::string& outer);

// Error naming the flag when `out` may not be written: it is one of `inputs` ({flag, path}), lies inside one, or holds
// one, or it already holds files the command would replace without resume or overwrite.
void check_output_folder(const std::string& out, const std::vector<std::pair<std::string, std::string>>& inputs,
                         const OutputFolderRule& rule);

}  // namespace sana
