// Image inputs of the pipelines (image_input.h).
#include "sana/pipeline/image_input.h"

#include "sana/error.h"
#include "sana/io/resize.h"
#include "sana/pipeline/pipeline.h"

namespace sana {

at::Tensor preprocess_image(const at::Tensor& image, int height, int width, const char* what) {
  if (!image.defined() || (image.dim() != 3 && image.dim() != 4) || image.size(-3) != 3)
    throw Error(std::string(what) + ": expected an RGB image [3, H, W] or [B, 3, H, W], got " +
                (image.defined() ? c10::str(image.sizes()) : std::string("nothing")));
  const at::Tensor batch = image.dim() == 3 ? image.unsqueeze(0) : image;
  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < batch.size(0); ++b) {
    at::Tensor hwc = at::round(batch[b].to(at::kFloat).cpu().clamp(0, 1) * 255).to(at::kByte).permute({1, 2, 0});
    hwc = resize_lanczos_u8(hwc.contiguous(), height, width);
    out.push_back(hwc.permute({2, 0, 1}).to(at::kFloat) / 255.0);
  }
  return 2.0 * at::stack(out) - 1.0;
}

at::Tensor encode_image(const PipelineComponents& c, const at::Tensor& x) {
  return c.vae->encode(x.to(c.device, c.vae->dtype())).to(at::kFloat);
}

ControlNetCall controlnet_call(const PipelineComponents& c, const GenerateOptions& o, GenerateResult& r, int64_t rows) {
  if (!o.control_image.defined() && !o.control_latents.defined()) return {};
  if (!c.controlnet)
    throw Error("control_image: this pipeline has no ControlNet (use a folder with controlnet/ or attach one)");
  at::Tensor latent;
  if (o.control_latents.defined()) {
    latent = o.control_latents.to(c.device, at::kFloat);
  } else {
    r.vae_encode_input = preprocess_image(o.control_image, r.generated_height, r.generated_width, "control_image");
    latent = encode_image(c, r.vae_encode_input) * c.vae->config().scaling_factor;
  }
  const int64_t n = latent.size(0);
  if (rows % n != 0) throw Error("control_image: " + std::to_string(n) + " images for " + std::to_string(rows) + " rows");
  r.control_latents = latent.repeat({rows / n, 1, 1, 1});
  return {c.controlnet, r.control_latents, o.controlnet_conditioning_scale};
}

}  // namespace sana
