#pragma once
// `sana-sprint quantize`: a pipeline folder rewritten with int8 or 4-bit weights (docs/QUANTIZATION.md, "The
// layout"), which every command then loads as it is: one byte (or half a byte) per quantized weight on disk and in
// memory, with no floating copy loaded first.
#include <ATen/ATen.h>

#include <functional>
#include <string>

#include "sana/nn/quantize.h"

namespace sana {

struct QuantizeFolderOptions {
  nn::Int8Compute type = nn::Int8Compute::weights;            // int8 rows, or q4: 4-bit groups (int8.h)
  int64_t min_weights = nn::QuantizeSettings{}.min_weights;  // smaller layers stay floating
  at::ScalarType dtype = at::kBFloat16;                       // of every tensor that stays floating
  bool replace = false;  // an existing non-empty `out` is replaced (once the new folder is complete)
};

// Writes `out`, a copy of the diffusers pipeline folder `in` whose text_encoder/, transformer/ and controlnet/ (when
// present) hold int8 weights and their scales; every other file is copied unchanged. The folder is assembled under a
// temporary name beside `out` and renamed into place at the end, so a failure leaves no half-written model; `out`
// must not exist or be an empty folder unless options.replace (the caller checks that it is not an input). `progress` gets one line per
// component. Returns the sum over the components.
nn::QuantizeReport quantize_pipeline_folder(const std::string& in, const std::string& out,
                                            const QuantizeFolderOptions& options,
                                            const std::function<void(const std::string&)>& progress = nullptr);

}  // namespace sana
