// The OpenAI image API: POST /v1/images/generations, GET /v1/models (docs/SERVER.md).
#include <regex>

#include "http_context.h"
#include "sana/error.h"
#include "sana/frontend/image_source.h"

namespace sana::server {
namespace {

// OpenAI's names where ours differ; the extras (seed, steps, guidance, control_image, ...) keep our names.
const Spelling kSpelling = {{"batch_count", "n"}, {"width", "size"}, {"height", "size"}};

json generation_fields(const json& body) {
  json f = json::object();
  for (const char* key : {"prompt", "negative_prompt", "seed", "steps", "guidance", "control_image", "control_scale",
                          "control_preprocess", "init_image", "strength"})
    if (body.contains(key)) f[key] = body[key];
  if (body.contains("n")) f["batch_count"] = body["n"];
  // OpenAI's API has no seed: its clients expect a new image for each request, so none given means a random one.
  if (!f.contains("seed")) f["seed"] = -1;
  if (body.contains("size") && body["size"] != "auto") {  // "auto": the model's own size
    if (!body["size"].is_string()) throw ParamError("size", "must be a string \"WIDTHxHEIGHT\" or \"auto\"");
    std::smatch m;
    const std::string size = body["size"].get<std::string>();
    if (!std::regex_match(size, m, std::regex(R"((\d{1,6})x(\d{1,6}))")))
      throw ParamError("size", "must be \"WIDTHxHEIGHT\" (e.g. \"64x64\"), got \"" + size + "\"");
    f["width"] = std::stoi(m[1]);
    f["height"] = std::stoi(m[2]);
  }
  return f;
}

void generations(Context& ctx, const httplib::Request& req, httplib::Response& res) {
  const json body = parse_body(req);
  const std::string format = string_field(body, "response_format", "b64_json");
  if (format == "url")
    throw ParamError("response_format", "\"url\" is not supported: this server keeps no files to link to; ask for "
                                        "\"b64_json\" (the default)");
  if (format != "b64_json") throw ParamError("response_format", "must be \"b64_json\", got \"" + format + "\"");
  const std::string output_format = string_field(body, "output_format", "png");
  if (output_format != "png" && output_format != "jpeg")
    throw ParamError("output_format", "must be \"png\" or \"jpeg\", got \"" + output_format + "\"");
  const auto job = prepare_job(ctx, generation_fields(body), kSpelling);
  run_job(ctx, job);
  json data = json::array();
  for (size_t i = 0; i < job->images.size(); ++i)
    data.push_back({{"b64_json", base64_encode(job_image(*job, i, output_format))}, {"revised_prompt", job->params.prompt}});
  reply_json(res, 200,
             {{"created", static_cast<int64_t>(job->finished)},
              {"data", data},
              {"output_format", output_format},
              {"size", std::to_string(job->params.width) + "x" + std::to_string(job->params.height)},
              {"seed", job->params.seed}});
}

}  // namespace

void add_openai_routes(httplib::Server& server, Context& ctx) {
  route(server, ctx, "POST", "/v1/images/generations",
              guarded([&ctx](const httplib::Request& req, httplib::Response& res) { generations(ctx, req, res); }));
  route(server, ctx, "GET", "/v1/models", guarded([&ctx](const httplib::Request&, httplib::Response& res) {
               reply_json(res, 200,
                          {{"object", "list"},
                           {"data", json::array({{{"id", ctx.model_name},
                                                  {"object", "model"},
                                                  {"created", 0},
                                                  {"owned_by", "sana-sprint"}}})}});
             }));
}

}  // namespace sana::server
