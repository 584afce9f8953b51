// The HTTP server (server.h): routes, authentication, CORS, limits, JSON errors, orderly shutdown.
#include "sana/server/server.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "http_context.h"
#include "sana/error.h"
#include "sana/frontend/image_source.h"

namespace sana::server {

struct Server::Impl {
  Impl(std::unique_ptr<Pipeline> pipeline, GenerationParams defaults, ServerOptions options)
      : worker(std::move(pipeline), worker_options(options, defaults)),
        ctx{worker, std::move(defaults), options, "", {}} {
    ctx.model_name = std::filesystem::path(ctx.defaults.model).filename().string();
    if (ctx.model_name.empty()) ctx.model_name = std::filesystem::path(ctx.defaults.model).parent_path().filename();
  }

  static Worker::Options worker_options(const ServerOptions& o, const GenerationParams& defaults) {
    Worker::Options w;
    w.queue_limit = o.queue;
    w.live_limit = o.queue;
    w.history_bytes = o.results_bytes;
    for (const std::string& lora : defaults.lora) w.base_loras.push_back(parse_lora_spec(lora));
    return w;
  }

  // The API key as OpenAI clients send it ("Bearer KEY"), or as A1111 clients do (HTTP Basic auth, which A1111's
  // --api-auth USER:PASSWORD expects): KEY as the password, or as the whole USER:PASSWORD.
  bool authorized(const httplib::Request& req) const {
    const std::string& key = ctx.options.api_key;
    const std::string auth = req.get_header_value("Authorization");
    if (auth == "Bearer " + key) return true;
    if (auth.rfind("Basic ", 0) != 0) return false;
    try {
      const std::string credentials = base64_decode(auth.substr(6), "Authorization");
      const size_t colon = credentials.find(':');
      return credentials == key || (colon != std::string::npos && credentials.substr(colon + 1) == key);
    } catch (const std::exception&) {  // not base64
      return false;
    }
  }

  // Authentication and CORS before any route: the page and /health are open; every API route needs the key.
  httplib::Server::HandlerResponse pre_route(const httplib::Request& req, httplib::Response& res) {
    const std::string origin = req.get_header_value("Origin");
    const auto& cors = ctx.options.cors;
    const bool allowed = !origin.empty() && std::any_of(cors.begin(), cors.end(), [&](const std::string& o) {
                           return o == "*" || o == origin;
                         });
    if (allowed) {
      res.set_header("Access-Control-Allow-Origin", origin);
      res.set_header("Vary", "Origin");
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
      res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
      res.set_header("Access-Control-Expose-Headers", "X-Latency-Ms, X-Frame");
    }
    if (req.method == "OPTIONS") {
      res.status = allowed ? 204 : 403;
      return httplib::Server::HandlerResponse::Handled;
    }
    const bool open = req.path == "/" || req.path == "/health";
    if (!open && !ctx.options.api_key.empty() && !authorized(req)) {
      reply_error(res, 401, "authentication_error",
                  "missing or wrong API key (send \"Authorization: Bearer KEY\", or HTTP Basic auth with KEY as the "
                  "password; in a browser, open the page as /?key=KEY)");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (ctx.worker.shutting_down() && req.method == "POST") {
      reply_error(res, 503, "unavailable", "the server is shutting down");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  }

  // Errors httplib produces itself (no route, body too large, unreadable request) as JSON too.
  void error_body(const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string allowed = res.status == 404 ? allowed_methods(ctx, req.path) : "";
    if (!allowed.empty()) {
      res.set_header("Allow", allowed);
      reply_error(res, 405, "method_not_allowed", req.path + " does not take " + req.method + " (it takes " + allowed + ")");
    } else if (res.status == 404) reply_error(res, 404, "not_found", "no route " + req.method + " " + req.path);
    else if (res.status == 413)
      reply_error(res, 413, "payload_too_large", "the request body is larger than this server's limit of " +
                                                     std::to_string(ctx.options.max_body_bytes) + " bytes");
    else reply_error(res, res.status, "invalid_request_error", "the request could not be handled (HTTP " +
                                                                std::to_string(res.status) + ")");
  }

  void configure() {
    http.set_payload_max_length(ctx.options.max_body_bytes);
    http.set_tcp_nodelay(ctx.options.tcp_nodelay);
    const int threads = std::max(2, ctx.options.threads);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_pre_routing_handler([this](const httplib::Request& q, httplib::Response& r) { return pre_route(q, r); });
    http.set_error_handler([this](const httplib::Request& q, httplib::Response& r) { error_body(q, r); });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& r, std::exception_ptr) {
      reply_error(r, 500, "server_error", "internal error");
    });
    add_openai_routes(http, ctx);
    add_a1111_routes(http, ctx);
    add_job_routes(http, ctx);
    add_live_routes(http, ctx);
  }

  Worker worker;
  Context ctx;
  httplib::Server http;
  int bound_port = -1;
};

Server::Server(std::unique_ptr<Pipeline> pipeline, GenerationParams defaults, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(pipeline), std::move(defaults), std::move(options))) {
  impl_->configure();
}

Server::~Server() { stop(); }

void Server::bind() {
  const auto& o = impl_->ctx.options;
  if (o.port == 0) {
    impl_->bound_port = impl_->http.bind_to_any_port(o.host);
  } else {
    impl_->bound_port = impl_->http.bind_to_port(o.host, o.port) ? o.port : -1;
  }
  if (impl_->bound_port < 0)
    throw Error("serve: cannot listen on " + o.host + ":" + std::to_string(o.port) +
                " (address in use, or not an address of this machine?)");
}

double Server::warm_up() {
  const auto t0 = std::chrono::steady_clock::now();
  Context& ctx = impl_->ctx;
  const int side = 8 * ctx.worker.pipeline().components.vae_scale_factor();
  const json fields = {{"prompt", "warm-up"}, {"width", side},  {"height", side},
                       {"steps", 1},          {"seed", 0},      {"resolution_binning", false},
                       {"batch_count", 1},    {"timesteps", json::array()}};
  try {
    run_job(ctx, prepare_job(ctx, fields, {}));
  } catch (const std::exception& e) {
    throw Error(std::string("serve: the warm-up generation failed: ") + e.what());
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int Server::port() const { return impl_->bound_port; }

void Server::run() { impl_->http.listen_after_bind(); }

void Server::stop() {
  impl_->worker.shutdown();  // refuse new work, finish the job in hand
  impl_->http.stop();
}

}  // namespace sana::server
