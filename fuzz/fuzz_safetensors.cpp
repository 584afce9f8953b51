// The safetensors reader on arbitrary bytes: open (header, shapes, offsets, tiling), then read every tensor.
#include <ATen/ATen.h>

#include "fuzz_util.h"
#include "sana/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = sana::fuzz::as_file(data, size, "input.safetensors");
  sana::fuzz::expect_clean_answer([&] {
    const auto file = sana::SafetensorsFile::open(path);
    for (const auto& [name, info] : file->tensors()) {
      const at::Tensor t = file->get(name);
      if (t.numel() > 0) (void)t.to(at::kDouble).sum().item<double>();  // touches every byte
    }
  });
  return 0;
}
