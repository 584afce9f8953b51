#pragma once
// `--dtype auto` (docs/PERFORMANCE.md, "Choosing the dtype"): per stage, fp32 or bf16, whichever this machine runs
// faster. CPUs differ more than expected: with AVX512-BF16 an Intel Xeon runs the transformer's matrix products 2.5x
// faster in bf16 but the DC-AE decoder's convolutions slower than in fp32, while an AMD machine runs both faster in
// bf16. A short probe (a matrix product of the transformer's shape and a 3x3 convolution of the decoder's, each in
// both dtypes, fastest of a few runs; about a second) decides, and its times are cached per machine (CPU model,
// threads, LibTorch version) in the user's cache folder, so only the first load on a machine pays for it.
#include <ATen/ATen.h>

#include <string>

namespace sana {

// Seconds per run of the probe's two operations in each dtype.
struct DtypeProbe {
  double matmul_fp32 = 0, matmul_bf16 = 0, conv_fp32 = 0, conv_bf16 = 0;
};

struct StageDtypes {
  at::ScalarType transformer = at::kFloat;  // the text encoder and the transformer (matrix products)
  at::ScalarType vae = at::kFloat;          // the VAE (convolutions)
  std::string how;                          // one line: what was measured or why, for the progress output
};

// The rule: bf16 where it is at least 10 % faster (on a near tie fp32 wins: it is the reference's arithmetic).
StageDtypes choose_dtypes(const DtypeProbe& probe);

// Runs the probe on the CPU with the current thread count.
DtypeProbe probe_cpu_dtypes();

// The dtypes for `device`: bf16 for both on CUDA; on the CPU the probe's choice, its times read from
// `cache_dir`/dtype-auto.json when this machine has an entry, else measured and written there (best effort: an
// unwritable folder only means no caching). `cache_dir` empty: $SANA_CACHE_DIR, else $XDG_CACHE_HOME/sana-sprint,
// else ~/.cache/sana-sprint.
StageDtypes auto_dtypes(const at::Device& device, const std::string& cache_dir = "");

}  // namespace sana
