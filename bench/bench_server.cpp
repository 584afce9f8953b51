// `sana-sprint serve` under load, over real HTTP on loopback (the server in this process, the clients on threads):
//   0. latency: one client, a kept-alive connection against a new connection per request, alternating, for /health
//      and for one image at the model's size -> p50 of each; then the same with TCP_NODELAY off on a second server
//      (Nagle's algorithm, as the server ran before: ~40 ms per kept-alive request);
//   1. throughput: K concurrent clients x M OpenAI requests -> images/s, p50/p95 latency, RSS before and after;
//   2. live: one session drawing (one frame in flight, the canvas changed each frame) -> p50/p95 per frame, end to
//      end as the page sees it and as the server reports it (X-Latency-Ms);
//   3. soak: N mixed requests from K clients (sizes up to 512^2, 1-4 images, live frames, async jobs cancelled, bad
//      requests) -> failed good requests, wrong answers to bad ones, the server alive, RSS growth after warm-up;
//   4. LoRA soak: L requests cycling through two per-request LoRAs (prompt tags) and none -> images that differ from
//      the library's with the same LoRAs fused, RSS growth after warm-up.
//
//   build/bench_server                                   # the shipped student (with its ControlNet), 2 CPU threads
//   build/bench_server --model DIR --clients 4 --requests 25 --frames 200 --soak 2000 --lora-soak 200
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <unistd.h>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "bench_util.h"
#include "sana/frontend/image_source.h"
#include "sana/io/image.h"
#include "sana/io/safetensors.h"
#include "sana/nn/lora.h"
#include "sana/pipeline/pipeline.h"
#include "sana/server/server.h"

using namespace sana;
using json = nlohmann::json;

namespace {

// Current resident set size in MiB (VmRSS).
double rss_mib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
}

httplib::Client client(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(300, 0);
  c.set_tcp_nodelay(true);  // as curl and Python's HTTP clients send: what is measured is the server's side
  return c;
}

// p50 of n requests over one kept-alive connection and of n over a new connection each, alternating request by request.
void latency_pair(int port, int n, const std::string& what, const std::function<httplib::Result(httplib::Client&)>& call) {
  auto kept = client(port);
  kept.set_keep_alive(true);
  call(kept);  // connect and warm up
  std::vector<double> reused, fresh;
  int failed = 0;
  for (int i = 0; i < n; ++i) {
    double s = bench::now_seconds();
    auto r = call(kept);
    reused.push_back(bench::now_seconds() - s);
    failed += !r || r->status != 200;
    auto once = client(port);
    s = bench::now_seconds();
    r = call(once);
    fresh.push_back(bench::now_seconds() - s);
    failed += !r || r->status != 200;
  }
  const double a = percentile(reused, 0.5), b = percentile(fresh, 0.5);
  std::printf("latency: %s, %d each: kept-alive p50 %.2f ms, new connection p50 %.2f ms (ratio %.2f); failed %d\n",
              what.c_str(), n, 1e3 * a, 1e3 * b, a / b, failed);
}

void latency(int port, int n, const std::string& label) {
  latency_pair(port, n, "GET /health" + label, [](httplib::Client& c) { return c.Get("/health"); });
  const std::string body = json{{"prompt", "a red circle"}, {"seed", 0}}.dump();
  latency_pair(port, n, "one image (the model's size)" + label,
               [&](httplib::Client& c) { return c.Post("/v1/images/generations", body, "application/json"); });
}

void throughput(int port, int clients, int requests) {
  const double rss0 = rss_mib();
  std::vector<std::vector<double>> lat(clients);
  std::atomic<int> failed{0};
  const double t0 = bench::now_seconds();
  std::vector<std::thread> threads;
  for (int k = 0; k < clients; ++k)
    threads.emplace_back([&, k] {
      auto c = client(port);
      for (int i = 0; i < requests; ++i) {
        const json body = {{"prompt", "two red circles above a blue square"}, {"seed", k * 1000 + i}};
        const double s = bench::now_seconds();
        const auto r = c.Post("/v1/images/generations", body.dump(), "application/json");
        lat[k].push_back(bench::now_seconds() - s);
        if (!r || r->status != 200) ++failed;
      }
    });
  for (auto& t : threads) t.join();
  const double wall = bench::now_seconds() - t0;
  std::vector<double> all;
  for (const auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  std::printf("throughput: %d clients x %d requests: %.1f images/s, latency p50 %.1f ms, p95 %.1f ms, failed %d; "
              "RSS %.0f -> %.0f MiB\n",
              clients, requests, all.size() / wall, 1e3 * percentile(all, 0.5), 1e3 * percentile(all, 0.95),
              failed.load(), rss0, rss_mib());
}

// A canvas drawing: black strokes on white, one more segment each frame, as a PNG data URL.
std::string canvas_frame(int frame, int size) {
  at::Tensor img = at::ones({3, size, size});
  for (int i = 0; i <= frame % 40; ++i) {
    const double a = 2 * M_PI * i / 40;
    const int x = static_cast<int>(size / 2 + size / 4 * std::cos(a)), y = static_cast<int>(size / 2 + size / 4 * std::sin(a));
    img.narrow(1, std::max(0, y - 2), 4).narrow(2, std::max(0, x - 2), 4).zero_();
  }
  return "data:image/png;base64," + base64_encode(encode_png(img));
}

void live(int port, int frames, int canvas, bool control) {
  auto c = client(port);
  std::vector<double> e2e, server_ms;
  int failed = 0;
  for (int f = 1; f <= frames; ++f) {
    json body = {{"session", "bench"}, {"frame", f}, {"prompt", "a red circle"}, {"seed", 0}, {"steps", 1},
                 {"format", "jpeg"}};
    if (control) body["image"] = canvas_frame(f, canvas);
    const double s = bench::now_seconds();
    const auto r = c.Post("/sprint/v1/live", body.dump(), "application/json");
    if (!r || r->status != 200) {
      ++failed;
      continue;
    }
    e2e.push_back(bench::now_seconds() - s);
    server_ms.push_back(std::stod(r->get_header_value("X-Latency-Ms")));
  }
  std::printf("live: %d frames (%s, %dx%d canvas): end to end p50 %.1f ms, p95 %.1f ms; server p50 %.0f ms, "
              "p95 %.0f ms; failed %d; RSS %.0f MiB\n",
              frames, control ? "with the ControlNet" : "no control image", canvas, canvas,
              1e3 * percentile(e2e, 0.5), 1e3 * percentile(e2e, 0.95), percentile(server_ms, 0.5),
              percentile(server_ms, 0.95), failed, rss_mib());
}

// Request i of the soak: {method, path, body, the statuses that are right}. Good generations cycle through sizes up to
// 512^2 and 1-4 images; live frames come from one session per client (200, or 409 when overtaken); "cancel" submits
// an async job and cancels it at once.
struct Probe {
  std::string method, path, body;
  std::vector<int> right;
  int images = 0;  // a generation's image count
  bool good() const { return right.front() == 200 || right.front() == 202; }
};

Probe soak_probe(int i, int client_id, bool control) {
  const int side = 64 * (1 + (i / 13) % 8), n = 1 + (i / 7) % 4;  // 64..512, 1..4
  const std::string size = std::to_string(side) + "x" + std::to_string(side);
  const std::string seed = std::to_string(i);
  switch (i % 13) {
    case 0: return {"POST", "/v1/images/generations", R"({"prompt": "a red square", "seed": )" + seed + R"(, "size": ")" + size + R"(", "n": )" + std::to_string(n) + "}", {200}, n};
    case 1: return {"GET", "/health", "", {200}};
    case 2: return {"POST", "/v1/images/generations", "{broken", {400}};
    case 3: return {"POST", "/v1/images/generations", R"({"prompt": "x", "size": "60x60"})", {400}};
    case 4: return {"POST", "/sdapi/v1/img2img", R"({"prompt": "x", "steps": 4, "init_images": ["@@@"]})", {400}};
    case 5: return {"GET", "/sprint/v1/jobs", "", {200}};
    case 6: return {"POST", "/sdapi/v1/txt2img", R"({"prompt": "a blue star", "seed": )" + seed + R"(, "width": )" + std::to_string(side) + R"(, "height": 64, "batch_size": )" + std::to_string(n) + "}", {200}, n};
    case 7: return {"GET", "/no/such/route", "", {404}};
    case 8: return {"POST", "/v1/images/generations", R"({"prompt": "x", "n": "many"})", {400}};
    case 9: {
      json frame = {{"session", "soak" + std::to_string(client_id)}, {"frame", i}, {"prompt", "a red circle"},
                    {"steps", 1}, {"preview", i % 2 == 0}};
      if (control) frame["image"] = canvas_frame(i, 256);
      return {"POST", "/sprint/v1/live", frame.dump(), {200, 409}};
    }
    case 10: return {"CANCEL", "/sprint/v1/jobs", R"({"prompt": "four yellow circles", "steps": 4, "width": )" + std::to_string(side) + R"(, "height": )" + std::to_string(side) + "}", {200}};
    case 11: return {"POST", "/v1/images/generations", R"({"prompt": "x", "size": "4096x4096"})", {400}};
    default: return {"GET", "/v1/models", "", {200}};
  }
}

// Submits an async job and cancels it at once: the cancel answers 200 (cancelled, or already finished).
httplib::Result submit_and_cancel(httplib::Client& c, const Probe& p) {
  auto r = c.Post(p.path.c_str(), p.body, "application/json");
  if (!r || r->status != 202) return r;
  const std::string id = json::parse(r->body)["id"];
  return c.Delete(("/sprint/v1/jobs/" + id).c_str());
}

// RSS once the server is idle (nothing queued or running), when memory the jobs freed has been handed back.
double idle_rss_mib(int port) {
  auto c = client(port);
  for (int i = 0; i < 600; ++i) {
    const auto h = c.Get("/health");
    if (h && h->status == 200) {
      const json j = json::parse(h->body);
      if (j["queued"] == 0 && j["live_waiting"] == 0 && j["running"] == false) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  return rss_mib();
}

// The soak runs in two parts: a warm-up (a tenth of the requests, at least two rounds of every size), then the rest;
// RSS is read when the server is idle after each, so the growth is what the requests left behind.
void soak(int port, int clients, int total, bool control) {
  std::atomic<int> good_failed{0}, bad_wrong{0}, images{0};
  const auto run = [&](int from, int to) {
    std::atomic<int> next{from};
    std::vector<std::thread> threads;
    for (int k = 0; k < clients; ++k)
      threads.emplace_back([&, k] {
        auto c = client(port);
        for (int i = next++; i < to; i = next++) {
          const Probe p = soak_probe(i, k, control);
          const auto r = p.method == "GET"      ? c.Get(p.path.c_str())
                         : p.method == "CANCEL" ? submit_and_cancel(c, p)
                                                : c.Post(p.path.c_str(), p.body, "application/json");
          const bool right = r && std::find(p.right.begin(), p.right.end(), r->status) != p.right.end();
          if (!right) {
            ++(p.good() ? good_failed : bad_wrong);
            std::fprintf(stderr, "soak: request %d %s %s -> %d %s\n", i, p.method.c_str(), p.path.c_str(),
                         r ? r->status : 0, r ? r->body.substr(0, 200).c_str() : "(no answer)");
          }
          if (right) images += p.images;
        }
      });
    for (auto& t : threads) t.join();
  };
  const double t0 = bench::now_seconds();
  const int warm = std::min(total, std::max(total / 10, 2 * 13 * 8));
  run(0, warm);
  const double rss_warm = idle_rss_mib(port);
  run(warm, total);
  const double rss_end = idle_rss_mib(port);
  auto c = client(port);
  const auto health = c.Get("/health");
  std::printf("soak: %d mixed requests from %d clients in %.0f s (%d images of 64^2..512^2, 1-4 per request, live "
              "frames, async jobs cancelled, bad requests): failed good requests %d, wrong answers to bad ones %d, "
              "server %s; idle RSS after %d warm-up requests %.0f MiB, at the end %.0f MiB (growth %+.1f MiB)\n",
              total, clients, bench::now_seconds() - t0, images.load(), good_failed.load(), bad_wrong.load(),
              health && health->status == 200 ? "alive" : "DOWN", warm, rss_warm, rss_end, rss_end - rss_warm);
}

// Two random rank-8 LoRAs on every self-attention query of `pipe`'s transformer, written to `dir` as a.safetensors
// and b.safetensors.
void write_loras(Pipeline& pipe, const std::string& dir) {
  const auto layers = nn::weighted_layers(*pipe.components.transformer);
  for (const std::string name : {"a", "b"}) {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [module, layer] : layers) {
      if (module.find("attn1.to_q") == std::string::npos) continue;
      const at::Tensor& w = layer->weight;
      tensors.push_back({module + ".lora_A.weight", at::randn({8, w.size(1)}) * 0.2});
      tensors.push_back({module + ".lora_B.weight", at::randn({w.size(0), 8}) * 0.2});
    }
    save_safetensors(dir + "/" + name + ".safetensors", tensors);
  }
}

void lora_soak(int port, Pipeline& pipe, const GenerationParams& defaults, const std::string& dir, int total) {
  // The library's image for each LoRA choice (what `generate --lora` gives), as the PNG the server sends decodes.
  std::vector<at::Tensor> expected;
  for (const std::string name : {"", "a", "b"}) {
    if (!name.empty()) pipe.components.apply_lora({dir + "/" + name + ".safetensors", 0.8});
    GenerationParams p = defaults;
    p.prompt = "a red circle", p.seed = 5;
    expected.push_back(decode_png(encode_png(pipe.generate(to_generate_options(p)).images[0]), "library"));
    pipe.components.remove_loras();
  }
  auto c = client(port);
  int wrong = 0, failed = 0;
  double rss_after_warmup = 0;
  const double t0 = bench::now_seconds();
  for (int i = 0; i < total; ++i) {
    const int k = i % 3;
    const std::string tag = k == 0 ? "" : std::string(" <lora:") + (k == 1 ? "a" : "b") + ":0.8>";
    const json body = {{"prompt", "a red circle" + tag}, {"seed", 5}};
    const auto r = c.Post("/v1/images/generations", body.dump(), "application/json");
    if (!r || r->status != 200) {
      ++failed;
      continue;
    }
    const std::string b64 = json::parse(r->body)["data"][0]["b64_json"];
    if (!at::equal(decode_png(base64_decode(b64, "bench"), "bench"), expected[k])) ++wrong;
    if (i + 1 == total / 10) rss_after_warmup = rss_mib();
  }
  std::printf("LoRA soak: %d requests cycling none / a / b (prompt tags): %.1f ms each, failed %d, images unlike the "
              "library's %d; RSS after warm-up %.0f MiB, at the end %.0f MiB (growth %+.1f MiB)\n",
              total, 1e3 * (bench::now_seconds() - t0) / total, failed, wrong, rss_after_warmup, rss_mib(),
              rss_mib() - rss_after_warmup);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sana-sprint serve benchmark (throughput, live frames, soak)"};
  std::string model = std::string(SANA_SOURCE_DIR) + "/models/sana-sprint-shapes";
  int clients = 4, requests = 25, frames = 200, canvas = 512, soak_total = 2000, threads = 0, latency_n = 100,
      lora_total = 200;
  app.add_option("-m,--model", model, "pipeline folder");
  app.add_option("--latency", latency_n, "requests of each kind in the latency comparison (0: none)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--clients", clients, "concurrent clients")->check(CLI::PositiveNumber);
  app.add_option("--requests", requests, "requests per client (throughput)")->check(CLI::PositiveNumber);
  app.add_option("--frames", frames, "live frames")->check(CLI::PositiveNumber);
  app.add_option("--canvas", canvas, "live canvas size in pixels (the page's is 512)")->check(CLI::PositiveNumber);
  app.add_option("--soak", soak_total, "soak requests")->check(CLI::NonNegativeNumber);
  app.add_option("--lora-soak", lora_total, "LoRA soak requests")->check(CLI::NonNegativeNumber);
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)");
  CLI11_PARSE(app, argc, argv);
  try {
    configure_runtime(threads);
    std::printf("machine: %s\n", bench::machine_summary().c_str());
    GenerationParams defaults;
    defaults.model = model;
    apply_model_defaults(defaults, {});
    auto pipe = load_pipeline(model, at::kCPU, at::kFloat);
    const bool control = pipe->components.controlnet != nullptr;
    std::printf("model: %s (%s%s), %dx%d, %d step(s); RSS after loading %.0f MiB\n", model.c_str(),
                pipe->class_name().c_str(), control ? " + ControlNet" : "", defaults.width, defaults.height,
                defaults.steps, rss_mib());
    server::ServerOptions o;
    o.port = 0;
    o.queue = 256;
    server::Server srv(std::move(pipe), defaults, o);
    srv.bind();
    std::thread serving([&] { srv.run(); });
    if (latency_n > 0) {
      latency(srv.port(), latency_n, "");
      server::ServerOptions nagle = o;
      nagle.tcp_nodelay = false;
      server::Server old(load_pipeline(model, at::kCPU, at::kFloat), defaults, nagle);
      old.bind();
      std::thread old_serving([&] { old.run(); });
      latency(old.port(), latency_n, " with TCP_NODELAY off");
      old.stop();
      old_serving.join();
    }
    throughput(srv.port(), clients, requests);
    live(srv.port(), frames, canvas, control);
    if (soak_total > 0) soak(srv.port(), clients, soak_total, control);
    srv.stop();
    serving.join();
    if (lora_total > 0) {
      const std::string dir = std::filesystem::temp_directory_path() / ("bench_server_loras_" + std::to_string(getpid()));
      std::filesystem::create_directories(dir);
      auto library = load_pipeline(model, at::kCPU, at::kFloat);
      write_loras(*library, dir);
      server::ServerOptions lo = o;
      lo.lora_dir = dir;
      server::Server with_loras(load_pipeline(model, at::kCPU, at::kFloat), defaults, lo);
      with_loras.bind();
      std::thread lora_serving([&] { with_loras.run(); });
      lora_soak(with_loras.port(), *library, defaults, dir, lora_total);
      with_loras.stop();
      lora_serving.join();
      std::filesystem::remove_all(dir);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_server: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
