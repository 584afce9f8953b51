// The PNG reader on arbitrary bytes (uploads to the server, control and init images, eval folders).
#include <ATen/ATen.h>

#include "fuzz_util.h"
#include "sana/io/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sana::fuzz::expect_clean_answer([&] {
    const at::Tensor image = sana::decode_png(std::string(reinterpret_cast<const char*>(data), size), "fuzz input");
    (void)image.sum().item<float>();
  });
  return 0;
}
