#include "sana/io/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "sana/error.h"
#include "sana/io/atomic_file.h"
#include "sana/io/config.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors stores little-endian data; big-endian hosts are not supported"
#endif

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Records the keys of the outermost object and stops at the first that repeats. Linear in the header's size.
struct TopLevelKeys : nlohmann::json_sax<json> {
  int depth = 0;
  std::unordered_set<std::string> seen;
  std::string duplicate;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return ++depth, true; }
  bool end_object() override { return --depth, true; }
  bool start_array(std::size_t) override { return ++depth, true; }
  bool end_array() override { return --depth, true; }
  bool key(string_t& k) override {
    if (depth == 1 && !seen.insert(k).second) duplicate = k;
    return duplicate.empty();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }
};

std::string first_duplicate_top_level_key(const char* begin, const char* end) {
  TopLevelKeys keys;
  json::sax_parse(begin, end, &keys);  // syntax errors are reported by the full parse that follows
  return keys.duplicate;
}

}  // namespace

namespace sana {
namespace {

// The same cap as the reference implementation: a longer header is a corrupt (or hostile) file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const std::map<std::string, at::ScalarType>& dtype_table() {
  static const std::map<std::string, at::ScalarType> table = {
      {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
      {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
      {"U8", at::kByte},    {"BOOL", at::kBool},
  };
  return table;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error("safetensors file " + path + ": " + what);
}

}  // namespace

std::string safetensors_dtype_name(at::ScalarType dtype) {
  for (const auto& [name, type] : dtype_table())
    if (type == dtype) return name;
  throw Error(std::string("safetensors cannot store dtype ") + c10::toString(dtype));
}

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr != nullptr) munmap(addr, size);
  }
};

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto file = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  file->path_ = path;

  // Checked before opening: opening a named pipe for reading blocks until a writer comes.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail(path, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  // Private, writable mapping: tensors may be modified in place (copy-on-write), the file never changes.
  void* addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (addr == MAP_FAILED) fail(path, std::string("mmap failed: ") + std::strerror(errno));
  file->mapping_ = std::make_shared<Mapping>();
  file->mapping_->addr = addr;
  file->mapping_->size = size;
  const auto* bytes = static_cast<const uint8_t*>(addr);

  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);
  if (header_len > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderBytes) + " bytes");
  if (header_len > size - 8)
    fail(path, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                   std::to_string(size) + " bytes)");
  const uint64_t data_size = size - 8 - header_len;
  file->data_ = bytes + 8 + header_len;

  // Duplicate top-level names are found by a first SAX pass (nlohmann would silently keep the last one). Its
  // callback parser is not used for this: it rescans the whole object after each entry, quadratic in the tensor count.
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  const std::string duplicate = first_duplicate_top_level_key(text, text + header_len);
  json header;
  try {
    header = json::parse(text, text + header_len);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) fail(path, "tensor name '" + duplicate + "' appears twice in the header");
  if (!header.is_object()) fail(path, "header is not a JSON object");

  std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(path, "__metadata__ is not an object of strings");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail(path, "__metadata__ value for '" + k + "' is not a string");
        file->metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!entry.is_object()) fail(path, where + "entry is not an object");
    if (!entry.contains("dtype") || !entry["dtype"].is_string()) fail(path, where + "missing string 'dtype'");
    if (!entry.contains("shape") || !entry["shape"].is_array()) fail(path, where + "missing array 'shape'");
    if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() || entry["data_offsets"].size() != 2)
      fail(path, where + "missing 'data_offsets' [begin, end]");

    const std::string dtype_name = entry["dtype"].get<std::string>();
    auto it = dtype_table().find(dtype_name);
    if (it == dtype_table().end())
      fail(path, where + "unknown dtype '" + dtype_name + "' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
    TensorInfo info;
    info.dtype = it->second;

    // Shapes are multiplied in order with an overflow check, as PyTorch does when it allocates: a [2^31, 2^31] F32
    // tensor is 2^64 bytes (refused), not 0, and [2^32, 2^32, 0] is refused as PyTorch would refuse it.
    int64_t numel = 1;
    bool overflow = false;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned()) fail(path, where + "shape entries must be non-negative integers");
      const uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) fail(path, where + "shape entry too large");
      overflow = overflow || __builtin_mul_overflow(numel, static_cast<int64_t>(v), &numel);
      info.shape.push_back(static_cast<int64_t>(v));
    }
    int64_t bytes = 0;
    overflow = overflow || __builtin_mul_overflow(numel, static_cast<int64_t>(c10::elementSize(info.dtype)), &bytes);
    if (overflow) fail(path, where + "shape " + entry["shape"].dump() + " has more bytes than a 64-bit size can count");
    const uint64_t expected = static_cast<uint64_t>(bytes);
    for (const auto& o : entry["data_offsets"])
      if (!o.is_number_unsigned()) fail(path, where + "data_offsets must be non-negative integers");
    info.begin = entry["data_offsets"][0].get<uint64_t>();
    info.end = entry["data_offsets"][1].get<uint64_t>();
    if (info.begin > info.end) fail(path, where + "data_offsets begin > end");
    if (info.end > data_size)
      fail(path, where + "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                     ") out of range: the data buffer has " + std::to_string(data_size) + " bytes");
    if (info.end - info.begin != expected)
      fail(path, where + "byte range holds " + std::to_string(info.end - info.begin) + " bytes but shape x " +
                     dtype_name + " needs " + std::to_string(expected));
    ranges.push_back({{info.begin, info.end}, name});
    file->tensors_.emplace(name, std::move(info));
  }

  // The tensors must tile the data buffer exactly: no overlap, no gap, nothing after the last one.
  std::sort(ranges.begin(), ranges.end());
  uint64_t cursor = 0;
  for (const auto& [range, name] : ranges) {
    if (range.first < cursor) fail(path, "tensor '" + name + "' overlaps the previous tensor's bytes");
    if (range.first > cursor)
      fail(path, "gap of " + std::to_string(range.first - cursor) + " bytes before tensor '" + name + "'");
    cursor = range.second;
  }
  if (cursor != data_size)
    fail(path, std::to_string(data_size - cursor) + " unused bytes after the last tensor");
  return file;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(path_, "no tensor named '" + name + "'");
  return it->second;
}

at::Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorInfo& ti = info(name);
  const auto options = at::TensorOptions().dtype(ti.dtype);
  if (ti.end == ti.begin) return at::empty(ti.shape, options);
  uint8_t* ptr = const_cast<uint8_t*>(data_ + ti.begin);
  if (reinterpret_cast<uintptr_t>(ptr) % c10::elementSize(ti.dtype) == 0) {
    auto keep_alive = mapping_;
    return at::from_blob(ptr, ti.shape, [keep_alive](void*) {}, options);
  }
  at::Tensor copy = at::empty(ti.shape, options);
  std::memcpy(copy.data_ptr(), ptr, ti.end - ti.begin);
  return copy;
}

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint ckpt;
  ckpt.path_ = path;
  const std::string suffix = ".index.json";
  const bool is_index = path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  if (!is_index) {
    auto file = SafetensorsFile::open(path);
    for (const auto& [name, _] : file->tensors()) ckpt.where_[name] = 0;
    ckpt.metadata_ = file->metadata();
    ckpt.files_.push_back(std::move(file));
    return ckpt;
  }

  json index;
  try {
    index = json::parse(read_text_file(path, 256 << 20));
  } catch (const json::exception& e) {
    throw Error("checkpoint index " + path + ": not valid JSON: " + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw Error("checkpoint index " + path + ": missing object 'weight_map'");
  if (index.contains("metadata") && index["metadata"].is_object())
    for (const auto& [k, v] : index["metadata"].items()) ckpt.metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();

  const fs::path dir = fs::path(path).parent_path();
  std::map<std::string, size_t> shard_index;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) throw Error("checkpoint index " + path + ": weight_map['" + name + "'] is not a file name");
    const std::string shard_name = shard.get<std::string>();
    auto it = shard_index.find(shard_name);
    if (it == shard_index.end()) {
      const fs::path shard_path = dir / shard_name;
      if (!fs::exists(shard_path))
        throw Error("checkpoint index " + path + ": names shard " + shard_name + " (for tensor '" + name +
                    "'), which does not exist");
      ckpt.files_.push_back(SafetensorsFile::open(shard_path.string()));
      it = shard_index.emplace(shard_name, ckpt.files_.size() - 1).first;
    }
    if (!ckpt.files_[it->second]->contains(name))
      throw Error("checkpoint index " + path + ": tensor '" + name + "' is mapped to " + shard_name +
                  ", which does not contain it");
    ckpt.where_[name] = it->second;
  }
  return ckpt;
}

Checkpoint Checkpoint::open_in_directory(const std::string& dir, const std::string& basename) {
  const fs::path single = fs::path(dir) / (basename + ".safetensors");
  const fs::path index = fs::path(dir) / (basename + ".safetensors.index.json");
  if (fs::exists(single)) return open(single.string());
  if (fs::exists(index)) return open(index.string());
  std::string found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().extension() == ".safetensors") found += " " + entry.path().filename().string();
  throw Error("directory " + dir + ": no " + basename + ".safetensors or " + basename +
              ".safetensors.index.json" + (found.empty() ? std::string() : " (found:" + found + ")"));
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, _] : where_) out.push_back(name);
  return out;
}

const std::string& Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("checkpoint " + path_ + ": no tensor named '" + name + "'");
  return files_[it->second]->path();
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("checkpoint " + path_ + ": no tensor named '" + name + "'");
  return files_[it->second]->info(name);
}

at::Tensor Checkpoint::get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("checkpoint " + path_ + ": no tensor named '" + name + "'");
  return files_[it->second]->get(name);
}

void Checkpoint::release(const std::string& name) const {
  auto it = where_.find(name);
  if (it != where_.end()) files_[it->second]->release(name);
}

void SafetensorsFile::release(const std::string& name) const {
  const TensorInfo& ti = info(name);
  // Whole pages inside the tensor's bytes only: a neighbour's pages stay.
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data_ + ti.begin) + page - 1) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(data_ + ti.end) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::map<std::string, at::Tensor> sorted;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") throw Error("save_safetensors " + path + ": '__metadata__' is not a tensor name");
    if (!t.defined()) throw Error("save_safetensors " + path + ": tensor '" + name + "' is undefined");
    if (!sorted.emplace(name, t.detach().to(at::kCPU).contiguous()).second)
      throw Error("save_safetensors " + path + ": tensor name '" + name + "' given twice");
  }
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    const uint64_t nbytes = t.numel() * t.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data buffer 8-byte aligned

  AtomicFile file(path);
  std::ostream& out = file.stream();
  const uint64_t len = text.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& [name, t] : sorted)
    out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
  file.commit();
}

}  // namespace sana
