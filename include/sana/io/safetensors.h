#pragma once
// safetensors (https://github.com/huggingface/safetensors) reading and writing.
//
// Layout: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__":
// {str: str}}, then the data buffer; data_offsets are [begin, end) into that buffer.
// The reader memory-maps the file copy-on-write: CPU tensors of a stored dtype are views of the mapping (no copy),
// and writing to such a view copies only the touched pages, never the file.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sana {

struct TensorInfo {
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte range in the data buffer
  uint64_t end = 0;
};

// Name of a dtype in the safetensors format ("F32", "BF16", ...); throws for dtypes the format lacks.
std::string safetensors_dtype_name(at::ScalarType dtype);

// One .safetensors file, memory-mapped. Cheap to share: tensors keep the mapping alive.
class SafetensorsFile {
 public:
  // Opens and validates the file; throws sana::Error naming the file (and tensor) for any malformation.
  static std::shared_ptr<const SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  // CPU tensor with the stored dtype and shape: a view of the mapping when aligned, else a copy.
  at::Tensor get(const std::string& name) const;
  // Drops the tensor's pages from memory (they are read from the file again if touched): after a tensor has been
  // converted to another dtype, so that loading never holds a whole model in both dtypes. Views of it must be gone.
  void release(const std::string& name) const;

  struct Mapping;

 private:
  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  const uint8_t* data_ = nullptr;  // start of the data buffer
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> tensors_;
};

// A checkpoint: one .safetensors file, or shards listed by a `*.safetensors.index.json` weight_map.
class Checkpoint {
 public:
  // `path` is a .safetensors file or a .safetensors.index.json file.
  static Checkpoint open(const std::string& path);
  // Finds `<dir>/<basename>.safetensors` or `<dir>/<basename>.safetensors.index.json` (the sharded form).
  static Checkpoint open_in_directory(const std::string& dir, const std::string& basename);

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  at::Tensor get(const std::string& name) const;
  void release(const std::string& name) const;  // SafetensorsFile::release
  // Where a tensor lives (for error messages).
  const std::string& file_of(const std::string& name) const;
  // __metadata__ of the single file, or the index's "metadata" object (values as JSON text).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index in files_
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device; stored contiguous, little-endian) atomically: a temporary file in the same directory
// is written, flushed and renamed over `path`, so a crash never leaves a half-written file.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace sana
