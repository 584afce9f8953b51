// Pipeline last step: decode and finish (decode.h).
#include "sana/pipeline/decode.h"

#include <chrono>

#include "sana/error.h"
#include "sana/pipeline/pipeline.h"
#include "sana/pipeline/resolution.h"

namespace sana {

void decode_and_finish(const PipelineComponents& c, const GenerateOptions& o, GenerateResult& r,
                       const ProgressFn& progress) {
  if (o.pause_point) o.pause_point();
  const auto t0 = std::chrono::steady_clock::now();
  if (o.tiny_decode) {
    if (!c.tiny_vae)
      throw Error("decoder: tiny needs a tiny decoder, and the pipeline has none (a vae_tiny/ folder in the model, "
                  "or one given with --tiny-vae; `sana-sprint train-tiny-decoder` makes one)");
    r.vae_decoded = c.tiny_vae->decode(r.final_latents / c.tiny_vae->config().scaling_factor).to(at::kFloat);
  } else {
    const AutoencoderDC& vae = *c.vae;
    const at::Tensor z = r.final_latents.to(vae.dtype()) / vae.config().scaling_factor;
    r.vae_decoded = (o.tiled_decode ? vae.decode_tiled(z, o.tiling) : vae.decode(z)).to(at::kFloat);
  }
  const char* stage = o.tiny_decode ? "tiny decode" : "vae decode";
  require_finite(r.vae_decoded, stage);
  if (progress) progress(stage, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  r.images = (resize_from_bin(r.vae_decoded, o.height, o.width) / 2 + 0.5).clamp(0, 1).cpu();
}

}  // namespace sana
