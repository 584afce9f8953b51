// The live endpoint behind the draw-to-image page: POST /sprint/v1/live with a session, a frame number, the prompt
// and the canvas -> the image itself, with its latency in X-Latency-Ms and its decoder in X-Decoder (docs/SERVER.md). Latest wins: a frame that a
// newer frame of its session overtakes before it runs, or that arrives after a newer one, answers 409.
#include <chrono>
#include <mutex>

#include "http_context.h"
#include "sana/error.h"

namespace sana::server {
namespace {

// The newest frame number seen per session (frames arriving out of order are stale).
class FrameClock {
 public:
  bool newer(const std::string& session, int64_t frame) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto [it, inserted] = latest_.emplace(session, frame);
    if (!inserted && frame <= it->second) return false;
    it->second = frame;
    if (latest_.size() > 4096) latest_.clear();  // sessions come and go; a reset only forgives old frames
    return true;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, int64_t> latest_;
};

void live(Context& ctx, FrameClock& clock, const httplib::Request& req, httplib::Response& res) {
  const auto t0 = std::chrono::steady_clock::now();
  const json body = parse_body(req);
  if (!body.contains("session") || !body["session"].is_string() || body["session"].get<std::string>().empty())
    throw ParamError("session", "is required: a string naming the drawing session");
  if (!body.contains("frame") || !body["frame"].is_number_integer()) throw ParamError("frame", "must be an integer");
  const std::string format = string_field(body, "format", "jpeg");
  if (format != "jpeg" && format != "png" && format != "webp") throw ParamError("format", "must be jpeg, png or webp");
  json fields = json::object();
  for (const char* key : {"prompt", "seed", "steps", "guidance", "control_scale", "control_preprocess", "width", "height"})
    if (body.contains(key)) fields[key] = body[key];
  if (body.contains("image")) fields["control_image"] = body["image"];
  if (!fields.contains("control_preprocess")) fields["control_preprocess"] = "invert";  // a canvas: black on white
  // A preview frame (the page sends them while a stroke is being drawn) is decoded by the tiny decoder when the model
  // has one: a rough image now, the full decode once the stroke ends.
  if (body.contains("preview") && !body["preview"].is_boolean()) throw ParamError("preview", "must be true or false");
  const bool tiny = body.value("preview", false) && ctx.worker.pipeline().components.tiny_vae;
  fields["decoder"] = tiny ? "tiny" : "full";
  const auto job = prepare_job(ctx, fields, {{"control_image", "image"}});
  job->live_session = body["session"].get<std::string>();
  job->live_frame = body["frame"].get<int64_t>();
  if (!clock.newer(job->live_session, job->live_frame))
    throw HttpError(409, "conflict", "frame " + std::to_string(job->live_frame) + " is older than one already received");
  run_job(ctx, job);
  const std::string bytes = job_image(*job, 0, format);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  res.set_header("X-Latency-Ms", std::to_string(static_cast<int64_t>(ms + 0.5)));
  res.set_header("X-Frame", std::to_string(job->live_frame));
  res.set_header("X-Decoder", tiny ? "tiny" : "full");
  res.set_header("Cache-Control", "no-store");
  res.status = 200;
  res.set_content(bytes, "image/" + format);
}

}  // namespace

void add_live_routes(httplib::Server& server, Context& ctx) {
  static FrameClock clock;
  route(server, ctx, "POST", "/sprint/v1/live", guarded([&ctx](const httplib::Request& q, httplib::Response& r) {
                live(ctx, clock, q, r);
              }));
  route(server, ctx, "GET", "/", [](const httplib::Request&, httplib::Response& r) {
    r.set_header("Cache-Control", "no-store");
    r.set_content(live_page_html(), "text/html; charset=utf-8");
  });
}

}  // namespace sana::server
