// The hybrid sCM + LADD loop (`sana::distill`, the code `sana-sprint distill` runs) at a given transformer config with
// random teacher weights on a synthetic latent cache: seconds per G step, per D step and per G+D pair (medians over
// the timed iterations, the first pair being a warm-up), and peak RSS.
//
//   build/bench_distill                                             # the shapes teacher config, batch 16
//   build/bench_distill --config tests/data/configs/Sana_Sprint_0.6B_1024px_diffusers/transformer/config.json \
//       --latent 8 --batch 2 --tokens 300 --iterations 4               # the real 0.6B, 256^2-image latents
//
// The teacher folder needs tokenizer/, text_encoder/ and vae/ only to be copied into the exported student: they are
// taken from --components (default: the shipped shapes teacher) and never run.
#include <ATen/CPUGeneratorImpl.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/io/safetensors.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/runtime.h"
#include "sana/train/trainer.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace sana;

int main(int argc, char** argv) {
  CLI::App app{"distillation loop benchmark (hybrid sCM + LADD, random teacher weights)"};
  std::string config = std::string(SANA_SOURCE_DIR) + "/recipes/shapes/transformer_config.json";
  std::string components = std::string(SANA_SOURCE_DIR) + "/models/sana-shapes-teacher";
  std::string work = (fs::temp_directory_path() / "sana_bench_distill").string();
  int latent = 8, batch = 16, tokens = 32, iterations = 8, threads = 0;
  std::string device = "cpu", dtype = "fp32", loss = "hybrid";
  app.add_option("--config", config, "teacher transformer config.json (guidance_embeds is switched off)");
  app.add_option("--components", components, "pipeline folder with tokenizer/ text_encoder/ vae/ to copy");
  app.add_option("--work", work, "scratch folder (removed at the end)");
  app.add_option("--latent", latent, "latent size (image size / VAE factor)")->check(CLI::PositiveNumber);
  app.add_option("-b,--batch", batch, "global batch")->check(CLI::PositiveNumber);
  app.add_option("--tokens", tokens, "text tokens per caption")->check(CLI::PositiveNumber);
  app.add_option("--iterations", iterations, "G and D iterations (even; the first pair is a warm-up)")
      ->check(CLI::Range(4, 100000));
  app.add_option("--loss", loss, "scm | ladd | hybrid");
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)");
  app.add_option("--device", device, "cpu | cuda[:N]");
  app.add_option("--dtype", dtype, "fp32 | bf16 | fp16");
  CLI11_PARSE(app, argc, argv);

  try {
    configure_runtime(threads);
    fs::remove_all(work);
    const fs::path teacher = fs::path(work) / "teacher", cache = fs::path(work) / "cache";
    fs::create_directories(teacher / "transformer");
    fs::create_directories(cache);
    for (const char* part : {"tokenizer", "text_encoder", "vae"}) {
      if (!fs::is_directory(fs::path(components) / part))
        throw Error("--components: " + components + " has no " + part + "/ (run recipes/shapes/run.sh, or pass a pipeline folder)");
      fs::copy(fs::path(components) / part, teacher / part, fs::copy_options::recursive);
    }
    json cfg = json::parse(read_text_file(config));
    cfg["guidance_embeds"] = false;
    std::ofstream(teacher / "transformer" / "config.json") << cfg.dump(2);
    const SanaTransformerConfig tc = load_sana_transformer_config((teacher / "transformer" / "config.json").string());
    {
      SanaTransformer2DModel model(tc, at::TensorOptions().dtype(at::kFloat));
      nn::init_random(model, 0);
      nn::save_state_dict(model, (teacher / "transformer" / "diffusion_pytorch_model.safetensors").string());
      std::printf("teacher: %lld parameters (random)\n", static_cast<long long>(nn::count_parameters(model)));
    }
    // A synthetic cache of 2 * batch samples: N(0, 1) latents and text embeddings, half-padded masks.
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
    const int64_t n = 2 * batch;
    at::Tensor mask = at::zeros({n, tokens}, at::kLong);
    mask.narrow(1, 0, std::max(1, tokens / 2)).fill_(1);
    save_safetensors((cache / "shard-00000.safetensors").string(),
                     {{"latents", at::randn({n, tc.in_channels, latent, latent}, gen)},
                      {"prompt_embeds", at::randn({n, tokens, tc.caption_channels}, gen)},
                      {"prompt_attention_mask", mask}});
    save_safetensors((cache / "null.safetensors").string(),
                     {{"prompt_embeds", at::randn({tokens, tc.caption_channels}, gen)},
                      {"prompt_attention_mask", mask[0].clone()}});
    std::ofstream caps(cache / "captions.txt");
    for (int64_t i = 0; i < n; ++i) caps << "caption " << i << "\n";
    caps.close();
    std::ofstream(cache / "cache_config.json")
        << json{{"shards", {"shard-00000.safetensors"}}, {"image_size", latent * 8}, {"max_sequence_length", tokens}}.dump();

    DistillOptions d;
    d.teacher = teacher.string(), d.cache = cache.string(), d.loss = loss;
    TrainOptions o;
    o.out = (fs::path(work) / "student").string();
    o.steps = iterations, o.batch_size = batch, o.lr = 1e-5, o.grad_clip = 0.1;
    o.log_every = 1, o.checkpoint_every = 1 << 30, o.sample_every = -1;
    o.device = device, o.dtype = dtype;
    std::printf("%s\nsgemm %.0f GFLOP/s\n", bench::machine_summary().c_str(), bench::sgemm_gflops());
    distill(d, o);

    std::vector<double> g, dsec;
    std::ifstream log(fs::path(o.out) / "training" / "log.jsonl");
    for (std::string line; std::getline(log, line);) {
      const json j = json::parse(line);
      if (j["step"].get<int64_t>() < 2) continue;  // warm-up pair
      (j["phase"] == "G" ? g : dsec).push_back(j["seconds"].get<double>());
    }
    const double mg = bench::median(g), md = dsec.empty() ? 0.0 : bench::median(dsec);
    std::printf("config %s, latent %dx%d, batch %d, %d tokens, %s %s, loss %s\n", config.c_str(), latent, latent, batch,
                tokens, device.c_str(), dtype.c_str(), loss.c_str());
    std::printf("G step: median %.3f s over %zu; D step: median %.3f s over %zu; G+D: %.3f s\n", mg, g.size(), md,
                dsec.size(), mg + md);
    std::printf("peak RSS %.0f MiB\n", bench::peak_rss_mib());
    fs::remove_all(work);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_distill: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
