// Temp-file-then-rename writes (atomic_file.h).
#include "sana/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "sana/error.h"

namespace sana {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())) {
  out_.open(tmp_, std::ios::binary | std::ios::trunc);
  if (!out_) throw Error("cannot write " + path_ + " (is the directory there and writable?)");
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  out_.close();
  std::remove(tmp_.c_str());
}

namespace {

// Fault injection for the kill -9 test (docs/RELIABILITY.md): SANA_TEST_KILL_BEFORE_RENAME=NAME:K makes the process
// SIGKILL itself at the K-th commit of a file named NAME, with the temp file written and the old file in place:
// the moment a crash would do the most harm.
void maybe_kill_before_rename(const std::string& path) {
  static const char* spec = std::getenv("SANA_TEST_KILL_BEFORE_RENAME");
  static int seen = 0;
  if (!spec || !*spec) return;
  const std::string s(spec);
  const size_t colon = s.rfind(':');
  const std::string name = s.substr(0, colon);
  if (std::filesystem::path(path).filename() != name) return;
  if (++seen == std::atoi(s.c_str() + colon + 1)) std::raise(SIGKILL);
}

}  // namespace

void AtomicFile::commit() {
  out_.flush();
  const bool ok = static_cast<bool>(out_);
  out_.close();
  if (!ok) throw Error("writing " + path_ + " failed (disk full?)");
  if (const int fd = ::open(tmp_.c_str(), O_RDONLY); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  maybe_kill_before_rename(path_);
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw Error("cannot rename " + tmp_ + " to " + path_ + ": " + std::strerror(errno));
  committed_ = true;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  AtomicFile f(path);
  f.stream().write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.commit();
}

}  // namespace sana
