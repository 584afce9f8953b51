#pragma once
// Pipeline step for image inputs (ControlNet's control image, img2img's init image), as diffusers'
// PixArtImageProcessor and the pipelines prepare them: the 8-bit image resized with Pillow's Lanczos to the
// generation size when it differs, mapped to [-1, 1], encoded by the DC-AE.
#include <ATen/ATen.h>

#include "sana/diffusion/trigflow.h"
#include "sana/pipeline/options.h"

namespace sana {

struct PipelineComponents;

// [3, H, W] or [B, 3, H, W] in [0, 1] -> [B, 3, height, width] in [-1, 1] (float32, CPU). The values are taken
// as 8-bit (what a PNG holds), as diffusers reads a PIL image.
at::Tensor preprocess_image(const at::Tensor& image, int height, int width, const char* what);

// vae.encode(x).latent in float32 on the components' device (not scaled).
at::Tensor encode_image(const PipelineComponents& components, const at::Tensor& preprocessed);

// The ControlNet's part of a call for a model batch of `rows` rows: the control image prepared and encoded
// (latent * scaling_factor, repeated to the rows), recorded in `r`. Empty without a control image; an error when
// there is one but no ControlNet.
ControlNetCall controlnet_call(const PipelineComponents& components, const GenerateOptions& options,
                               GenerateResult& r, int64_t rows);

}  // namespace sana
