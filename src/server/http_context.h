#pragma once
// What the route handlers share (src/server/): the worker, the model's default parameters, the options; JSON replies
// and errors; turning a request's generation fields into a checked Job.
#include <httplib.h>

#include <map>
#include <regex>
#include <vector>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "sana/server/server.h"
#include "sana/server/worker.h"

namespace sana::server {

using json = nlohmann::json;

struct Context {
  Worker& worker;
  GenerationParams defaults;
  ServerOptions options;
  std::string model_name;
  // Every route as registered ({method, path pattern}): a request for a known path with another method gets 405.
  std::vector<std::pair<std::string, std::regex>> routes;
};

// Registers `handler` for `method` ("GET", "POST", "DELETE") and `pattern` on `server`, and records it in ctx.routes.
void route(httplib::Server& server, Context& ctx, const std::string& method, const std::string& pattern,
           httplib::Server::Handler handler);
// The methods ctx.routes has for `path` ("GET, POST"); empty when the path is unknown.
std::string allowed_methods(const Context& ctx, const std::string& path);

// An error answer: HTTP status, an OpenAI-style type, the message.
struct HttpError : std::runtime_error {
  HttpError(int status, std::string type, const std::string& message)
      : std::runtime_error(message), status(status), type(std::move(type)) {}
  int status;
  std::string type;
};

void reply_json(httplib::Response& res, int status, const json& body);
void reply_error(httplib::Response& res, int status, const std::string& type, const std::string& message);
// The body as a JSON object (400 naming the problem otherwise).
json parse_body(const httplib::Request& req);
// obj[key] as a string or a bool, `fallback` when absent; a value of another JSON type is a 400 naming `key`.
std::string string_field(const json& obj, const char* key, const std::string& fallback);
bool bool_field(const json& obj, const char* key, bool fallback);
// A handler whose exceptions become JSON errors: HttpError as given, ParamError 400, anything else 500.
httplib::Server::Handler guarded(std::function<void(const httplib::Request&, httplib::Response&)> handler);

// Field names of an API, for error messages: canonical field -> the API's spelling.
using Spelling = std::map<std::string, std::string>;

// The model's defaults changed by `fields` (canonical generation-parameter names), within the server's limits,
// validated, seed resolved, images decoded: a Job ready to submit. Errors are 400s spelled with `spelling`.
std::shared_ptr<Job> prepare_job(const Context& ctx, const json& fields, const Spelling& spelling);
// The LoRAs a request asks for: A1111's <lora:NAME:SCALE> tags (taken out of params.prompt) and the "loras" field,
// each resolved to NAME.safetensors in the server's --lora-dir; params.lora gets "NAME:SCALE" for the PNG text.
std::vector<LoraSpec> request_loras(const Context& ctx, GenerationParams& params, const json& loras);

// Submits and waits. 429 when the queue is full, 503 when shutting down, 500 when the job failed, 409 when it was
// cancelled or superseded.
void run_job(Context& ctx, const std::shared_ptr<Job>& job);

// Image i of a finished job as a file's bytes: "png" (with the parameters text chunk, as `generate` writes it),
// "jpeg" or "webp" at `quality` (0..100; for webp 100 is lossless); and the PNG as base64.
std::string job_image(const Job& job, size_t i, const std::string& format, int quality = 90);
std::string job_png_base64(const Job& job, size_t i);

void add_openai_routes(httplib::Server& server, Context& ctx);
void add_a1111_routes(httplib::Server& server, Context& ctx);
void add_job_routes(httplib::Server& server, Context& ctx);
void add_live_routes(httplib::Server& server, Context& ctx);

// The live page (page.html, embedded at build time).
const std::string& live_page_html();

}  // namespace sana::server
