#pragma once
// Quantizing a loaded model's weights in memory (docs/QUANTIZATION.md): every Linear and every 1x1 convolution
// whose weight is large enough becomes int8 (int8.h); norms, embeddings, biases, depthwise and 3x3 convolutions and
// small layers keep the compute dtype.
#include <torch/nn/module.h>

#include <cstdint>
#include <string>

#include "sana/nn/int8.h"

namespace sana::nn {

struct QuantizeSettings {
  Int8Compute compute = Int8Compute::weights;
  // Layers with fewer weights stay as they are: they save little memory and time, and small layers (time and
  // guidance embeddings, the output projection) are where rounding costs the most.
  int64_t min_weights = kDefaultQuantizeMinWeights;
};

struct QuantizeReport {
  int64_t layers = 0;          // layers made int8
  int64_t bytes_before = 0;    // their weights' bytes before
  int64_t bytes_after = 0;     // and after (int8 + scales)

  QuantizeReport& operator+=(const QuantizeReport& r) {
    layers += r.layers;
    bytes_before += r.bytes_before;
    bytes_after += r.bytes_after;
    return *this;
  }
};

QuantizeReport quantize_int8(torch::nn::Module& module, const QuantizeSettings& settings = {});

// "int8" -> Int8Compute::weights, "w8a8" -> Int8Compute::dynamic, "q4" -> Int8Compute::q4, "" / "none" -> none;
// error otherwise.
Int8Compute parse_quantize(const std::string& name);

}  // namespace sana::nn
