#pragma once
// Files that appear whole or not at all: written under a temporary name beside the target, flushed to disk, then
// renamed over it. A reader (or a crash) never sees half a file, and a failed write leaves the old file in place.
#include <fstream>
#include <string>

namespace sana {

class AtomicFile {
 public:
  // Opens <path>.tmp.<pid> for writing; Error naming the path if that is not possible.
  explicit AtomicFile(std::string path);
  // Without commit() the temporary file is removed and the target left untouched.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  std::ostream& stream() { return out_; }
  // Flushes, syncs and renames the temporary file over the target. Error naming the path on failure.
  void commit();

 private:
  std::string path_, tmp_;
  std::ofstream out_;
  bool committed_ = false;
};

// The whole of `bytes` to `path` through an AtomicFile; creates missing parent folders.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace sana
