// The C API's overhead over the CLI's in-process call: the same model folder loaded twice, once by load_pipeline (what
// `sana-sprint generate` runs) and once by sana_ctx_new, and the same call timed through Pipeline::generate (after
// the generation-parameters module, as the CLI) and through sana_generate, alternating round by round; each side
// keeps its fastest round (the machine is shared and noisy).
//
//   build/bench_capi                                   # the shipped shapes student, its own defaults
//   build/bench_capi -m FOLDER --size 512 --steps 2 --rounds 10
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>

#include "bench_util.h"
#include "sana/frontend/generation_params.h"
#include "sana/pipeline/pipeline.h"
#include "sana_sprint.h"

using namespace sana;

int main(int argc, char** argv) {
  CLI::App app{"C API overhead over the in-process pipeline call"};
  std::string model = std::string(SANA_SOURCE_DIR) + "/models/sana-sprint-shapes", dtype = "fp32";
  int size = 0, steps = 0, rounds = 20, threads = 0;
  app.add_option("-m,--model", model, "pipeline folder")->capture_default_str();
  app.add_option("--dtype", dtype)->capture_default_str();
  app.add_option("--size", size, "image side (0: the folder's default)");
  app.add_option("--steps", steps, "steps (0: the folder's default)");
  app.add_option("--rounds", rounds)->capture_default_str();
  app.add_option("-t,--threads", threads);
  CLI11_PARSE(app, argc, argv);
  configure_runtime(threads);

  sana_ctx_params cp;
  sana_ctx_params_init(&cp);
  cp.model_dir = model.c_str();
  cp.dtype = dtype.c_str();
  cp.n_threads = threads;
  sana_ctx* ctx = sana_ctx_new(&cp);
  if (!ctx) {
    std::fprintf(stderr, "error: %s\n", sana_last_error());
    return 1;
  }
  sana_gen_params g;
  sana_ctx_gen_params_init(ctx, &g);
  g.prompt = "two red circles above a blue square";
  if (size) g.width = g.height = size;
  if (steps) g.steps = steps;

  // The CLI's way: GenerationParams with the folder's defaults, then the pipeline.
  GenerationParams p;
  p.model = model;
  p.dtype = dtype;
  p.prompt = g.prompt;
  FieldSet given = {"prompt", "seed"};
  if (size) p.width = p.height = size, given.insert({"width", "height"});
  if (steps) p.steps = steps, given.insert("steps");
  apply_model_defaults(p, given);
  const auto pipe = load_pipeline(model, at::kCPU, parse_dtype(dtype));

  const auto direct = [&] {
    const double t0 = bench::now_seconds();
    const GenerateResult r = pipe->generate(to_generate_options(p));
    to_uint8_hwc(r.images[0]);
    return bench::now_seconds() - t0;
  };
  const auto capi = [&] {
    const double t0 = bench::now_seconds();
    sana_image img;
    if (sana_generate(ctx, &g, &img) != SANA_OK) std::fprintf(stderr, "error: %s\n", sana_last_error());
    sana_image_free(&img);
    return bench::now_seconds() - t0;
  };
  direct();
  capi();
  double best_direct = 1e30, best_capi = 1e30;
  for (int r = 0; r < rounds; ++r) {
    best_direct = std::min(best_direct, direct());
    best_capi = std::min(best_capi, capi());
  }
  std::printf("%s\n%s, %dx%d, %d step(s), %s: fastest of %d alternated rounds\n", bench::machine_summary().c_str(),
              model.c_str(), g.width, g.height, g.steps, dtype.c_str(), rounds);
  std::printf("  in-process pipeline call  %9.2f ms\n  C API sana_generate       %9.2f ms   ratio %.3f\n",
              best_direct * 1e3, best_capi * 1e3, best_capi / best_direct);
  sana_ctx_free(ctx);
  return 0;
}
