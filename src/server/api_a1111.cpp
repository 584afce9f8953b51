// The Automatic1111 web UI API as its clients use it (SillyTavern, Open WebUI): txt2img, img2img with a ControlNet
// unit, and the discovery routes they call first (docs/SERVER.md).
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "http_context.h"
#include "sana/frontend/image_source.h"
#include "sana/io/image.h"
#include "sana/error.h"

namespace sana::server {
namespace {

const Spelling kSpelling = {{"guidance", "cfg_scale"},
                            {"batch_count", "batch_size"},
                            {"init_image", "init_images"},
                            {"strength", "denoising_strength"},
                            {"control_image", "alwayson_scripts.controlnet.args[0].image"},
                            {"control_scale", "alwayson_scripts.controlnet.args[0].weight"}};

// The first enabled ControlNet unit: its image, weight and (preprocessor) module.
void controlnet_unit(const json& body, json& f) {
  if (!body.contains("alwayson_scripts") || !body["alwayson_scripts"].is_object()) return;
  const json& scripts = body["alwayson_scripts"];
  const auto it = scripts.find("controlnet");
  if (it == scripts.end() || !it->is_object() || !it->contains("args") || !(*it)["args"].is_array() ||
      (*it)["args"].empty())
    return;
  const json& unit = (*it)["args"][0];
  if (!unit.is_object() || !bool_field(unit, "enabled", true)) return;
  if (unit.contains("image")) f["control_image"] = unit["image"];
  else if (unit.contains("input_image")) f["control_image"] = unit["input_image"];
  if (unit.contains("weight")) f["control_scale"] = unit["weight"];
  const std::string module = string_field(unit, "module", "none");
  f["control_preprocess"] = module.find("invert") != std::string::npos  ? "invert"
                            : module.find("canny") != std::string::npos ? "canny"
                                                                        : "none";
}

json generation_fields(const json& body, bool img2img) {
  json f = json::object();
  for (const char* key : {"prompt", "negative_prompt", "seed", "steps", "width", "height", "loras"})
    if (body.contains(key)) f[key] = body[key];
  if (body.contains("cfg_scale")) f["guidance"] = body["cfg_scale"];
  if (!f.contains("seed")) f["seed"] = -1;  // A1111's default: a random seed (clients send -1 or nothing)
  if (body.contains("batch_size")) f["batch_count"] = body["batch_size"];
  controlnet_unit(body, f);
  if (img2img) {
    if (!body.contains("init_images") || !body["init_images"].is_array() || body["init_images"].empty())
      throw ParamError("init_images", "img2img needs a list with one base64 image");
    f["init_image"] = body["init_images"][0];
    if (body.contains("denoising_strength")) f["strength"] = body["denoising_strength"];
  }
  return f;
}

void generate(Context& ctx, const httplib::Request& req, httplib::Response& res, bool img2img) {
  const json body = parse_body(req);
  const auto job = prepare_job(ctx, generation_fields(body, img2img), kSpelling);
  run_job(ctx, job);
  json images = json::array();
  for (size_t i = 0; i < job->images.size(); ++i) images.push_back(job_png_base64(*job, i));
  const GenerationParams& p = job->params;
  const json info = {{"prompt", p.prompt},       {"negative_prompt", p.negative_prompt},
                     {"seed", p.seed},           {"all_seeds", json::array({p.seed})},
                     {"width", p.width},         {"height", p.height},
                     {"steps", p.steps},         {"cfg_scale", p.guidance},
                     {"sampler_name", job->sampler}, {"sd_model_name", ctx.model_name},
                     {"batch_size", p.batch_count}};
  reply_json(res, 200, {{"images", images}, {"parameters", body}, {"info", info.dump()}});
}

// A1111's png-info: the text chunks of a PNG (ours carry "parameters": the prompt, then "Key: value, ..." lines), with
// the parameters split into fields as A1111 clients read them.
json png_info(const httplib::Request& req) {
  const json body = parse_body(req);
  const std::string source = string_field(body, "image", "");
  if (source.empty()) throw ParamError("image", "is required (a base64 PNG or data URL)");
  std::map<std::string, std::string> text;
  try {
    decode_png(image_source_bytes(source, "image", /*allow_files=*/false), "image", &text);
  } catch (const ParamError&) {
    throw;
  } catch (const Error& e) {
    throw ParamError("image", e.what());
  }
  const std::string info = text.count("parameters") ? text["parameters"] : "";
  json parameters = json::object();
  const size_t newline = info.find('\n');
  if (!info.empty()) parameters["Prompt"] = info.substr(0, newline);
  if (newline != std::string::npos) {
    std::stringstream fields(info.substr(newline + 1));
    for (std::string item; std::getline(fields, item, ',');) {
      const size_t colon = item.find(": ");
      if (colon == std::string::npos) continue;
      const size_t start = item.find_first_not_of(" \n");
      parameters[item.substr(start, colon - start)] = item.substr(colon + 2);
    }
  }
  return {{"info", info}, {"items", text}, {"parameters", parameters}};
}

// The pipeline's samplers under A1111's names.
json samplers(const Context& ctx) {
  const std::map<std::string, json> a1111 = {
      {"scm", {{"name", "SCM"}, {"aliases", {"scm", "sana_sprint"}}, {"options", json::object()}}},
      {"euler", {{"name", "Euler"}, {"aliases", {"euler", "flow_euler"}}, {"options", json::object()}}},
      {"dpm++2m", {{"name", "DPM++ 2M"}, {"aliases", {"dpm++2m", "dpmpp_2m"}}, {"options", json::object()}}}};
  json list = json::array();
  for (const std::string& s : ctx.worker.pipeline().capabilities().samplers) list.push_back(a1111.at(s));
  return list;
}

json progress(Context& ctx) {
  const Worker::Status s = ctx.worker.status();
  const auto lock = ctx.worker.lock();
  const double fraction = s.running && s.running->steps > 0 ? static_cast<double>(s.running->step) / s.running->steps : 0;
  return {{"progress", fraction},
          {"eta_relative", 0.0},
          {"state",
           {{"skipped", false},
            {"interrupted", false},
            {"job", ""},  // never another client's job id: with it, anyone could fetch that job's images
            {"job_count", s.queued + (s.running ? 1 : 0)},
            {"sampling_step", s.running ? s.running->step : 0},
            {"sampling_steps", s.running ? s.running->steps : 0}}},
          {"current_image", nullptr},
          {"textinfo", s.running ? "generating" : "idle"}};
}

}  // namespace

void add_a1111_routes(httplib::Server& server, Context& ctx) {
  route(server, ctx, "POST", "/sdapi/v1/txt2img", guarded([&ctx](const httplib::Request& q, httplib::Response& r) {
                generate(ctx, q, r, false);
              }));
  route(server, ctx, "POST", "/sdapi/v1/img2img", guarded([&ctx](const httplib::Request& q, httplib::Response& r) {
                generate(ctx, q, r, true);
              }));
  route(server, ctx, "GET", "/sdapi/v1/options", guarded([&ctx](const httplib::Request&, httplib::Response& r) {
               reply_json(r, 200, {{"sd_model_checkpoint", ctx.model_name}, {"samples_format", "png"},
                                   {"sd_checkpoint_hash", nullptr}, {"CLIP_stop_at_last_layers", 1}});
             }));
  route(server, ctx, "POST", "/sdapi/v1/options", guarded([](const httplib::Request&, httplib::Response& r) {
                reply_json(r, 200, json::object());  // one model, no settings to change
              }));
  route(server, ctx, "GET", "/sdapi/v1/sd-models", guarded([&ctx](const httplib::Request&, httplib::Response& r) {
               reply_json(r, 200, json::array({{{"title", ctx.model_name}, {"model_name", ctx.model_name},
                                                {"hash", nullptr}, {"sha256", nullptr},
                                                // the folder's name only: clients need no path of the server's disk
                                                {"filename", ctx.model_name}, {"config", nullptr}}}));
             }));
  route(server, ctx, "GET", "/sdapi/v1/samplers", guarded([&ctx](const httplib::Request&, httplib::Response& r) {
               reply_json(r, 200, samplers(ctx));
             }));
  route(server, ctx, "GET", "/sdapi/v1/schedulers", guarded([&ctx](const httplib::Request&, httplib::Response& r) {
               const bool sprint = !ctx.worker.pipeline().capabilities().classifier_free_guidance;
               reply_json(r, 200, json::array({{{"name", sprint ? "scm" : "flow"},
                                                {"label", sprint ? "SCM (TrigFlow)" : "the model's flow scheduler"},
                                                {"aliases", json::array()}, {"need_inner_model", false}}}));
             }));
  // The VAE in use (SillyTavern lists these), by folder name only: the model's own, or the one `serve --vae` gave.
  route(server, ctx, "GET", "/sdapi/v1/sd-vae", guarded([&ctx](const httplib::Request&, httplib::Response& r) {
               std::filesystem::path folder = std::filesystem::path(ctx.defaults.vae).lexically_normal();
               if (folder.filename().empty()) folder = folder.parent_path();  // "dir/"
               const std::string vae = ctx.defaults.vae.empty() ? "vae" : folder.filename().string();
               reply_json(r, 200, json::array({{{"model_name", vae}, {"filename", vae}}}));
             }));
  // The LoRAs of --lora-dir, by name (what <lora:NAME:SCALE> takes); no server paths.
  route(server, ctx, "GET", "/sdapi/v1/loras", guarded([&ctx](const httplib::Request&, httplib::Response& r) {
               json list = json::array();
               std::set<std::string> names;
               if (!ctx.options.lora_dir.empty())
                 for (const auto& entry : std::filesystem::directory_iterator(ctx.options.lora_dir))
                   if (entry.is_regular_file() && entry.path().extension() == ".safetensors")
                     names.insert(entry.path().stem().string());
               for (const std::string& n : names)
                 list.push_back({{"name", n}, {"alias", n}, {"path", n + ".safetensors"}, {"metadata", json::object()}});
               reply_json(r, 200, list);
             }));
  for (const char* empty : {"/sdapi/v1/upscalers", "/sdapi/v1/latent-upscale-modes", "/sdapi/v1/sd-modules"})
    route(server, ctx, "GET", empty, guarded([](const httplib::Request&, httplib::Response& r) { reply_json(r, 200, json::array()); }));
  route(server, ctx, "GET", "/sdapi/v1/progress", guarded([&ctx](const httplib::Request&, httplib::Response& r) {
               reply_json(r, 200, progress(ctx));
             }));
  route(server, ctx, "POST", "/sdapi/v1/png-info", guarded([](const httplib::Request& q, httplib::Response& r) {
                reply_json(r, 200, png_info(q));
              }));
  route(server, ctx, "POST", "/sdapi/v1/interrupt", guarded([&ctx](const httplib::Request&, httplib::Response& r) {
                ctx.worker.interrupt();
                reply_json(r, 200, json::object());
              }));
}

}  // namespace sana::server
