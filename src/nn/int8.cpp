// int8 weights and their matrix products (int8.h).
#include "sana/nn/int8.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/native/quantized/PackedParams.h>
#include <ATen/quantized/Quantizer.h>

#include <mutex>

namespace sana::nn {
namespace {

using PackedLinear = c10::intrusive_ptr<LinearPackedParamsBase>;

// Below this many rows the per-call weight packing costs more than the int8 product saves (measured on the
// transformer's and Gemma-2's shapes: packing a 2304 x 2304 weight takes about as long as a bf16 product of 64 rows).
constexpr int64_t kMinDynamicRows = 64;

// Selects oneDNN (the quantized engine of Debian's LibTorch and of x86 wheels) once; false when there is none.
bool select_engine() {
  static const bool ok = [] {
    for (const at::QEngine e : at::globalContext().supportedQEngines())
      if (e == at::QEngine::ONEDNN) {
        at::globalContext().setQEngine(e);
        return true;
      }
    return false;
  }();
  return ok;
}

// oneDNN's product of fp32 rows x [N, in] with the int8 weight, activations quantized per call. The weight is packed
// for this call only and freed after it, so memory holds one byte per weight plus one layer's packed copy.
at::Tensor dynamic_product(const at::Tensor& x2d, const at::Tensor& q, const at::Tensor& scale, const at::Tensor& bias) {
  static const auto prepack = c10::Dispatcher::singleton()
                                  .findSchemaOrThrow("quantized::linear_prepack", "")
                                  .typed<PackedLinear(at::Tensor, c10::optional<at::Tensor>)>();
  static const auto linear = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("quantized::linear_dynamic", "")
                                 .typed<at::Tensor(at::Tensor, const PackedLinear&, bool)>();
  const int64_t out = q.size(0);
  // A quantized view of our own int8 memory (no copy); `keep` holds it while the packed weight lives.
  const at::Tensor qweight = at::from_blob_quantized_per_channel_affine(
      q.data_ptr(), {out, q.size(1)}, [keep = q](void*) {}, scale.reshape({out}).to(at::kDouble),
      at::zeros({out}, at::kLong), 0, at::TensorOptions().dtype(at::kQInt8));
  const c10::optional<at::Tensor> b = bias.defined() ? c10::optional<at::Tensor>(bias.to(at::kFloat)) : c10::nullopt;
  return linear.call(x2d.to(at::kFloat).contiguous(), prepack.call(qweight, b), false);
}

}  // namespace

std::pair<at::Tensor, at::Tensor> quantize_q4(const at::Tensor& weight, int64_t group) {
  const at::Tensor w = weight.to(at::kFloat).reshape({weight.size(0), -1});
  const int64_t out = w.size(0), in = w.size(1);
  TORCH_CHECK(in % group == 0 && group % 2 == 0, "quantize_q4: ", in, " inputs are not a multiple of the group ", group);
  const at::Tensor groups = w.view({out, in / group, group});
  at::Tensor scale = groups.abs().amax(-1).div(7.0);  // [out, in / group]
  scale = at::where(scale > 0, scale, at::ones_like(scale));
  const at::Tensor q = (at::round(groups / scale.unsqueeze(-1)).clamp(-7, 7) + 8).to(at::kByte).view({out, in / 2, 2});
  const at::Tensor packed = q.select(-1, 0).bitwise_or(q.select(-1, 1).__lshift__(4));
  return {packed.contiguous(), scale.contiguous()};
}

at::Tensor dequantize_q4(const at::Tensor& packed, const at::Tensor& scale, at::ScalarType dtype) {
  const int64_t out = packed.size(0), in = packed.size(1) * 2, groups = scale.size(1), group = in / groups;
  if (!packed.device().is_cpu()) {
    const at::Tensor values = at::stack({packed.bitwise_and(15), packed.__rshift__(4)}, -1).view({out, groups, group});
    return ((values.to(at::kFloat) - 8) * scale.unsqueeze(-1)).view({out, in}).to(dtype);
  }
  // One pass over the weight on the CPU ((v - 8) * scale in fp32, rounded once to `dtype`): this runs for every
  // layer of every call, and the ATen form above makes four full-size temporaries (a short prompt through Gemma-2
  // spent 6.6 s in it against 0.6 s in the bf16 products).
  const at::Tensor p = packed.contiguous(), s = scale.to(at::kFloat).contiguous();
  at::Tensor w = at::empty({out, in}, packed.options().dtype(dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "dequantize_q4", [&] {
    const uint8_t* src = p.data_ptr<uint8_t>();
    const float* sc = s.data_ptr<float>();
    scalar_t* dst = w.data_ptr<scalar_t>();
    at::parallel_for(0, out * groups, 16, [&](int64_t begin, int64_t end) {
      scalar_t table[16];  // the group's 16 possible weights, so the inner loop only looks them up
      for (int64_t g = begin; g < end; ++g) {
        for (int v = 0; v < 16; ++v) table[v] = static_cast<scalar_t>(static_cast<float>(v - 8) * sc[g]);
        const uint8_t* b = src + g * (group / 2);
        scalar_t* d = dst + g * group;
        for (int64_t j = 0; j < group / 2; ++j) {
          d[2 * j] = table[b[j] & 15];
          d[2 * j + 1] = table[b[j] >> 4];
        }
      }
    });
  });
  return w;
}

std::pair<at::Tensor, at::Tensor> quantize_int8_rows(const at::Tensor& weight) {
  const at::Tensor w = weight.to(at::kFloat);
  std::vector<int64_t> shape(w.dim(), 1);
  shape[0] = w.size(0);
  at::Tensor scale = w.abs().reshape({w.size(0), -1}).amax(1).div(127.0);
  scale = at::where(scale > 0, scale, at::ones_like(scale)).reshape(shape);
  const at::Tensor q = at::round(w / scale).clamp(-127, 127).to(at::kChar);
  return {q, scale};
}

at::Tensor dequantize_int8(const at::Tensor& q, const at::Tensor& scale, at::ScalarType dtype) {
  return q.to(dtype) * scale.to(dtype);
}

at::Tensor int8_linear(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scale, const at::Tensor& bias,
                       Int8Compute compute) {
  if (compute == Int8Compute::q4)
    return at::linear(x, dequantize_q4(q, scale, x.scalar_type()), bias.defined() ? bias.to(x.scalar_type()) : bias);
  const int64_t in = q.size(1), rows = x.numel() / in;
  if (compute == Int8Compute::dynamic && x.device().is_cpu() && rows >= kMinDynamicRows && select_engine()) {
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = q.size(0);
    return dynamic_product(x.reshape({rows, in}), q, scale, bias).view(shape).to(x.scalar_type());
  }
  // (x q^T) * scale == x (q * scale)^T with one pass over the weight (int8 -> x's dtype, exact up to 256) instead
  // of two; the scale then multiplies the much smaller output.
  at::Tensor y = at::linear(x, q.view({q.size(0), in}).to(x.scalar_type())).mul_(scale.view({-1}).to(x.scalar_type()));
  return bias.defined() ? y.add_(bias.to(x.scalar_type())) : y;
}

bool cpu_int8_dynamic_available() { return select_engine(); }

}  // namespace sana::nn
