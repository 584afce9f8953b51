#pragma once
// `sana-sprint serve` (docs/SERVER.md): one process that loads a model once and answers the OpenAI and Automatic1111
// image APIs, asynchronous jobs and the live draw-to-image page over HTTP (cpp-httplib). The HTTP threads parse,
// check and decode; the Worker runs every model call.
#include <memory>
#include <string>
#include <vector>

#include "sana/frontend/generation_params.h"
#include "sana/pipeline/pipeline.h"

namespace sana::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 1234;                  // 0: any free port (see Server::port())
  std::string api_key;              // non-empty: "Authorization: Bearer KEY" required on the API routes
  std::vector<std::string> cors;    // origins allowed to call from a browser page elsewhere ("*": any)
  size_t queue = 64;                // queued jobs before 429 (live frames wait in a lane of their own, as many)
  // Async results kept for polling: at most this many bytes of images (float), the oldest forgotten first.
  size_t results_bytes = size_t{1} << 30;
  size_t max_body_bytes = 32 << 20; // larger requests: 413
  // Request limits (400 naming the limit).
  int max_images = 8, max_side = 2048, max_steps = 50;
  // images x width x height per request: four 1024^2 images or one 2048^2 (8 at 2048^2 ran 158 s, then ran out of
  // memory).
  int64_t max_pixels = int64_t{4} << 20;
  size_t max_prompt_chars = 4000;
  // Per-request LoRAs (A1111's <lora:NAME:SCALE> prompt tags, the "loras" field): NAME.safetensors in this folder.
  // Empty: requests cannot ask for LoRAs.
  std::string lora_dir;
  int threads = 8;                  // HTTP threads
  // TCP_NODELAY on the answering sockets. Left to Nagle's algorithm, a response written in two pieces (headers,
  // then body) waits for the client's delayed ACK, ~40 ms on every kept-alive request. Off only to measure that.
  bool tcp_nodelay = true;
};

class Server {
 public:
  // `defaults`: the generation parameters of the loaded model (its generation_defaults.json applied); requests
  // change what they give.
  Server(std::unique_ptr<Pipeline> pipeline, GenerationParams defaults, ServerOptions options);
  ~Server();

  // One small generation through the worker (1 step, 8 x 8 latent pixels, the default prompt settings), so that
  // what the first request would otherwise pay for happens now: the instruction prefix's encoding, the kernels'
  // first-call setup. `sana-sprint serve` calls it before bind(), so /health answers only once the model is warm. Error
  // (with the reason) when the model cannot generate at all. Returns the seconds it took.
  double warm_up();

  // Binds (Error naming the address when it cannot). After this, port() is the bound port.
  void bind();
  int port() const;
  // Serves until stop(); returns when the listener is closed.
  void run();
  // Stops taking new work (503), lets the job in hand finish, cancels queued jobs, closes the listener.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sana::server
