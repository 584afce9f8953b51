// `sana-sprint serve`: the HTTP server (sana/server/server.h, docs/SERVER.md).
#include <csignal>
#include <memory>
#include <thread>

#include "commands.h"
#include "generation_flags.h"
#include "sana/error.h"
#include "sana/runtime.h"
#include "sana/server/server.h"

namespace sana::cli {
namespace {

volatile std::sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

struct ServeCommand {
  GenerationParams params;
  std::unique_ptr<GenerationFlags> flags;
  server::ServerOptions options;
  int64_t results_mb = 1024;
};

int run_serve(ServeCommand& c) {
  GenerationParams& p = c.params;
  c.options.results_bytes = static_cast<size_t>(c.results_mb) << 20;
  p.prompt = "(each request's)";  // validated per request
  prepare_generation(p, *c.flags);
  p.prompt.clear();
  note("loading " + p.model + " (" + p.dtype + " on " + p.device + ")");
  const double t0 = now();
  std::string how;
  const at::ScalarType dtype = load_dtype(p, &how);
  if (!how.empty()) note(how);
  auto pipe = load_pipeline(p.model, parse_device(p.device), dtype, load_options(p));
  note("loaded " + pipe->class_name() + (pipe->components.controlnet ? " with a ControlNet" : "") +
       (p.vae.empty() ? "" : " with the VAE of " + p.vae) +
       (p.quantize.empty() ? "" : ", " + p.quantize + " weights,") + " in " +
       seconds(now() - t0));
  server::Server srv(std::move(pipe), p, c.options);
  note("warmed up in " + seconds(srv.warm_up()) + " (one small generation)");
  srv.bind();
  note("serving on http://" + c.options.host + ":" + std::to_string(srv.port()) + "/ (the live page; API routes in "
       "docs/SERVER.md)" + (c.options.api_key.empty() ? "" : "; API key required"));
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::thread watcher([&srv] {
    while (g_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    note("signal " + std::to_string(g_signal) + ": finishing the job in hand, then stopping");
    srv.stop();
  });
  srv.run();
  if (g_signal == 0) g_signal = SIGTERM;  // the listener closed on its own: let the watcher end
  watcher.join();
  note("stopped");
  return 0;
}

}  // namespace

Subcommand add_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "serve the model over HTTP: OpenAI and Automatic1111 image APIs, async jobs, "
                                          "and the live draw-to-image page");
  auto c = std::make_shared<ServeCommand>();
  // The model and how it runs; generation settings come with each request.
  c->flags = std::make_unique<GenerationFlags>(
      cmd, c->params,
      FieldSet{"prompt", "negative_prompt", "steps", "seed", "width", "height", "guidance", "batch_count",
               "max_timesteps", "intermediate_timesteps", "timesteps", "vae_tiling", "sampler", "control_image",
               "control_scale", "control_preprocess", "init_image", "strength"});
  auto& o = c->options;
  // Refused when parsed, before the model loads: values that were silently replaced (a port past 65535 bound another
  // port than the one printed, 0 or -1 images or threads meant 2, 100000 threads stalled the machine).
  cmd->add_option("--host", o.host, "address to listen on (127.0.0.1: this machine only)")->capture_default_str()
      ->check(CLI::Validator([](std::string& h) { return h.empty() ? std::string("must not be empty") : std::string(); },
                             "HOST"));
  cmd->add_option("--port", o.port, "port (0: any free port)")->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", o.api_key, "require \"Authorization: Bearer KEY\" on the API routes");
  cmd->add_option("--cors", o.cors, "origins allowed to call from other pages (repeat, or *)");
  cmd->add_option("--queue", o.queue, "queued jobs before requests get 429")->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--results-mb", c->results_mb,
                  "async results kept for polling take at most this many MiB (the oldest are forgotten first)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--max-images", o.max_images, "images per request at most")->capture_default_str()
      ->check(CLI::Range(1, GenerationLimits::max_batch_count));
  cmd->add_option("--max-side", o.max_side, "width and height at most")->capture_default_str()
      ->check(CLI::Range(1, GenerationLimits::max_side));
  cmd->add_option("--max-pixels", o.max_pixels, "images x width x height per request at most")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{GenerationLimits::max_batch_count} * GenerationLimits::max_side *
                                         GenerationLimits::max_side));
  cmd->add_option("--max-steps", o.max_steps, "steps at most")->capture_default_str()
      ->check(CLI::Range(1, GenerationLimits::max_steps));
  cmd->add_option("--lora-dir", o.lora_dir,
                  "LoRAs requests may ask for by name (<lora:NAME:SCALE> in the prompt, or \"loras\"): "
                  "NAME.safetensors in this folder")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--http-threads", o.threads, "HTTP threads (the model runs on one worker)")->capture_default_str()
      ->check(CLI::Range(1, 256));
  return {cmd, [c] { return run_serve(*c); }};
}

}  // namespace sana::cli
