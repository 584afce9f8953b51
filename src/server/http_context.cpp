// Shared pieces of the route handlers (http_context.h).
#include "http_context.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "sana/error.h"
#include "sana/frontend/image_source.h"
#include "sana/io/image.h"

namespace sana::server {
namespace {

// The server's limits, stricter than the library's, as field errors.
void check_limits(const GenerationParams& p, const ServerOptions& o) {
  const auto limit = [](bool ok, const char* field, const std::string& message) {
    if (!ok) throw ParamError(field, message);
  };
  limit(p.batch_count <= o.max_images, "batch_count", "is " + std::to_string(p.batch_count) +
        ", more than this server's limit of " + std::to_string(o.max_images) + " images per request");
  limit(p.width <= o.max_side, "width", "is " + std::to_string(p.width) + ", more than this server's limit of " +
        std::to_string(o.max_side) + " pixels");
  limit(p.height <= o.max_side, "height", "is " + std::to_string(p.height) + ", more than this server's limit of " +
        std::to_string(o.max_side) + " pixels");
  const int64_t pixels = int64_t{p.batch_count} * p.width * p.height;
  limit(pixels <= o.max_pixels, "batch_count", std::to_string(p.batch_count) + " images of " + std::to_string(p.width) +
        "x" + std::to_string(p.height) + " are " + std::to_string(pixels) + " pixels, more than this server's limit of " +
        std::to_string(o.max_pixels) + " per request");
  limit(p.steps <= o.max_steps, "steps", "is " + std::to_string(p.steps) + ", more than this server's limit of " +
        std::to_string(o.max_steps) + " steps");
  limit(p.prompt.size() <= o.max_prompt_chars, "prompt", "is " + std::to_string(p.prompt.size()) +
        " bytes, more than this server's limit of " + std::to_string(o.max_prompt_chars));
}

std::string spelled(const Spelling& s, const std::string& field) {
  const auto it = s.find(field);
  return it == s.end() ? field : it->second;
}

}  // namespace

void reply_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void reply_error(httplib::Response& res, int status, const std::string& type, const std::string& message) {
  reply_json(res, status, {{"error", {{"message", message}, {"type", type}, {"code", status}}}});
}

json parse_body(const httplib::Request& req) {
  if (req.body.empty()) throw HttpError(400, "invalid_request_error", "the request has no body (expected JSON)");
  const json j = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw HttpError(400, "invalid_request_error", "the body is not valid JSON");
  if (!j.is_object()) throw HttpError(400, "invalid_request_error", "the body must be a JSON object");
  return j;
}

std::string string_field(const json& obj, const char* key, const std::string& fallback) {
  if (!obj.contains(key) || obj[key].is_null()) return fallback;
  if (!obj[key].is_string()) throw ParamError(key, "must be a string, got " + obj[key].dump());
  return obj[key].get<std::string>();
}

bool bool_field(const json& obj, const char* key, bool fallback) {
  if (!obj.contains(key) || obj[key].is_null()) return fallback;
  if (!obj[key].is_boolean()) throw ParamError(key, "must be true or false, got " + obj[key].dump());
  return obj[key].get<bool>();
}

httplib::Server::Handler guarded(std::function<void(const httplib::Request&, httplib::Response&)> handler) {
  return [handler](const httplib::Request& req, httplib::Response& res) {
    try {
      handler(req, res);
    } catch (const HttpError& e) {
      reply_error(res, e.status, e.type, e.what());
    } catch (const ParamError& e) {
      reply_error(res, 400, "invalid_request_error", e.what());
    } catch (const std::bad_alloc&) {
      reply_error(res, 500, "server_error", "out of memory");
    } catch (const std::exception& e) {
      reply_error(res, 500, "server_error", first_line(e.what()));
    }
  };
}

namespace {

// A LoRA of the server's --lora-dir by name: NAME.safetensors there (no paths: a client names, it does not browse).
LoraSpec named_lora(const Context& ctx, const std::string& field, const std::string& name, double scale) {
  if (ctx.options.lora_dir.empty())
    throw ParamError(field, "this server takes no LoRAs per request (start it with --lora-dir DIR)");
  static const std::regex kName("[A-Za-z0-9_][A-Za-z0-9_.+-]*");
  if (!std::regex_match(name, kName) || name.find("..") != std::string::npos)
    throw ParamError(field, "'" + name + "' is not a LoRA name (letters, digits, _ . + -)");
  const std::filesystem::path file = std::filesystem::path(ctx.options.lora_dir) / (name + ".safetensors");
  if (!std::filesystem::is_regular_file(file))
    throw ParamError(field, "unknown LoRA '" + name + "' (GET /sdapi/v1/loras lists them)");
  try {
    check_lora_scale(scale, name, field);
  } catch (const Error& e) {
    throw ParamError(field, std::string(e.what()).substr(field.size() + 2));
  }
  return {file.string(), scale};
}

// "NAME" or "NAME:SCALE", as a prompt tag and the loras field spell a LoRA (names hold no ':').
std::pair<std::string, double> name_and_scale(const std::string& text, const std::string& field) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return {text, 1.0};
  const std::string tail = text.substr(colon + 1);
  char* end = nullptr;
  const double scale = std::strtod(tail.c_str(), &end);
  if (tail.empty() || *end) throw ParamError(field, "the LoRA '" + text + "' has no number as its scale");
  return {text.substr(0, colon), scale};
}

}  // namespace

std::vector<LoraSpec> request_loras(const Context& ctx, GenerationParams& p, const json& field) {
  std::vector<LoraSpec> out;
  const auto add = [&](const std::string& where, const std::pair<std::string, double>& lora) {
    out.push_back(named_lora(ctx, where, lora.first, lora.second));
    p.lora.push_back(lora.first + ":" + json(lora.second).dump());  // for the PNG's parameters text
  };
  // A1111's prompt tags, taken out of the prompt as A1111 does.
  static const std::regex kTag("<lora:([^>]*)>");
  std::smatch m;
  std::string prompt = p.prompt, kept;
  while (std::regex_search(prompt, m, kTag)) {
    add("prompt", name_and_scale(m[1].str(), "prompt"));
    kept += m.prefix().str();
    prompt = m.suffix().str();
  }
  kept += prompt;
  const size_t first = kept.find_first_not_of(" \t\n"), last = kept.find_last_not_of(" \t\n");
  if (!out.empty()) p.prompt = first == std::string::npos ? "" : kept.substr(first, last - first + 1);
  // The JSON field: ["NAME", "NAME:0.8", {"name": "NAME", "scale": 0.8}, ...].
  if (field.is_null()) return out;
  if (!field.is_array()) throw ParamError("loras", "must be a list of LoRA names or {\"name\", \"scale\"} objects");
  for (const json& item : field) {
    if (item.is_string()) {
      add("loras", name_and_scale(item.get<std::string>(), "loras"));
    } else if (item.is_object() && item.contains("name") && item["name"].is_string() &&
               (!item.contains("scale") || item["scale"].is_number())) {
      add("loras", {item["name"].get<std::string>(), item.value("scale", 1.0)});
    } else {
      throw ParamError("loras", "each entry must be \"NAME\", \"NAME:SCALE\" or {\"name\": ..., \"scale\": ...}, got " + item.dump());
    }
  }
  return out;
}

std::shared_ptr<Job> prepare_job(const Context& ctx, const json& fields, const Spelling& spelling) {
  auto job = std::make_shared<Job>();
  job->id = new_job_id();
  job->params = ctx.defaults;
  GenerationParams& p = job->params;
  try {
    for (const char* fixed : {"model", "controlnet", "vae", "tiny_vae", "quantize", "quantize_min_weights", "device",
                             "dtype"})
      if (fields.contains(fixed)) throw ParamError(fixed, "is chosen when the server starts, not per request");
    json rest = fields;
    const json loras = rest.contains("loras") ? rest["loras"] : json();
    rest.erase("loras");
    set_params_from_json(p, rest);
    job->loras = request_loras(ctx, p, loras);
    if (p.prompt.empty()) throw ParamError("prompt", "is required");
    check_limits(p, ctx.options);
    validate(p);
    validate_for_model(p);
    const Pipeline& pipe = ctx.worker.pipeline();
    if (!p.control_image.empty() && !pipe.components.controlnet)
      throw ParamError("control_image", "this server's model has no ControlNet (start it with --controlnet DIR)");
    if (p.decoder == "tiny" && !pipe.components.tiny_vae)
      throw ParamError("decoder", "this server's model has no tiny decoder (a vae_tiny/ folder, or start it with "
                                  "--tiny-vae DIR)");
    if (!p.init_image.empty() && !pipe.capabilities().init_image)
      throw ParamError("init_image", "img2img needs a SANA-Sprint model; this server runs a flow teacher");
    resolve_seed(p);
    // Input images are bounded by the output's limit, but at least 1024 px (the live page sends 512^2 canvases to
    // any model): an 8192^2 control PNG of 261 kB decoded to 800 MB of floats per request.
    job->options = to_generate_options(p, /*allow_files=*/false, std::max(ctx.options.max_side, 1024));
  } catch (const ParamError& e) {
    throw ParamError(spelled(spelling, e.field()), e.message());
  }
  return job;
}

void run_job(Context& ctx, const std::shared_ptr<Job>& job) {
  job->keep_for_polling = false;  // answered here; nobody polls it
  switch (ctx.worker.submit(job)) {
    case Worker::Admission::queue_full:
      throw HttpError(429, "rate_limit_error", "the queue is full (" + std::to_string(ctx.options.queue) +
                                                   " jobs); try again later");
    case Worker::Admission::shutting_down:
      throw HttpError(503, "unavailable", "the server is shutting down");
    case Worker::Admission::accepted:
      break;
  }
  ctx.worker.wait(job);
  switch (job->state) {
    case Job::State::done: return;
    case Job::State::failed:
      if (job->client_error) throw HttpError(400, "invalid_request_error", "loras: " + job->error);
      throw HttpError(500, "server_error", "generation failed: " + job->error);
    case Job::State::superseded: throw HttpError(409, "conflict", "superseded by a newer frame of the same session");
    default:
      // Cancelled by the shutdown (queued when it began): 503 as documented; by a client: 409.
      if (ctx.worker.shutting_down()) throw HttpError(503, "unavailable", "the server is shutting down");
      throw HttpError(409, "conflict", "the job was cancelled" + (job->error.empty() ? "" : ": " + job->error));
  }
}

std::string job_image(const Job& job, size_t i, const std::string& format, int quality) {
  if (format == "jpeg") return encode_jpeg(job.images.at(i), std::max(quality, 1));
  if (format == "webp") return encode_webp(job.images.at(i), quality);
  return encode_png(job.images.at(i), {{"parameters", png_parameters(job.params, job.sampler, job.timesteps,
                                                                     static_cast<int64_t>(i), "sana-sprint serve")}});
}

std::string job_png_base64(const Job& job, size_t i) { return base64_encode(job_image(job, i, "png")); }

void route(httplib::Server& server, Context& ctx, const std::string& method, const std::string& pattern,
           httplib::Server::Handler handler) {
  if (method == "GET") server.Get(pattern, std::move(handler));
  else if (method == "POST") server.Post(pattern, std::move(handler));
  else if (method == "DELETE") server.Delete(pattern, std::move(handler));
  else throw std::logic_error("route: unsupported method " + method);
  ctx.routes.emplace_back(method, std::regex(pattern));
}

std::string allowed_methods(const Context& ctx, const std::string& path) {
  std::string out;
  for (const auto& [method, pattern] : ctx.routes)
    if (std::regex_match(path, pattern) && out.find(method) == std::string::npos) out += (out.empty() ? "" : ", ") + method;
  return out;
}

}  // namespace sana::server
