// In-memory int8 quantization of a model's large matrix weights (quantize.h).
#include "sana/nn/quantize.h"

#include "sana/error.h"
#include "sana/nn/layers.h"

namespace sana::nn {

QuantizeReport quantize_int8(torch::nn::Module& module, const QuantizeSettings& settings) {
  QuantizeReport report;
  if (settings.compute == Int8Compute::none) return report;
  // modules(false): the module itself need not be held by a shared_ptr.
  std::vector<torch::nn::Module*> all{&module};
  for (const auto& m : module.modules(/*include_self=*/false)) all.push_back(m.get());
  for (torch::nn::Module* m : all) {
    auto* layer = dynamic_cast<WeightedLayer*>(m);
    if (!layer) continue;
    if (layer->is_int8()) {  // loaded int8: only the way it multiplies changes (int8 rows are not made 4-bit)
      if (settings.compute != Int8Compute::q4 && layer->int8 != Int8Compute::q4) layer->int8 = settings.compute;
      continue;  // loaded 4-bit groups stay as they are
    }
    if (layer->weight.numel() < settings.min_weights) continue;
    // 4-bit groups run along the inputs: a layer whose input width is not a multiple of the group stays as it is.
    if (settings.compute == Int8Compute::q4 && (layer->weight.numel() / layer->weight.size(0)) % kQ4Group != 0)
      continue;
    if (const auto* conv = dynamic_cast<Conv2d*>(layer))
      if (conv->weight.size(2) != 1 || conv->weight.size(3) != 1 || conv->groups != 1) continue;
    report.bytes_before += layer->weight.numel() * static_cast<int64_t>(layer->weight.element_size());
    layer->quantize_int8(settings.compute);
    report.bytes_after += layer->weight.numel() * static_cast<int64_t>(layer->weight.element_size()) +
                          layer->weight_scale.numel() * 4;
    ++report.layers;
  }
  return report;
}

Int8Compute parse_quantize(const std::string& name) {
  if (name.empty() || name == "none") return Int8Compute::none;
  if (name == "int8") return Int8Compute::weights;
  if (name == "w8a8") return Int8Compute::dynamic;
  if (name == "q4") return Int8Compute::q4;
  throw Error("quantize: '" + name + "' is not a quantization (expected int8, w8a8 or q4)");
}

}  // namespace sana::nn
