// A sharded checkpoint's index (*.safetensors.index.json) on arbitrary text, next to two valid shards.
#include <ATen/ATen.h>

#include "fuzz_util.h"
#include "sana/io/safetensors.h"

namespace {
void write_shards() {
  static bool done = false;
  if (done) return;
  const auto dir = sana::fuzz::work_dir();
  sana::save_safetensors((dir / "model-00001-of-00002.safetensors").string(), {{"a", at::ones({2, 3})}});
  sana::save_safetensors((dir / "model-00002-of-00002.safetensors").string(), {{"b", at::zeros({4}, at::kLong)}});
  done = true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write_shards();
  const std::string path = sana::fuzz::as_file(data, size, "model.safetensors.index.json");
  sana::fuzz::expect_clean_answer([&] {
    const sana::Checkpoint ckpt = sana::Checkpoint::open(path);
    for (const auto& name : ckpt.names()) (void)ckpt.get(name).sum();
  });
  return 0;
}
