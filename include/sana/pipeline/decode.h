#pragma once
// Pipeline last step, shared by every pipeline: final_latents / scaling_factor through the DC-AE decoder (tiled on
// request), back from the resolution bin, [-1, 1] -> [0, 1] on the CPU.
#include "sana/pipeline/options.h"

namespace sana {

struct PipelineComponents;

// Fills result.vae_decoded and result.images from result.final_latents; reports the stage "vae decode" (the
// tiny preview decoder: "tiny decode").
void decode_and_finish(const PipelineComponents& components, const GenerateOptions& options, GenerateResult& result,
                       const ProgressFn& progress);

}  // namespace sana
