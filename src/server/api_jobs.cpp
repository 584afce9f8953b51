// Asynchronous jobs: POST /sprint/v1/jobs -> 202 with an id; GET /sprint/v1/jobs/{id}; POST .../{id}/cancel or
// DELETE /sprint/v1/jobs/{id}; GET /sprint/v1/jobs (the queue, without ids); and GET /health (docs/SERVER.md).
#include "http_context.h"

namespace sana::server {
namespace {

json job_json(Context& ctx, const Job& job) {
  const auto lock = ctx.worker.lock();
  json j = {{"id", job.id},
            {"status", state_name(job.state)},
            {"created", job.created},
            {"progress", {{"step", job.step}, {"steps", job.steps}}},
            {"seed", job.params.seed}};
  if (const size_t place = ctx.worker.queue_position(job)) j["queue_position"] = place;
  if (job.started > 0) j["started"] = job.started;
  if (job.finished > 0) j["finished"] = job.finished;
  if (!job.error.empty()) j["error"] = job.error;
  if (job.state == Job::State::done) {
    json images = json::array();
    for (size_t i = 0; i < job.images.size(); ++i) images.push_back(job_png_base64(job, i));
    j["images"] = images;
    j["output_format"] = "png";
  }
  return j;
}

void submit(Context& ctx, const httplib::Request& req, httplib::Response& res) {
  const auto job = prepare_job(ctx, parse_body(req), {});
  switch (ctx.worker.submit(job)) {
    case Worker::Admission::queue_full:
      throw HttpError(429, "rate_limit_error", "the queue is full (" + std::to_string(ctx.options.queue) + " jobs)");
    case Worker::Admission::shutting_down: throw HttpError(503, "unavailable", "the server is shutting down");
    case Worker::Admission::accepted: break;
  }
  reply_json(res, 202, {{"id", job->id}, {"status", "queued"}, {"poll_url", "/sprint/v1/jobs/" + job->id}});
}

// The queue as anyone may see it: places, sizes and progress, never ids (an id is the key to a job's images).
json queue_json(Context& ctx) {
  const auto lock = ctx.worker.lock();
  json jobs = json::array();
  size_t place = 0;
  for (const auto& job : ctx.worker.queued())
    jobs.push_back({{"queue_position", ++place},
                    {"status", state_name(job->state)},
                    {"created", job->created},
                    {"width", job->params.width},
                    {"height", job->params.height},
                    {"n", job->params.batch_count},
                    {"steps", job->params.steps}});
  return {{"object", "list"}, {"data", jobs}};
}

std::shared_ptr<Job> find_job(Context& ctx, const std::string& id) {
  auto job = ctx.worker.find(id);
  if (!job) throw HttpError(404, "not_found", "no job " + id + " (unknown, or finished long enough ago to be forgotten)");
  return job;
}

}  // namespace

void add_job_routes(httplib::Server& server, Context& ctx) {
  route(server, ctx, "POST", "/sprint/v1/jobs", guarded([&ctx](const httplib::Request& q, httplib::Response& r) { submit(ctx, q, r); }));
  route(server, ctx, "GET", "/sprint/v1/jobs", guarded([&ctx](const httplib::Request&, httplib::Response& r) {
               reply_json(r, 200, queue_json(ctx));
             }));
  route(server, ctx, "GET", R"(/sprint/v1/jobs/([A-Za-z0-9-]+))", guarded([&ctx](const httplib::Request& q, httplib::Response& r) {
               reply_json(r, 200, job_json(ctx, *find_job(ctx, q.matches[1])));
             }));
  const auto cancel = guarded([&ctx](const httplib::Request& q, httplib::Response& r) {
    const auto job = find_job(ctx, q.matches[1]);
    ctx.worker.cancel(job->id);
    reply_json(r, 200, job_json(ctx, *job));
  });
  route(server, ctx, "POST", R"(/sprint/v1/jobs/([A-Za-z0-9-]+)/cancel)", cancel);
  // The same as DELETE on the job: a method that carries no body. (A POST with no body and no Content-Length, as
  // `curl -X POST URL` sends it, makes cpp-httplib wait for a body until its read timeout.)
  route(server, ctx, "DELETE", R"(/sprint/v1/jobs/([A-Za-z0-9-]+))", cancel);
  route(server, ctx, "GET", "/health", guarded([&ctx](const httplib::Request&, httplib::Response& r) {
               const Worker::Status s = ctx.worker.status();
               reply_json(r, ctx.worker.shutting_down() ? 503 : 200,
                          {{"status", ctx.worker.shutting_down() ? "shutting down" : "ok"},
                           {"model", ctx.model_name},
                           {"pipeline", ctx.worker.pipeline().class_name()},
                           {"controlnet", ctx.worker.pipeline().components.controlnet != nullptr},
                           // What a request without a size gets, and what the server accepts.
                           {"native_size", {{"width", ctx.defaults.width}, {"height", ctx.defaults.height}}},
                           {"vae_factor", ctx.worker.pipeline().components.vae_scale_factor()},
                           {"limits", {{"max_side", ctx.options.max_side},
                                       {"max_images", ctx.options.max_images},
                                       {"max_steps", ctx.options.max_steps},
                                       {"max_pixels", ctx.options.max_pixels}}},
                           {"quantize", ctx.defaults.quantize.empty() ? "none" : ctx.defaults.quantize},
                           {"queued", s.queued},
                           {"live_waiting", s.live_waiting},
                           {"running", s.running != nullptr},
                           {"done", s.done},
                           {"failed", s.failed}});
             }));
}

}  // namespace sana::server
