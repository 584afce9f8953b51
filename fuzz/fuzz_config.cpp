// Every config parser on arbitrary text. The first byte picks the parser (seeds carry the right one for their
// file); on success the derived sizes the models compute from a config are evaluated too.
#include <vector>

#include "fuzz_util.h"
#include "sana/diffusion/flow_scheduler.h"
#include "sana/io/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string path = sana::fuzz::as_file(data + 1, size - 1, "config.json");
  sana::fuzz::expect_clean_answer([&] {
    switch (data[0] % 7) {
      case 0: {
        const auto c = sana::load_sana_transformer_config(path);
        (void)(c.inner_dim() + c.cross_inner_dim() + c.ff_hidden());
        break;
      }
      case 1: (void)sana::load_sana_controlnet_config(path).ff_hidden(); break;
      case 2: (void)sana::load_autoencoder_dc_config(path).spatial_factor(); break;
      case 3: (void)sana::load_gemma2_config(path); break;
      case 4: (void)sana::load_scm_scheduler_config(path); break;
      case 5: (void)sana::load_flow_scheduler_config(path); break;
      case 6: (void)sana::load_model_index(path); break;
    }
  });
  return 0;
}
