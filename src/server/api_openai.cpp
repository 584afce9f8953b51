// The OpenAI image API: POST /v1/images/generations, POST /v1/images/edits, GET /v1/models (docs/SERVER.md).
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
                          "control_preprocess", "init_image", "strength", "loras", "decoder"})
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

void generate(Context& ctx, const json& body, httplib::Response& res) {
  const std::string format = string_field(body, "response_format", "b64_json");
  if (format == "url")
    throw ParamError("response_format", "\"url\" is not supported: this server keeps no files to link to; ask for "
                                        "\"b64_json\" (the default)");
  if (format != "b64_json") throw ParamError("response_format", "must be \"b64_json\", got \"" + format + "\"");
  const std::string output_format = string_field(body, "output_format", "png");
  if (output_format != "png" && output_format != "jpeg" && output_format != "webp")
    throw ParamError("output_format", "must be \"png\", \"jpeg\" or \"webp\", got \"" + output_format + "\"");
  // OpenAI's output_compression (jpeg and webp): the encoder's quality, 0..100 (webp 100: lossless). 90 unless given.
  int quality = 90;
  if (body.contains("output_compression")) {
    const json& q = body["output_compression"];
    if (!q.is_number_integer() || q.get<int64_t>() < 0 || q.get<int64_t>() > 100)
      throw ParamError("output_compression", "must be an integer from 0 to 100");
    quality = q.get<int>();
  }
  const auto job = prepare_job(ctx, generation_fields(body), kSpelling);
  run_job(ctx, job);
  json data = json::array();
  for (size_t i = 0; i < job->images.size(); ++i)
    data.push_back({{"b64_json", base64_encode(job_image(*job, i, output_format, quality))}, {"revised_prompt", job->params.prompt}});
  reply_json(res, 200,
             {{"created", static_cast<int64_t>(job->finished)},
              {"data", data},
              {"output_format", output_format},
              {"size", std::to_string(job->params.width) + "x" + std::to_string(job->params.height)},
              {"seed", job->params.seed}});
}

// images.edit as the OpenAI SDK (and stable-diffusion.cpp's clients) send it: multipart/form-data with the image as
// a file and every other field as text. The image becomes the init image of an img2img call (a Sprint model); the
// numeric fields are read as JSON numbers, so "4" is 4 and "four" a 400 naming the field.
json edit_body(const httplib::Request& req) {
  if (!req.is_multipart_form_data())
    throw HttpError(400, "invalid_request_error",
                    "send multipart/form-data with an image file and a prompt (as the OpenAI SDK's images.edit does)");
  json body = json::object();
  for (const auto& [name, part] : req.files) {
    if (name == "image" || name == "image[]") {
      if (body.contains("init_image")) throw ParamError("image", "give one image (this server edits one at a time)");
      body["init_image"] = base64_encode(part.content);
    } else if (name == "mask") {
      throw ParamError("mask", "is not supported: img2img here changes the whole image (leave the mask out)");
    } else if (name == "n" || name == "seed" || name == "steps" || name == "guidance" || name == "strength" ||
               name == "control_scale") {
      const json number = json::parse(part.content, nullptr, false);
      body[name] = number.is_number() ? number : json(part.content);
    } else {
      body[name] = part.content;
    }
  }
  if (!body.contains("init_image")) throw ParamError("image", "is required (the image to edit, as a file part)");
  return body;
}

}  // namespace

void add_openai_routes(httplib::Server& server, Context& ctx) {
  route(server, ctx, "POST", "/v1/images/generations",
              guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                generate(ctx, parse_body(req), res);
              }));
  route(server, ctx, "POST", "/v1/images/edits", guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
          generate(ctx, edit_body(req), res);
        }));
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
