// `sana-sprint generate`: text to image with any pipeline folder.
#include <cmath>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "generation_flags.h"
#include "sana/error.h"
#include "sana/io/image.h"
#include "sana/io/output_folder.h"
#include "sana/pipeline/pipeline.h"
#include "sana/runtime.h"

namespace fs = std::filesystem;

namespace sana::cli {

std::string seconds(double s) { return c10::str(std::round(s * 10) / 10) + " s"; }

namespace {

struct GenerateCommand {
  GenerationParams params;
  std::string output = "output.png";
  std::unique_ptr<GenerationFlags> flags;
};

// NAME.png, or NAME_1.png ... NAME_N.png for a batch.
std::string output_path(const std::string& output, int64_t index, int64_t count) {
  if (count == 1) return output;
  const fs::path p(output);
  return (p.parent_path() / (p.stem().string() + "_" + std::to_string(index + 1) + p.extension().string())).string();
}

// The outputs are replaced when they exist, but never one of this call's own input images.
void check_outputs_spare_inputs(const GenerateCommand& c) {
  const GenerationParams& p = c.params;
  for (int64_t i = 0; i < p.batch_count; ++i) {
    const std::string out = output_path(c.output, i, p.batch_count);
    for (const auto& [flag, input] : {std::pair{"--init-image", p.init_image}, {"--control-image", p.control_image}})
      if (!input.empty() && same_path(out, input))
        throw Error("-o/--output: " + out + " is the " + flag + "; write the image to another file");
  }
}

int run_generate(GenerateCommand& c) {
  GenerationParams& p = c.params;
  prepare_generation(p, *c.flags);
  if (fs::path(c.output).extension() != ".png") throw Error("-o/--output: " + c.output + " must end in .png");
  check_outputs_spare_inputs(c);
  resolve_seed(p);

  double t0 = now();
  note("loading " + p.model + " (" + p.dtype + " on " + p.device + ")");
  std::string how;
  const at::ScalarType dtype = load_dtype(p, &how);
  if (!how.empty()) note(how);
  const auto pipe = load_pipeline(p.model, parse_device(p.device), dtype, load_options(p));
  note("loaded " + pipe->class_name() + (pipe->components.controlnet ? " with a ControlNet" : "") +
       (p.vae.empty() ? "" : " with the VAE of " + p.vae) +
       (p.lora.empty() ? "" : " with " + std::to_string(p.lora.size()) + " LoRA(s)") +
       (p.quantize.empty() ? "" : ", " + p.quantize + " weights,") + " in " +
       seconds(now() - t0));

  t0 = now();
  GenerateOptions o;
  try {
    o = to_generate_options(p);
  } catch (const ParamError& e) {
    throw c.flags->rephrase(e);
  }
  // One call and the process ends: embed the text first and release the text encoder, the largest part of the
  // weights, before the transformer and the decoder run (docs/PERFORMANCE.md, "Peak memory").
  const auto progress = [](const std::string& stage, double s) {
    note(stage + ": " + c10::str(std::round(s * 100) / 100) + " s");
  };
  pipe->embed_text(o);
  pipe->components.release_text_encoder();
  progress("text encoder (then released)", now() - t0);
  const auto r = pipe->generate(o, progress);
  const int64_t n = r.images.size(0);
  for (int64_t i = 0; i < n; ++i) {
    const std::string text = png_parameters(p, pipe->sampler_name(o), r.timesteps, i, "sana-sprint " SANA_VERSION);
    const std::string path = output_path(c.output, i, n);
    save_png(path, r.images[i], {{"parameters", text}});
    note("saved " + path);
  }
  note("generated " + std::to_string(n) + " image(s) in " + seconds(now() - t0) + " (seed " + std::to_string(p.seed) +
       ")");
  return 0;
}

}  // namespace

Subcommand add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "text to image");
  auto c = std::make_shared<GenerateCommand>();
  c->flags = std::make_unique<GenerationFlags>(cmd, c->params);
  cmd->add_option("-o,--output", c->output,
                  "output PNG (replaced if it exists); with -b N, NAME_1.png ... NAME_N.png")->capture_default_str();
  return {cmd, [c] { return run_generate(*c); }};
}

}  // namespace sana::cli
