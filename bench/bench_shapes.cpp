// The large matrix products and convolutions of the 0.6B transformer step and of the DC-AE decode, each run alone on
// its own shape, against the 2048^2 matrix-product yardstick that bench_pipeline's "ratio" column divides by. The
// FLOP-weighted sum over one stage's products says how much of that ratio the shapes themselves allow, before any
// elementwise work, memory traffic between ops or framework overhead is counted (docs/PERFORMANCE.md, "Shapes").
//
//   build/bench_shapes                       # bf16, 512^2 and 1024^2
//   build/bench_shapes --dtype fp32 --sizes 1024
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>

#include "bench_util.h"
#include "sana/io/config.h"
#include "sana/runtime.h"

using namespace sana;

namespace {

// One product of a stage: how often it runs per stage, its FLOPs, and how to run it once.
struct Op {
  std::string name;
  int count;
  double gflop;  // of one run
  std::function<void()> run;
};

// [m, k] x [k, n] through at::linear, as nn::Linear runs it (weight stored [n, k]).
Op linear_op(const std::string& name, int count, int64_t m, int64_t k, int64_t n, const at::TensorOptions& o) {
  const at::Tensor x = at::randn({1, m, k}, o), w = at::randn({n, k}, o) * 0.02;
  return {name + " " + std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n), count,
          2.0 * m * k * n / 1e9, [x, w] { at::linear(x, w); }};
}

// A k x k convolution, cin -> cout, on an hw x hw NCHW input (padding keeps the size).
Op conv_op(const std::string& name, int count, int64_t cin, int64_t cout, int64_t k, int64_t hw,
           const at::TensorOptions& o) {
  const at::Tensor x = at::randn({1, cin, hw, hw}, o), w = at::randn({cout, cin, k, k}, o) * 0.02;
  return {name + " " + std::to_string(cin) + "->" + std::to_string(cout) + " k" + std::to_string(k) + " @" +
              std::to_string(hw) + "^2",
          count, 2.0 * k * k * cin * cout * hw * hw / 1e9, [x, w, k] { at::conv2d(x, w, {}, 1, k / 2); }};
}

// The transformer's per-block products at `size` pixels (prompt-length products are negligible and left out).
std::vector<Op> transformer_ops(const SanaTransformerConfig& c, int size, const at::TensorOptions& o) {
  const int64_t side = size / 32 / c.patch_size, N = side * side;
  const int64_t D = c.inner_dim(), X = c.cross_inner_dim(), H = c.ff_hidden(), L = c.num_layers;
  return {linear_op("attn1 q/k/v/out", 4 * L, N, D, D, o), linear_op("attn2 q", L, N, D, X, o),
          linear_op("attn2 out", L, N, X, D, o), linear_op("ff inverted", L, N, D, 2 * H, o),
          linear_op("ff point", L, N, H, D, o)};
}

// The decoder's products at `size` pixels: per stage, the ResBlocks' 3x3 convolutions or the EfficientViT blocks'
// projections, and the up block into it (nearest x2 + 3x3, run as a 3x3 onto 4x the channels at the low resolution).
std::vector<Op> decoder_ops(const AutoencoderDCConfig& c, int size, const at::TensorOptions& o) {
  std::vector<Op> ops;
  const auto& ch = c.decoder_block_out_channels;
  const size_t n = ch.size();
  for (size_t i = 0; i < n; ++i) {
    const int64_t hw = size >> i, C = ch[i], layers = c.decoder_layers_per_block[i];
    if (layers == 0) continue;
    const std::string stage = "stage " + std::to_string(i);
    if (c.decoder_block_types[i] == "ResBlock") {
      ops.push_back(conv_op(stage + " resblock", 2 * static_cast<int>(layers), C, C, 3, hw, o));
    } else {
      // EfficientViT blocks run their 1x1 convolutions as matrix products on the token layout (src/models/dcae.cpp).
      const int64_t N = hw * hw, S = static_cast<int64_t>(c.decoder_qkv_multiscales[i].size());
      ops.push_back(linear_op(stage + " to_q/k/v", 3 * static_cast<int>(layers), N, C, C, o));
      ops.push_back(linear_op(stage + " to_out", static_cast<int>(layers), N, (1 + S) * C, C, o));
      ops.push_back(linear_op(stage + " ff inverted", static_cast<int>(layers), N, C, 8 * C, o));
      ops.push_back(linear_op(stage + " ff point", static_cast<int>(layers), N, 4 * C, C, o));
    }
    if (i + 1 < n) ops.push_back(conv_op(stage + " up (folded)", 1, ch[i + 1], 4 * C, 3, hw / 2, o));
  }
  return ops;
}

// Times every op (median of `runs` after a warm-up), prints its rate and ratio, and the stage's FLOP-weighted total.
void report(const std::string& stage, const std::vector<Op>& ops, int runs, double yardstick, const at::Device& dev) {
  std::printf("\n%s (yardstick: mm 2048^2 %.1f GFLOP/s)\n", stage.c_str(), yardstick);
  double flop = 0, seconds = 0;
  for (const Op& op : ops) {
    const double t = bench::median(bench::time_runs(runs, dev, op.run));
    const double rate = op.gflop / t;
    flop += op.count * op.gflop;
    seconds += op.count * t;
    std::printf("  %-44s x%-3d %8.2f GFLOP %8.2f ms %7.1f GFLOP/s  ratio %.2f\n", op.name.c_str(), op.count,
                op.gflop, t * 1e3, rate, rate / yardstick);
    std::fflush(stdout);
  }
  std::printf("  %-44s      %8.1f GFLOP %8.1f ms %7.1f GFLOP/s  ratio %.2f\n", "all of the above", flop,
              seconds * 1e3, flop / seconds, flop / seconds / yardstick);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The 0.6B transformer's and DC-AE decoder's products, each alone, against the mm yardstick"};
  std::string configs = std::string(SANA_SOURCE_DIR) + "/tests/data/configs/Sana_Sprint_0.6B_1024px_diffusers";
  std::vector<int> sizes = {512, 1024};
  int runs = 5, threads = 0;
  std::string dtype_name = "bf16";
  app.add_option("--configs", configs, "diffusers pipeline folder with transformer/ and vae/ config.json");
  app.add_option("--sizes", sizes, "image sizes (pixels)")->delimiter(',');
  app.add_option("--runs", runs, "timed runs per product (after a warm-up)")->check(CLI::PositiveNumber);
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)");
  app.add_option("--dtype", dtype_name, "fp32 | bf16");
  CLI11_PARSE(app, argc, argv);
  try {
    configure_runtime(threads);
    const at::ScalarType dtype = parse_dtype(dtype_name);
    const at::Device cpu(at::kCPU);
    const auto opts = at::TensorOptions().dtype(dtype);
    c10::InferenceMode inference;
    std::printf("machine: %s, %s\n", bench::machine_summary().c_str(), dtype_name.c_str());
    const auto tcfg = load_sana_transformer_config(configs + "/transformer/config.json");
    const auto vcfg = load_autoencoder_dc_config(configs + "/vae/config.json");
    for (int size : sizes) {
      const std::string px = std::to_string(size) + "^2";
      report("transformer step " + px, transformer_ops(tcfg, size, opts), runs,
             bench::sgemm_gflops(2048, 5, dtype), cpu);
      report("DC-AE decode " + px, decoder_ops(vcfg, size, opts), std::min(runs, 3),
             bench::sgemm_gflops(2048, 5, dtype), cpu);
    }
    std::printf("\nyardstick at the end: %.1f GFLOP/s\n", bench::sgemm_gflops(2048, 5, dtype));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_shapes: %s\n", e.what());
    return 1;
  }
  return 0;
}
