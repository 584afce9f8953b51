// Fused CPU kernels (include/sana/nn/cpu_kernels.h; docs/PERFORMANCE.md, "Between the products").
//
// The loops are plain C++ over fp32 values so that the compiler vectorises them; each hot loop is compiled for
// AVX-512, AVX2 and the baseline (target_clones: the loader picks the clone for the CPU it runs on). bf16 values are
// widened by a shift and rounded to nearest even on the store, as c10::BFloat16 does, and every intermediate that
// the reference's op sequence stores in bf16 is rounded here too (`Store<T>::round`).
#include "sana/nn/cpu_kernels.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

namespace sana::nn::cpu {
namespace {

#define SANA_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__)
#define SANA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else  // other CPUs (aarch64 GPU hosts): one build for the compiler's target
#define SANA_CLONES
#endif

SANA_INLINE float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

SANA_INLINE uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return (u & 0x7FFFFFFFu) > 0x7F800000u ? uint16_t{0x7FC0} : static_cast<uint16_t>(rounded);  // NaN stays NaN
}

// Element access by storage type: float as is, bf16 (uint16_t) widened and rounded.
template <class T>
struct Store;
template <>
struct Store<float> {
  static SANA_INLINE float load(float v) { return v; }
  static SANA_INLINE float store(float v) { return v; }
  static SANA_INLINE float round(float v) { return v; }
};
template <>
struct Store<uint16_t> {
  static SANA_INLINE float load(uint16_t v) { return bf16_to_float(v); }
  static SANA_INLINE uint16_t store(float v) { return float_to_bf16(v); }
  static SANA_INLINE float round(float v) { return bf16_to_float(float_to_bf16(v)); }
};

// exp(x) to about 2 ulp over the fp32 range (Cephes' polynomial on x - n ln 2, then 2^n through the exponent bits),
// written with branch-free arithmetic so that it vectorises. n = round(x / ln 2) comes from adding 1.5 * 2^23, which
// leaves the integer in the low mantissa bits: no float-to-int conversion (undefined for NaN), only unsigned bits.
SANA_INLINE float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);  // NaN stays NaN (std::fmin would not vectorise)
  constexpr float kShift = 12582912.0f;                // 1.5 * 2^23
  const float t = x * 1.44269504088896341f + kShift;
  const float nf = t - kShift;
  uint32_t t_bits;
  std::memcpy(&t_bits, &t, sizeof t_bits);
  const float r = (x - nf * 0.693359375f) - nf * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const uint32_t bits = (t_bits - 0x4B400000u + 127u) << 23;  // 2^n: n + 127 in the exponent field
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// Below -88, exp(-x) would pass fp32's range (exp_approx clamps it there), and silu(x) is 0 to fp32 precision anyway:
// the input is clamped there too, so that x / (1 + exp(-x)) cannot become -x / 2e38 for a huge -x.
SANA_INLINE float silu(float x) {
  const float xs = x < -88.0f ? -88.0f : x;  // NaN stays NaN
  return xs / (1.0f + exp_approx(-xs));
}

// --- the loops, one instantiation per storage type ----------------------------------------------------------------

template <class T>
SANA_INLINE void silu_loop(T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = Store<T>::store(silu(Store<T>::load(x[i])));
}

// The reference: a * silu(g), each op rounding to the storage type.
template <class T>
SANA_INLINE void glu_silu_loop(const T* in, T* out, int64_t rows, int64_t h) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* a = in + r * 2 * h;
    const T* g = a + h;
    T* o = out + r * h;
    for (int64_t j = 0; j < h; ++j)
      o[j] = Store<T>::store(Store<T>::load(a[j]) * Store<T>::round(silu(Store<T>::load(g[j]))));
  }
}

// sum over j < d of f(x[j]), in 16 running sums (one vector's lanes; a single sum would not vectorise, as fp32
// addition is not associative).
constexpr int kLanes = 16;
template <class T, class F>
SANA_INLINE float lane_sum(const T* x, int64_t d, F f) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= d; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += f(Store<T>::load(x[j + l]));
  float sum = 0.0f;
  for (; j < d; ++j) sum += f(Store<T>::load(x[j]));
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

// Two passes (mean, then the mean square of x - mean), as the reference computes the variance in fp32.
template <class T>
SANA_INLINE void layer_norm_loop(const T* in, T* out, int64_t rows, int64_t d, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = in + r * d;
    T* y = out + r * d;
    const float mean = lane_sum(x, d, [](float v) { return v; }) / static_cast<float>(d);
    const float sq = lane_sum(x, d, [mean](float v) { return (v - mean) * (v - mean); });
    const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(d) + eps);
    for (int64_t j = 0; j < d; ++j) y[j] = Store<T>::store((Store<T>::load(x[j]) - mean) * rstd);
  }
}

// Pixels [p0, p0 + n) of one image [C, P]: sums of squares over the channels for the block, then each channel's
// values normalised, scaled, shifted and added to the residual, rounding after each step as the reference does.
constexpr int64_t kPixelBlock = 1024;

template <class T>
SANA_INLINE void rms_norm_channels_loop(const T* x, const T* w, const T* b, const T* res, T* y, int64_t C, int64_t P,
                                        int64_t p0, int64_t n, float eps) {
  float inv[kPixelBlock];
  for (int64_t p = 0; p < n; ++p) inv[p] = 0.0f;
  for (int64_t c = 0; c < C; ++c) {
    const T* xc = x + c * P + p0;
    for (int64_t p = 0; p < n; ++p) {
      const float v = Store<T>::load(xc[p]);
      inv[p] += v * v;
    }
  }
  for (int64_t p = 0; p < n; ++p) inv[p] = 1.0f / std::sqrt(inv[p] / static_cast<float>(C) + eps);
  for (int64_t c = 0; c < C; ++c) {
    const int64_t at = c * P + p0;
    const float wc = w ? Store<T>::load(w[c]) : 1.0f, bc = b ? Store<T>::load(b[c]) : 0.0f;
    for (int64_t p = 0; p < n; ++p) {
      float v = Store<T>::round(Store<T>::load(x[at + p]) * inv[p]);
      if (w) v = Store<T>::round(v * wc);
      if (b) v = Store<T>::round(v + bc);
      if (res) v += Store<T>::load(res[at + p]);
      y[at + p] = Store<T>::store(v);
    }
  }
}

// One input row i of channels 4c + 2a + {0, 1} interleaved into output row 2i + a.
template <class T>
SANA_INLINE void shuffle_row_loop(const T* even, const T* odd, T* out, int64_t w) {
  for (int64_t j = 0; j < w; ++j) {
    out[2 * j] = even[j];
    out[2 * j + 1] = odd[j];
  }
}

// --- the clones (non-template functions: target_clones applies to them) -------------------------------------------
SANA_CLONES void silu_bf16(uint16_t* x, int64_t n) { silu_loop(x, n); }
SANA_CLONES void glu_silu_bf16(const uint16_t* i, uint16_t* o, int64_t r, int64_t h) { glu_silu_loop(i, o, r, h); }
SANA_CLONES void layer_norm_f32(const float* i, float* o, int64_t r, int64_t d, float e) { layer_norm_loop(i, o, r, d, e); }
SANA_CLONES void layer_norm_bf16(const uint16_t* i, uint16_t* o, int64_t r, int64_t d, float e) {
  layer_norm_loop(i, o, r, d, e);
}
SANA_CLONES void rms_norm_channels_f32(const float* x, const float* w, const float* b, const float* r, float* y,
                                       int64_t C, int64_t P, int64_t p0, int64_t n, float eps) {
  rms_norm_channels_loop(x, w, b, r, y, C, P, p0, n, eps);
}
SANA_CLONES void rms_norm_channels_bf16(const uint16_t* x, const uint16_t* w, const uint16_t* b, const uint16_t* r,
                                        uint16_t* y, int64_t C, int64_t P, int64_t p0, int64_t n, float eps) {
  rms_norm_channels_loop(x, w, b, r, y, C, P, p0, n, eps);
}
SANA_CLONES void shuffle_row_f32(const float* e, const float* o, float* out, int64_t w) { shuffle_row_loop(e, o, out, w); }
SANA_CLONES void shuffle_row_bf16(const uint16_t* e, const uint16_t* o, uint16_t* out, int64_t w) {
  shuffle_row_loop(e, o, out, w);
}

bool is_bf16(const at::Tensor& x) { return x.scalar_type() == at::kBFloat16; }
template <class T>
T* data(const at::Tensor& x) {
  return reinterpret_cast<T*>(x.data_ptr());
}
template <class T>
const T* data_or_null(const at::Tensor& x) {
  return x.defined() ? reinterpret_cast<const T*>(x.data_ptr()) : nullptr;
}

// Elementwise work is split into pieces of at least this many values (a few hundred KB), rows by the same measure.
constexpr int64_t kGrain = 1 << 16;
int64_t row_grain(int64_t row_length) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, row_length)); }

}  // namespace

// SANA_CPU_KERNELS=0 switches the kernels off (the ATen forms everywhere): for A/B timing and for telling a
// numerical difference from the kernels apart from anything else.
static bool enabled() {
  static const bool on = [] {
    const char* v = std::getenv("SANA_CPU_KERNELS");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

bool supported(const at::Tensor& x) {
  return enabled() && x.defined() && x.device().is_cpu() &&
         (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) && x.is_contiguous() &&
         c10::InferenceMode::is_enabled();
}

// On fp32, ATen's own silu (Sleef's exp) is as fast as this one, so the two SiLU kernels run for bf16 only.
void silu_(at::Tensor& x) {
  TORCH_CHECK(supported(x), "cpu::silu_: needs a contiguous fp32/bf16 CPU tensor under InferenceMode");
  if (!is_bf16(x)) {
    at::silu_(x);
    return;
  }
  at::parallel_for(0, x.numel(), kGrain,
                   [&](int64_t begin, int64_t end) { silu_bf16(data<uint16_t>(x) + begin, end - begin); });
}

at::Tensor glu_silu(const at::Tensor& x) {
  TORCH_CHECK(supported(x) && x.size(-1) % 2 == 0, "cpu::glu_silu: needs a contiguous tensor with an even last dim");
  const int64_t h = x.size(-1) / 2, rows = x.numel() / std::max<int64_t>(1, 2 * h);
  if (!is_bf16(x)) {
    const auto halves = x.chunk(2, -1);
    return halves[0] * at::silu(halves[1]);
  }
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = h;
  at::Tensor y = at::empty(shape, x.options());
  at::parallel_for(0, rows, row_grain(2 * h), [&](int64_t begin, int64_t end) {
    glu_silu_bf16(data<uint16_t>(x) + begin * 2 * h, data<uint16_t>(y) + begin * h, end - begin, h);
  });
  return y;
}

at::Tensor layer_norm(const at::Tensor& x, double eps) {
  TORCH_CHECK(supported(x), "cpu::layer_norm: needs a contiguous fp32/bf16 CPU tensor under InferenceMode");
  const int64_t d = x.size(-1), rows = x.numel() / std::max<int64_t>(1, d);
  at::Tensor y = at::empty_like(x);
  const bool bf = is_bf16(x);
  const float e = static_cast<float>(eps);
  at::parallel_for(0, rows, row_grain(d), [&](int64_t begin, int64_t end) {
    if (bf) layer_norm_bf16(data<uint16_t>(x) + begin * d, data<uint16_t>(y) + begin * d, end - begin, d, e);
    else layer_norm_f32(data<float>(x) + begin * d, data<float>(y) + begin * d, end - begin, d, e);
  });
  return y;
}

at::Tensor rms_norm_channels(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                             const at::Tensor& residual) {
  TORCH_CHECK(supported(x) && x.dim() == 4, "cpu::rms_norm_channels: needs a contiguous NCHW fp32/bf16 CPU tensor");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  for (const at::Tensor* t : {&weight, &bias})
    TORCH_CHECK(!t->defined() || (t->scalar_type() == x.scalar_type() && t->is_contiguous() && t->numel() == C),
                "cpu::rms_norm_channels: weight and bias must be contiguous [C] tensors of x's dtype");
  TORCH_CHECK(!residual.defined() || (residual.sizes() == x.sizes() && residual.scalar_type() == x.scalar_type() &&
                                      residual.is_contiguous()),
              "cpu::rms_norm_channels: the residual must be a contiguous tensor like x");
  at::Tensor y = at::empty_like(x);
  const bool bf = is_bf16(x);
  const float e = static_cast<float>(eps);
  const int64_t blocks = (P + kPixelBlock - 1) / kPixelBlock;
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t img = i / blocks, p0 = (i % blocks) * kPixelBlock, n = std::min(kPixelBlock, P - p0);
      const int64_t off = img * C * P;
      if (bf) {
        const uint16_t* r = data_or_null<uint16_t>(residual);
        rms_norm_channels_bf16(data<uint16_t>(x) + off, data_or_null<uint16_t>(weight), data_or_null<uint16_t>(bias),
                               r ? r + off : nullptr, data<uint16_t>(y) + off, C, P, p0, n, e);
      } else {
        const float* r = data_or_null<float>(residual);
        rms_norm_channels_f32(data<float>(x) + off, data_or_null<float>(weight), data_or_null<float>(bias),
                              r ? r + off : nullptr, data<float>(y) + off, C, P, p0, n, e);
      }
    }
  });
  return y;
}

at::Tensor pixel_shuffle2(const at::Tensor& x) {
  TORCH_CHECK(supported(x) && x.dim() == 4 && x.size(1) % 4 == 0,
              "cpu::pixel_shuffle2: needs a contiguous NCHW tensor with a multiple of 4 channels");
  const int64_t B = x.size(0), C = x.size(1) / 4, H = x.size(2), W = x.size(3);
  at::Tensor y = at::empty({B, C, 2 * H, 2 * W}, x.options());
  const bool bf = is_bf16(x);
  // One task = input row i of output channel (b, c): output rows 2i and 2i + 1.
  at::parallel_for(0, B * C * H, row_grain(4 * W), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t bc = t / H, i = t % H;
      for (int a = 0; a < 2; ++a) {
        const int64_t even = ((bc * 4 + 2 * a) * H + i) * W, odd = even + H * W, out = (bc * 2 * H + 2 * i + a) * 2 * W;
        if (bf) shuffle_row_bf16(data<uint16_t>(x) + even, data<uint16_t>(x) + odd, data<uint16_t>(y) + out, W);
        else shuffle_row_f32(data<float>(x) + even, data<float>(x) + odd, data<float>(y) + out, W);
      }
    }
  });
  return y;
}

}  // namespace sana::nn::cpu
