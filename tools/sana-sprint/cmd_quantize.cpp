// `sana-sprint quantize`: a pipeline folder rewritten with int8 or 4-bit weights (sana/pipeline/quantize_folder.h).
#include <memory>

#include "commands.h"
#include "sana/io/output_folder.h"
#include "sana/pipeline/quantize_folder.h"
#include "sana/runtime.h"

namespace sana::cli {
namespace {

struct QuantizeCommand {
  std::string model, out, type = "int8", dtype = "bf16";
  int64_t min_weights = QuantizeFolderOptions{}.min_weights;
  bool overwrite = false;
};

int run_quantize(const QuantizeCommand& c) {
  check_output_folder(c.out, {{"-m/--model", c.model}}, {"-o/--out", false, c.overwrite, {}});
  QuantizeFolderOptions options;
  options.min_weights = c.min_weights;
  options.type = nn::parse_quantize(c.type);
  options.dtype = parse_dtype(c.dtype);
  options.replace = c.overwrite;
  const double t0 = now();
  note("quantizing " + c.model + " to " + c.type + " (layers of at least " + std::to_string(c.min_weights) +
       " weights; the rest " + c.dtype + ")");
  const auto r = quantize_pipeline_folder(c.model, c.out, options, [](const std::string& line) { note(line); });
  note("wrote " + c.out + ": " + std::to_string(r.layers) + " layers " + c.type + ", " + std::to_string(r.bytes_before >> 20) +
       " -> " + std::to_string(r.bytes_after >> 20) + " MiB, in " + seconds(now() - t0));
  return 0;
}

}  // namespace

Subcommand add_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "write a copy of a pipeline folder with int8 or 4-bit weights (docs/QUANTIZATION.md)");
  auto c = std::make_shared<QuantizeCommand>();
  cmd->add_option("-m,--model", c->model, "diffusers pipeline folder to quantize")->required();
  cmd->add_option("-o,--out", c->out, "the new folder (new or empty)")->required();
  cmd->add_option("--type", c->type,
                  "int8 (symmetric, one scale per output channel) | q4 (4-bit groups of 64 inputs, one scale each; "
                  "layers whose input width is not a multiple of 64 stay floating)")
      ->capture_default_str()
      ->check(CLI::IsMember({"int8", "q4"}));
  cmd->add_option("--min-weights", c->min_weights, "layers with fewer weights stay floating")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--dtype", c->dtype, "dtype of every tensor that stays floating: bf16 | fp32 | fp16")
      ->capture_default_str();
  cmd->add_flag("--overwrite", c->overwrite, "write into a non-empty -o folder, replacing it");
  return {cmd, [c] { return run_quantize(*c); }};
}

}  // namespace sana::cli
