// `sana-sprint serve` over real HTTP on an ephemeral loopback port, with the shipped shapes student: every route,
// the images decoded and compared with the library's (the same seed gives the same image as `generate`), the bad
// requests a client can send (each answered with its status and a message, the server serving on afterwards), the
// queue limit, the live endpoint's latest-wins rule, the API key, CORS and an orderly stop.
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>
#include <thread>

#include "sana/frontend/image_source.h"
#include "sana/io/config.h"
#include "sana/io/image.h"
#include "sana/io/safetensors.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/lora.h"
#include "sana/pipeline/pipeline.h"
#include "sana/server/server.h"
#include "sana/server/worker.h"
#include "test_util.h"

using nlohmann::json;

namespace {

const std::string kStudent = std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes";

sana::GenerationParams model_defaults(const std::string& model) {
  sana::GenerationParams p;
  p.model = model;
  sana::apply_model_defaults(p, {});
  return p;
}

// A server on a free port, run on its own thread for the test's lifetime.
class LiveServer {
 public:
  explicit LiveServer(sana::server::ServerOptions o = {}, const std::string& model = kStudent) {
    o.port = 0;
    server_ = std::make_unique<sana::server::Server>(sana::load_pipeline(model, at::kCPU, at::kFloat),
                                                     model_defaults(model), o);
    server_->bind();
    thread_ = std::thread([this] { server_->run(); });
  }
  ~LiveServer() {
    server_->stop();
    thread_.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(120, 0);
    return c;
  }
  sana::server::Server& server() { return *server_; }

 private:
  std::unique_ptr<sana::server::Server> server_;
  std::thread thread_;
};

json post_json(httplib::Client& c, const std::string& path, const json& body, int* status = nullptr,
               const httplib::Headers& headers = {}) {
  const auto r = c.Post(path.c_str(), headers, body.dump(), "application/json");
  EXPECT_TRUE(r) << path << ": no response";
  if (!r) return {};
  if (status) *status = r->status;
  return json::parse(r->body, nullptr, false);
}

at::Tensor decode_b64(const std::string& b64) { return sana::decode_png(sana::base64_decode(b64, "test"), "test"); }

std::string b64_png_of(const std::string& path) { return sana::base64_encode(sana::read_text_file(path)); }

// The library's image for the same request: what `generate` writes.
at::Tensor library_image(const std::string& prompt, int64_t seed, int steps) {
  static const auto pipe = sana::load_pipeline(kStudent, at::kCPU, at::kFloat);
  sana::GenerationParams p = model_defaults(kStudent);
  p.prompt = prompt, p.seed = seed, p.steps = steps;
  const at::Tensor img = pipe->generate(sana::to_generate_options(p)).images[0];
  return sana::decode_png(sana::encode_png(img), "library");
}

}  // namespace

TEST(Server, OpenAIAndJobsAndA1111GiveTheLibrarysImages) {
  LiveServer s;
  auto c = s.client();
  const at::Tensor expected = library_image("two red circles above a blue square", 7, 1);

  int status = 0;
  json r = post_json(c, "/v1/images/generations",
                     {{"prompt", "two red circles above a blue square"}, {"seed", 7}, {"n", 2}}, &status);
  ASSERT_EQ(status, 200) << r.dump();
  ASSERT_EQ(r["data"].size(), 2u);
  const at::Tensor first = decode_b64(r["data"][0]["b64_json"]);
  EXPECT_EQ(first.sizes(), (std::vector<int64_t>{3, 64, 64}));
  EXPECT_EQ(r["size"], "64x64");

  r = post_json(c, "/v1/images/generations", {{"prompt", "two red circles above a blue square"}, {"seed", 7}}, &status);
  ASSERT_EQ(status, 200);
  EXPECT_TRUE(at::equal(decode_b64(r["data"][0]["b64_json"]), expected));

  // The tiny preview decoder per request: the same scene, decoded roughly.
  r = post_json(c, "/v1/images/generations",
                {{"prompt", "two red circles above a blue square"}, {"seed", 7}, {"decoder", "tiny"}}, &status);
  ASSERT_EQ(status, 200) << r.dump();
  const at::Tensor tiny = decode_b64(r["data"][0]["b64_json"]);
  EXPECT_FALSE(at::equal(tiny, expected));
  EXPECT_LT((tiny - expected).abs().mean().item<double>(), 0.05);

  r = post_json(c, "/sdapi/v1/txt2img",
                {{"prompt", "two red circles above a blue square"}, {"seed", 7}, {"steps", 1}, {"cfg_scale", 4.5},
                 {"sampler_name", "Euler a"}, {"n_iter", 1}},
                &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_TRUE(at::equal(decode_b64(r["images"][0]), expected));
  EXPECT_EQ(json::parse(r["info"].get<std::string>())["seed"], 7);
  // A1111's png-info reads the parameters back from the PNG it gave (clients' "send to txt2img").
  const json info = post_json(c, "/sdapi/v1/png-info", {{"image", "data:image/png;base64," + r["images"][0].get<std::string>()}},
                              &status);
  ASSERT_EQ(status, 200) << info.dump();
  EXPECT_EQ(info["parameters"]["Prompt"], "two red circles above a blue square");
  EXPECT_EQ(info["parameters"]["Seed"], "7");
  EXPECT_EQ(info["parameters"]["Steps"], "1");
  EXPECT_EQ(info["items"]["parameters"], info["info"]);
  post_json(c, "/sdapi/v1/png-info", {{"image", "@@@"}}, &status);
  EXPECT_EQ(status, 400);

  r = post_json(c, "/sprint/v1/jobs", {{"prompt", "two red circles above a blue square"}, {"seed", 7}}, &status);
  ASSERT_EQ(status, 202) << r.dump();
  const std::string id = r["id"];
  for (int i = 0; i < 600 && r.value("status", "") != "done"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto g = c.Get(("/sprint/v1/jobs/" + id).c_str());
    ASSERT_TRUE(g);
    r = json::parse(g->body);
  }
  ASSERT_EQ(r["status"], "done") << r.dump();
  EXPECT_TRUE(at::equal(decode_b64(r["images"][0]), expected));

  // img2img through A1111: the init image comes back changed but of its size.
  const std::string init = sana::base64_encode(sana::encode_png(at::full({3, 64, 64}, 0.9)));
  r = post_json(c, "/sdapi/v1/img2img",
                {{"prompt", "a red square"}, {"init_images", {init}}, {"denoising_strength", 1.0}, {"steps", 2}},
                &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(decode_b64(r["images"][0]).sizes(), (std::vector<int64_t>{3, 64, 64}));

  // OpenAI's images.edit: multipart/form-data with the image as a file and text fields; the same img2img call as
  // the JSON route with the image inline.
  const std::string init_png = sana::encode_png(at::full({3, 64, 64}, 0.9));
  r = post_json(c, "/v1/images/generations",
                {{"prompt", "a red square"}, {"init_image", init}, {"strength", 1.0}, {"steps", 2}, {"seed", 5}}, &status);
  ASSERT_EQ(status, 200) << r.dump();
  const at::Tensor inline_edit = decode_b64(r["data"][0]["b64_json"]);
  const auto edit = [&](httplib::MultipartFormDataItems items) {
    items.push_back({"prompt", "a red square", "", ""});
    const auto a = c.Post("/v1/images/edits", items);
    EXPECT_TRUE(a);
    return a ? std::make_pair(a->status, json::parse(a->body, nullptr, false)) : std::make_pair(0, json());
  };
  const auto [edit_status, edited] = edit({{"image", init_png, "init.png", "image/png"}, {"strength", "1.0", "", ""},
                                           {"steps", "2", "", ""}, {"seed", "5", "", ""}, {"model", "dall-e-2", "", ""}});
  ASSERT_EQ(edit_status, 200) << edited.dump();
  EXPECT_TRUE(at::equal(decode_b64(edited["data"][0]["b64_json"]), inline_edit));
  for (const auto& [items, message] :
       {std::pair<httplib::MultipartFormDataItems, std::string>{{{"steps", "2", "", ""}}, "image: is required"},
        {{{"image", init_png, "a.png", "image/png"}, {"mask", init_png, "m.png", "image/png"}}, "mask: is not supported"},
        {{{"image", init_png, "a.png", "image/png"}, {"steps", "four", "", ""}}, "steps"},
        {{{"image", "not a png", "a.png", "image/png"}}, "is not a PNG"}}) {
    const auto [bad_status, bad] = edit(items);
    EXPECT_EQ(bad_status, 400) << message;
    EXPECT_NE(bad.dump().find(message), std::string::npos) << bad.dump();
  }
  const auto not_multipart = c.Post("/v1/images/edits", R"({"prompt": "x"})", "application/json");
  ASSERT_TRUE(not_multipart);
  EXPECT_EQ(not_multipart->status, 400);
  EXPECT_NE(not_multipart->body.find("multipart/form-data"), std::string::npos);
}

// The server's end of a kept-alive connection sends without Nagle's delay: a response written as headers, then body,
// would otherwise wait ~40 ms for the client's delayed ACK (/health took 46 ms instead of 2 on a reused connection).
// Checked on the socket itself: the server runs in this process, so its accepted socket is one of our descriptors.
TEST(Server, AnsweringSocketsSendWithoutDelay) {
  LiveServer s;
  auto c = s.client();
  c.set_keep_alive(true);
  ASSERT_TRUE(c.Get("/health"));
  int answering = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::stoi(entry.path().filename().string());
    sockaddr_storage local{}, peer{};
    socklen_t len = sizeof local, peer_len = sizeof peer;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) continue;
    int port = -1;  // IPv4, or IPv6 (a dual-stack listener's v4-mapped connection)
    if (local.ss_family == AF_INET) port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
    if (local.ss_family == AF_INET6) port = ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port);
    if (port != s.server().port()) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) continue;  // the listening socket
    int nodelay = 0;
    socklen_t size = sizeof nodelay;
    ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &size), 0);
    EXPECT_NE(nodelay, 0) << "the server's socket for the kept-alive connection has Nagle's algorithm on";
    ++answering;
  }
  EXPECT_EQ(answering, 1);
}

// OpenAI clients send no seed and A1111 clients -1 or none, and both expect a new image each time (Open WebUI's
// "regenerate"); a seed given is kept.
TEST(Server, ClientsWithoutASeedGetANewOneEachTime) {
  LiveServer s;
  auto c = s.client();
  std::set<int64_t> openai, a1111;
  for (int i = 0; i < 3; ++i) {
    int status = 0;
    const json r = post_json(c, "/v1/images/generations", {{"prompt", "a red square"}}, &status);
    ASSERT_EQ(status, 200) << r.dump();
    openai.insert(r["seed"].get<int64_t>());
    const json a = post_json(c, "/sdapi/v1/txt2img", {{"prompt", "a red square"}}, &status);
    ASSERT_EQ(status, 200) << a.dump();
    a1111.insert(json::parse(a["info"].get<std::string>())["seed"].get<int64_t>());
  }
  EXPECT_EQ(openai.size(), 3u);
  EXPECT_EQ(a1111.size(), 3u);
  int status = 0;
  EXPECT_EQ(post_json(c, "/v1/images/generations", {{"prompt", "a red square"}, {"seed", 7}}, &status)["seed"], 7);

  // img2img with only a prompt and an image: the model's 1 step at the default strength 0.6 runs (diffusers skips
  // int(1 - 0.6) = 0 steps); it was refused as leaving no step.
  const std::string init = sana::base64_encode(sana::encode_png(at::full({3, 64, 64}, 0.9)));
  const json r = post_json(c, "/sdapi/v1/img2img", {{"prompt", "a red square"}, {"init_images", {init}}}, &status);
  EXPECT_EQ(status, 200) << r.dump();
}

// OpenAI's size "auto" is the model's own size; output_format "jpeg" returns JPEG bytes (it was ignored: PNG), "webp"
// WebP bytes at output_compression's quality.
TEST(Server, OpenAISizeAutoAndJpegOutput) {
  LiveServer s;
  auto c = s.client();
  int status = 0;
  const json r = post_json(c, "/v1/images/generations",
                           {{"prompt", "a red square"}, {"size", "auto"}, {"output_format", "jpeg"}, {"seed", 1}}, &status);
  ASSERT_EQ(status, 200) << r.dump();
  const sana::GenerationParams d = model_defaults(kStudent);
  EXPECT_EQ(r["size"], std::to_string(d.width) + "x" + std::to_string(d.height));
  EXPECT_EQ(r["output_format"], "jpeg");
  const std::string bytes = sana::base64_decode(r["data"][0]["b64_json"].get<std::string>(), "test");
  ASSERT_GE(bytes.size(), 3u);
  EXPECT_EQ(bytes.substr(0, 3), std::string("\xFF\xD8\xFF"));  // the JPEG start-of-image marker
  // WebP: output_compression 100 is lossless, so the image equals the PNG answer's pixels; 90 stays close.
  const json png = post_json(c, "/v1/images/generations", {{"prompt", "a red square"}, {"seed", 1}}, &status);
  ASSERT_EQ(status, 200);
  const at::Tensor want = decode_b64(png["data"][0]["b64_json"]);
  for (const int quality : {100, 90}) {
    const json w = post_json(c, "/v1/images/generations",
                             {{"prompt", "a red square"}, {"seed", 1}, {"output_format", "webp"}, {"output_compression", quality}},
                             &status);
    ASSERT_EQ(status, 200) << w.dump();
    EXPECT_EQ(w["output_format"], "webp");
    const std::string webp = sana::base64_decode(w["data"][0]["b64_json"].get<std::string>(), "test");
    ASSERT_TRUE(sana::is_webp(webp));
    const at::Tensor got = sana::decode_webp(webp, "answer");
    if (quality == 100) EXPECT_TRUE(at::equal(got, want));
    else EXPECT_LT((got - want).abs().mean().item<float>(), 0.03f);
  }
}

// A synchronous request's job is forgotten once it finishes (its images live until the answer is sent); an async
// job stays findable by its id for polling. (OpenAI and A1111 results were kept for 10 minutes, readable by anyone.)
TEST(Server, AnsweredJobsAreNotKept) {
  sana::server::Worker worker(sana::load_pipeline(kStudent, at::kCPU, at::kFloat), {});
  for (const bool keep : {true, false}) {
    auto job = std::make_shared<sana::server::Job>();
    job->id = sana::server::new_job_id();
    job->params = model_defaults(kStudent);
    job->params.prompt = "a red square";
    job->options = sana::to_generate_options(job->params);
    job->keep_for_polling = keep;
    ASSERT_EQ(worker.submit(job), sana::server::Worker::Admission::accepted);
    worker.wait(job);
    EXPECT_EQ(job->state, sana::server::Job::State::done);
    EXPECT_EQ(job->images.size(), 1u);
    EXPECT_EQ(worker.find(job->id) != nullptr, keep) << "keep_for_polling " << keep;
  }
  worker.shutdown();
  // Ids are 128 random bits.
  EXPECT_EQ(sana::server::new_job_id().size(), 4u + 32u);
  EXPECT_NE(sana::server::new_job_id(), sana::server::new_job_id());
}

namespace {

std::shared_ptr<sana::server::Job> worker_job(const sana::GenerationParams& p, const std::string& live_session = "") {
  auto job = std::make_shared<sana::server::Job>();
  job->id = sana::server::new_job_id();
  job->params = p;
  job->options = sana::to_generate_options(p);
  job->live_session = live_session;
  job->live_frame = 1;
  return job;
}

}  // namespace

// Live frames have their own lane: one that arrives while a long job runs is run between that job's steps (it used
// to wait for the whole job), is accepted when the job queue is full, and neither image changes for the interleaving.
TEST(Server, LiveFramesRunBetweenTheStepsOfALongJob) {
  const std::string teacher = std::string(SANA_MODELS_DIR) + "/sana-shapes-teacher";
  sana::server::Worker::Options o;
  o.queue_limit = 1;
  sana::server::Worker worker(sana::load_pipeline(teacher, at::kCPU, at::kFloat), o);
  sana::GenerationParams long_params = model_defaults(teacher);
  long_params.prompt = "two red circles above a blue square";
  long_params.steps = 40;
  sana::GenerationParams frame_params = model_defaults(teacher);
  frame_params.prompt = "a green triangle";
  frame_params.steps = 2;
  const auto long_job = worker_job(long_params), waiting = worker_job(long_params), frame = worker_job(frame_params, "s");
  ASSERT_EQ(worker.submit(long_job), sana::server::Worker::Admission::accepted);
  for (;;) {  // until the long job has made a step
    {
      const auto lock = worker.lock();
      if (long_job->step >= 1) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(worker.submit(waiting), sana::server::Worker::Admission::accepted);
  EXPECT_EQ(worker.submit(worker_job(long_params)), sana::server::Worker::Admission::queue_full);
  ASSERT_EQ(worker.submit(frame), sana::server::Worker::Admission::accepted) << "a full job queue refused a live frame";
  worker.wait(frame);
  {
    const auto lock = worker.lock();
    EXPECT_EQ(frame->state, sana::server::Job::State::done);
    EXPECT_EQ(long_job->state, sana::server::Job::State::running) << "the live frame waited for the whole job";
    EXPECT_LT(long_job->step, 40);
  }
  EXPECT_EQ(worker.status().running, long_job) << "the job in hand stays the running one";
  worker.wait(long_job);
  worker.cancel(waiting->id);
  worker.shutdown();
  ASSERT_EQ(long_job->state, sana::server::Job::State::done);
  // Both images equal the library's for the same settings, run alone.
  const auto pipe = sana::load_pipeline(teacher, at::kCPU, at::kFloat);
  EXPECT_TRUE(at::equal(long_job->images[0], pipe->generate(sana::to_generate_options(long_params)).images[0]));
  EXPECT_TRUE(at::equal(frame->images[0], pipe->generate(sana::to_generate_options(frame_params)).images[0]));
}

// Async results are kept within a byte budget, the oldest forgotten first.
TEST(Server, KeptResultsStayWithinTheirByteBudget) {
  sana::GenerationParams p = model_defaults(kStudent);
  p.prompt = "a red square";
  const int64_t image_bytes = int64_t{3} * p.width * p.height * 4;  // [3, H, W] float
  sana::server::Worker::Options o;
  o.history_bytes = static_cast<size_t>(image_bytes) * 3 / 2;  // room for one
  sana::server::Worker worker(sana::load_pipeline(kStudent, at::kCPU, at::kFloat), o);
  const auto first = worker_job(p), second = worker_job(p);
  for (const auto& job : {first, second}) {
    ASSERT_EQ(worker.submit(job), sana::server::Worker::Admission::accepted);
    worker.wait(job);
    ASSERT_EQ(job->state, sana::server::Job::State::done);
    ASSERT_EQ(static_cast<int64_t>(job->images[0].nbytes()), image_bytes);
  }
  EXPECT_EQ(worker.find(first->id), nullptr) << "over the budget, the oldest result goes";
  EXPECT_NE(worker.find(second->id), nullptr);
  worker.shutdown();
}

TEST(Server, DiscoveryRoutesAnswerWithTrueValues) {
  LiveServer s;
  auto c = s.client();
  for (const char* path : {"/health", "/v1/models", "/sdapi/v1/options", "/sdapi/v1/sd-models", "/sdapi/v1/samplers",
                           "/sdapi/v1/schedulers", "/sdapi/v1/progress", "/sdapi/v1/upscalers", "/sdapi/v1/sd-vae",
                           "/sdapi/v1/sd-modules"}) {
    SCOPED_TRACE(path);
    const auto r = c.Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_FALSE(json::parse(r->body, nullptr, false).is_discarded());
  }
  EXPECT_EQ(json::parse(c.Get("/v1/models")->body)["data"][0]["id"], "sana-sprint-shapes");
  // No path of the server's disk goes out.
  EXPECT_EQ(c.Get("/sdapi/v1/sd-models")->body.find(SANA_MODELS_DIR), std::string::npos);
  EXPECT_EQ(json::parse(c.Get("/sdapi/v1/samplers")->body)[0]["name"], "SCM");
  EXPECT_EQ(json::parse(c.Get("/sdapi/v1/options")->body)["sd_model_checkpoint"], "sana-sprint-shapes");
  EXPECT_EQ(json::parse(c.Get("/sdapi/v1/sd-vae")->body)[0]["model_name"], "vae");
  // /health says what a request without a size gets (the model's generation_defaults.json) and the server's limits.
  const json health = json::parse(c.Get("/health")->body);
  const sana::GenerationParams defaults = model_defaults(kStudent);
  EXPECT_EQ(health["native_size"]["width"], defaults.width);
  EXPECT_EQ(health["native_size"]["height"], defaults.height);
  EXPECT_EQ(health["vae_factor"], sana::load_autoencoder_dc_config(kStudent + "/vae/config.json").spatial_factor());
  EXPECT_EQ(health["limits"]["max_side"], sana::server::ServerOptions{}.max_side);
  EXPECT_EQ(health["limits"]["max_pixels"], sana::server::ServerOptions{}.max_pixels);
  EXPECT_EQ(health["quantize"], "none");
  int status = 0;
  const json sized = post_json(c, "/sprint/v1/jobs", {{"prompt", "a red square"}}, &status);
  ASSERT_EQ(status, 202);
  bool finished = false;
  for (int i = 0; i < 500 && !finished; ++i) {
    const json j = json::parse(c.Get(("/sprint/v1/jobs/" + sized["id"].get<std::string>()).c_str())->body);
    if (j["status"] != "done") {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    const at::Tensor image = decode_b64(j["images"][0]);
    EXPECT_EQ(image.size(-1), defaults.width);
    EXPECT_EQ(image.size(-2), defaults.height);
    finished = true;
  }
  EXPECT_TRUE(finished) << "the job did not finish within 10 s";
  const auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find("<canvas"), std::string::npos);
}

TEST(Server, BadRequestsGetTheirStatusAndTheServerGoesOn) {
  sana::server::ServerOptions o;
  o.max_body_bytes = 1 << 20;
  LiveServer s(o);
  auto c = s.client();
  const std::string not_png = sana::base64_encode("GIF89a not a png at all");
  const std::string wide_png = sana::base64_encode(sana::encode_png(at::zeros({3, 8, 2100})));
  struct Case {
    std::string path, body;
    int status;
    std::string message;
  } cases[] = {
      {"/v1/images/generations", "{not json", 400, "not valid JSON"},
      {"/v1/images/generations", "[1, 2]", 400, "must be a JSON object"},
      {"/v1/images/generations", R"({"n": 1})", 400, "prompt: is required"},
      {"/v1/images/generations", R"({"prompt": 5})", 400, "prompt: must be a string"},
      {"/v1/images/generations", R"({"prompt": "x", "n": "two"})", 400, "n: must be an integer"},
      {"/v1/images/generations", R"({"prompt": "x", "size": "0x0"})", 400, "size: must be between 1"},
      {"/v1/images/generations", R"({"prompt": "x", "size": "100000x100000"})", 400, "size: is 100000, more than"},
      {"/v1/images/generations", R"({"prompt": "x", "size": "4000x4000"})", 400, "limit of 2048 pixels"},
      {"/v1/images/generations", R"({"prompt": "x", "size": "60x60"})", 400, "multiple of the VAE factor 8"},
      {"/v1/images/generations", R"({"prompt": "x", "size": "big"})", 400, "WIDTHxHEIGHT"},
      {"/v1/images/generations", R"({"prompt": "x", "n": 50})", 400, "limit of 8 images"},
      {"/v1/images/generations", R"({"prompt": "x", "decoder": "fast"})", 400, "decoder: must be full or tiny"},
      {"/v1/images/generations", R"({"prompt": "x", "n": 2, "size": "2048x2048"})", 400,
       "n: 2 images of 2048x2048 are 8388608 pixels, more than this server's limit of 4194304 per request"},
      // Wrongly typed fields the routes read themselves: 400 naming the field (were 500s with the JSON library's text).
      {"/v1/images/generations", R"({"prompt": "x", "response_format": 5})", 400, "response_format: must be a string"},
      {"/v1/images/generations", R"({"prompt": "x", "output_format": "gif"})", 400,
       "output_format: must be \"png\", \"jpeg\" or \"webp\""},
      {"/v1/images/generations", R"({"prompt": "x", "output_format": "webp", "output_compression": 101})", 400,
       "output_compression: must be an integer from 0 to 100"},
      {"/sdapi/v1/txt2img", R"({"prompt": "x", "alwayson_scripts": {"controlnet": {"args": [{"enabled": "yes"}]}}})",
       400, "enabled: must be true or false"},
      {"/sdapi/v1/txt2img", R"({"prompt": "x", "alwayson_scripts": {"controlnet": {"args": [{"module": 7}]}}})", 400,
       "module: must be a string"},
      {"/sprint/v1/live", R"({"session": "s", "frame": 1, "prompt": "x", "format": 5})", 400,
       "format: must be a string"},
      {"/v1/images/generations", R"({"prompt": "x", "steps": 5000})", 400, "limit of 50 steps"},
      {"/v1/images/generations", R"({"prompt": "x", "response_format": "url"})", 400, "\"url\" is not supported"},
      {"/sdapi/v1/img2img", R"({"prompt": "x", "steps": 4, "init_images": ["@@@"]})", 400,
       "init_images: is not valid base64"},
      {"/sdapi/v1/img2img", R"({"prompt": "x", "steps": 4, "init_images": [")" + not_png + R"("]})", 400,
       "init_images: is not a PNG"},
      {"/sdapi/v1/img2img", R"({"prompt": "x", "steps": 1, "denoising_strength": 0, "init_images": [")" + not_png + R"("]})",
       400, "denoising_strength: 0 with 1 steps leaves no step"},
      {"/sdapi/v1/img2img", R"({"prompt": "x"})", 400, "init_images"},
      // Input images are bounded by the server's --max-side (at least 1024) from the PNG header, before decoding.
      {"/v1/images/generations", R"({"prompt": "x", "control_image": ")" + wide_png + R"("})", 400,
       "control_image: is 2100x8, more than the limit of 2048 pixels per side"},
      {"/sprint/v1/jobs", R"({"prompt": "x", "model": "/etc"})", 400, "model: is chosen when the server starts"},
      {"/sprint/v1/jobs", R"({"prompt": "x", "vae": "/etc"})", 400, "vae: is chosen when the server starts"},
      {"/sprint/v1/jobs", R"({"prompt": "x", "quantize": "int8"})", 400, "quantize: is chosen when the server starts"},
      {"/sprint/v1/jobs", R"({"prompt": "x", "promt": "y"})", 400, "promt: is not a generation parameter"},
      {"/sprint/v1/jobs", R"({"prompt": "x", "guidance": 1e30})", 400, "guidance: must be between 0 and 100"},
      {"/sprint/v1/live", R"({"frame": 1, "prompt": "x"})", 400, "session: is required"},
      {"/no/such/route", "{}", 404, "no route POST /no/such/route"},
      {"/v1/images/generations", R"({"prompt": ")" + std::string(2 << 20, 'a') + R"("})", 413, "larger than"},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.path + " " + k.body.substr(0, 80));
    const auto r = c.Post(k.path.c_str(), k.body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, k.status);
    const json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.contains("error")) << r->body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(k.message), std::string::npos) << r->body;
    EXPECT_TRUE(j["error"].contains("type"));
  }
  EXPECT_EQ(c.Get("/nothing/here")->status, 404);
  EXPECT_EQ(c.Get("/sprint/v1/jobs/job-0000")->status, 404);
  // A known route with another method: 405 naming the methods it takes, in the Allow header too.
  for (const auto& [r, allow] : {std::pair{c.Get("/v1/images/generations"), "POST"},
                                 std::pair{c.Delete("/health"), "GET"},
                                 std::pair{c.Get("/sprint/v1/jobs/job-0000/cancel"), "POST"}}) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 405) << r->body;
    EXPECT_EQ(r->get_header_value("Allow"), allow);
    EXPECT_NE(r->body.find("method_not_allowed"), std::string::npos) << r->body;
  }
  EXPECT_EQ(c.Get("/sdapi/v1/options")->status, 200);  // GET and POST both exist there
  // Still serving.
  int status = 0;
  post_json(c, "/v1/images/generations", {{"prompt", "a red square"}}, &status);
  EXPECT_EQ(status, 200);
}

TEST(Server, ApiKeyAndCors) {
  sana::server::ServerOptions o;
  o.api_key = "sesame";
  o.cors = {"http://example.test"};
  LiveServer s(o);
  auto c = s.client();
  int status = 0;
  const json r = post_json(c, "/v1/images/generations", {{"prompt", "a red square"}}, &status);
  EXPECT_EQ(status, 401);
  EXPECT_EQ(r["error"]["type"], "authentication_error");
  post_json(c, "/v1/images/generations", {{"prompt", "a red square"}}, &status, {{"Authorization", "Bearer wrong"}});
  EXPECT_EQ(status, 401);
  post_json(c, "/v1/images/generations", {{"prompt", "a red square"}}, &status, {{"Authorization", "Bearer sesame"}});
  EXPECT_EQ(status, 200);
  // HTTP Basic auth, as A1111 clients send it: the key as the password (or as the whole user:password).
  const auto basic = [](const std::string& credentials) {
    return httplib::Headers{{"Authorization", "Basic " + sana::base64_encode(credentials)}};
  };
  post_json(c, "/sdapi/v1/txt2img", {{"prompt", "a red square"}}, &status, basic("user:sesame"));
  EXPECT_EQ(status, 200);
  post_json(c, "/sdapi/v1/txt2img", {{"prompt", "a red square"}}, &status, basic("sesame"));
  EXPECT_EQ(status, 200);
  const json wrong = post_json(c, "/sdapi/v1/txt2img", {{"prompt", "x"}}, &status, basic("sesame:wrong"));
  EXPECT_EQ(status, 401);
  EXPECT_NE(wrong["error"]["message"].get<std::string>().find("/?key=KEY"), std::string::npos) << wrong.dump();
  post_json(c, "/sdapi/v1/txt2img", {{"prompt", "x"}}, &status, {{"Authorization", "Basic @@@"}});
  EXPECT_EQ(status, 401);
  EXPECT_EQ(c.Get("/health")->status, 200);  // open: monitoring
  EXPECT_EQ(c.Get("/")->status, 200);        // open: the page asks for the key itself
  const auto allowed = c.Get("/health", {{"Origin", "http://example.test"}});
  EXPECT_EQ(allowed->get_header_value("Access-Control-Allow-Origin"), "http://example.test");
  const auto other = c.Get("/health", {{"Origin", "http://elsewhere.test"}});
  EXPECT_FALSE(other->has_header("Access-Control-Allow-Origin"));
  const auto preflight = c.Options("/v1/images/generations", {{"Origin", "http://example.test"}});
  EXPECT_EQ(preflight->status, 204);
}

TEST(Server, QueueLimitCancelAndOrderlyStop) {
  sana::server::ServerOptions o;
  o.queue = 2;
  auto s = std::make_unique<LiveServer>(o);
  auto c = s->client();
  // Slow jobs (50 steps each): the first runs, two wait, the rest are refused.
  std::vector<std::string> ids;
  int refused = 0;
  for (int i = 0; i < 5; ++i) {
    int status = 0;
    const json r = post_json(c, "/sprint/v1/jobs", {{"prompt", "a red square"}, {"steps", 50}, {"batch_count", 8}}, &status);
    if (status == 202) ids.push_back(r["id"]);
    if (status == 429) {
      ++refused;
      EXPECT_NE(r["error"]["message"].get<std::string>().find("queue is full"), std::string::npos);
    }
  }
  EXPECT_GE(refused, 1);
  ASSERT_GE(ids.size(), 2u);
  // A waiting job says where it stands in the queue (the first may or may not have started yet).
  const auto place = [&](const std::string& id) {
    const auto g = c.Get(("/sprint/v1/jobs/" + id).c_str());
    return g ? json::parse(g->body).value("queue_position", 0) : -1;
  };
  const int last = place(ids.back());
  EXPECT_TRUE(last == static_cast<int>(ids.size()) - 1 || last == static_cast<int>(ids.size())) << last;
  EXPECT_LT(place(ids[ids.size() - 2]), last);
  // The queue as anyone sees it: places and sizes, never the ids.
  const auto queue = c.Get("/sprint/v1/jobs");
  ASSERT_TRUE(queue);
  ASSERT_EQ(queue->status, 200);
  const json listed = json::parse(queue->body)["data"];
  ASSERT_GE(listed.size(), 1u);
  EXPECT_EQ(listed[0]["queue_position"], 1);
  EXPECT_EQ(listed[0]["steps"], 50);
  EXPECT_EQ(listed[0]["n"], 8);
  for (const auto& id : ids) EXPECT_EQ(queue->body.find(id), std::string::npos) << queue->body;
  // A1111's progress shows the running job's step, never its id (the id is the key to its images).
  const auto progress = c.Get("/sdapi/v1/progress");
  ASSERT_TRUE(progress);
  for (const auto& id : ids) EXPECT_EQ(progress->body.find(id), std::string::npos) << progress->body;
  // Cancel the last queued one: it ends cancelled without running.
  int status = 0;
  json r = post_json(c, "/sprint/v1/jobs/" + ids.back() + "/cancel", json::object(), &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(r["status"], "cancelled");
  // DELETE on a job cancels it too (no body needed).
  if (ids.size() >= 3) {
    const auto d = c.Delete(("/sprint/v1/jobs/" + ids[1]).c_str());
    ASSERT_TRUE(d);
    EXPECT_EQ(d->status, 200);
    EXPECT_EQ(json::parse(d->body)["status"], "cancelled");
  }
  // Whatever else still waits goes too (on a loaded machine the first job may have finished during the submissions,
  // leaving another queued), and the queue is seen empty before the next two requests.
  for (size_t i = 1; i < ids.size(); ++i) c.Delete(("/sprint/v1/jobs/" + ids[i]).c_str());
  for (int i = 0; i < 500; ++i) {
    const auto q = c.Get("/sprint/v1/jobs");
    if (q && json::parse(q->body)["data"].empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // A synchronous request queued behind the running job (and another slow one) when the stop begins: 503, as for new
  // work (was 409).
  post_json(c, "/sprint/v1/jobs", {{"prompt", "a red square"}, {"steps", 50}, {"batch_count", 8}}, &status);
  EXPECT_EQ(status, 202);
  int queued_status = 0;
  std::thread queued([&] {
    auto q = s->client();
    const auto a = q.Post("/v1/images/generations", R"({"prompt": "x"})", "application/json");
    if (a) queued_status = a->status;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Stop: the job in hand finishes; new work is refused meanwhile.
  std::thread stopper([&] { s->server().stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto late = c.Post("/v1/images/generations", R"({"prompt": "x"})", "application/json");
  if (late) EXPECT_EQ(late->status, 503);
  stopper.join();
  queued.join();
  EXPECT_EQ(queued_status, 503);
  s.reset();
}

// Live frames: each answered with the image and its latency; a frame older than one already received, or overtaken
// in the queue by a newer frame of its session, answers 409; the newest always comes back.
TEST(Server, LiveFramesLatestWins) {
  LiveServer s;
  auto c = s.client();
  const auto pipe_has_controlnet = sana::load_pipeline(kStudent, at::kCPU, at::kFloat)->components.controlnet != nullptr;
  json frame = {{"session", "t"}, {"prompt", "a red circle"}, {"steps", 1}, {"format", "png"}};
  if (pipe_has_controlnet) frame["image"] = "data:image/png;base64," + sana::base64_encode(sana::encode_png(at::ones({3, 64, 64})));
  frame["frame"] = 1;
  auto r = c.Post("/sprint/v1/live", frame.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "image/png");
  EXPECT_TRUE(r->has_header("X-Latency-Ms"));
  EXPECT_EQ(sana::decode_png(r->body, "live").size(1), 64);
  r = c.Post("/sprint/v1/live", frame.dump(), "application/json");  // frame 1 again: stale
  EXPECT_EQ(r->status, 409);
  // Many frames at once from many connections: the newest is answered with an image, none fails otherwise.
  std::atomic<int> ok{0}, conflicts{0}, other{0};
  std::atomic<bool> newest_ok{false};
  std::vector<std::thread> clients;
  for (int f = 2; f <= 9; ++f)
    clients.emplace_back([&, f] {
      auto cc = s.client();
      json j = frame;
      j["frame"] = f;
      j["steps"] = 4;
      const auto rr = cc.Post("/sprint/v1/live", j.dump(), "application/json");
      if (!rr) return (void)++other;
      if (rr->status == 200) {
        ++ok;
        if (f == 9) newest_ok = true;
      } else if (rr->status == 409) {
        ++conflicts;
      } else {
        ++other;
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(other, 0);
  EXPECT_TRUE(newest_ok) << "the newest frame can be neither stale nor overtaken";
  EXPECT_EQ(ok + conflicts, 8);
}

// `serve` warms the model before it listens: one 1-step generation at 8 x 8 latent pixels, whatever the model's own
// defaults say (a teacher's 20 steps, a fixed schedule of another length), counted as a finished job.
TEST(Server, WarmUpRunsOneSmallGenerationWhateverTheDefaults) {
  const std::string teacher = std::string(SANA_MODELS_DIR) + "/sana-shapes-teacher";
  for (const std::string& model : {kStudent, teacher}) {
    SCOPED_TRACE(model);
    sana::GenerationParams defaults = model_defaults(model);
    defaults.batch_count = 4;
    if (model == kStudent) {
      defaults.steps = 2;
      defaults.timesteps = {1.5708, 1.0, 0.0};
    }
    sana::server::ServerOptions options;
    options.port = 0;
    sana::server::Server server(sana::load_pipeline(model, at::kCPU, at::kFloat), defaults, options);
    EXPECT_GT(server.warm_up(), 0.0);
    server.bind();
    std::thread t([&] { server.run(); });
    httplib::Client c("127.0.0.1", server.port());
    const auto health = c.Get("/health");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    EXPECT_EQ(json::parse(health->body)["done"], 1);
    server.stop();
    t.join();
  }
}

namespace {

// A random rank-4 LoRA on the first self-attention's query and key, sized from the model, written as NAME.safetensors.
void write_random_lora(const std::string& path, uint64_t seed, int64_t in_extra = 0) {
  const auto t = sana::SanaTransformer2DModel::from_pretrained(kStudent + "/transformer", at::TensorOptions());
  const auto layers = sana::nn::weighted_layers(*t);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const char* m : {"transformer_blocks.0.attn1.to_q", "transformer_blocks.0.attn1.to_k"}) {
    const at::Tensor& w = layers.at(m)->weight;
    tensors.push_back({std::string("transformer.") + m + ".lora_A.weight", at::randn({4, w.size(1) + in_extra}, gen) * 0.3});
    tensors.push_back({std::string("transformer.") + m + ".lora_B.weight", at::randn({w.size(0), 4}, gen) * 0.3});
  }
  sana::save_safetensors(path, tensors);
}

}  // namespace

// Per-request LoRAs: prompt tags and the "loras" field on every route, each image equal to the library's with the
// same LoRAs fused (what `generate --lora` runs), switching between LoRAs and none without leaking one request's
// LoRA into the next, and 400s for unknown names, bad names and a LoRA that does not fit (the server goes on).
TEST(Server, PerRequestLorasAreTheLibrarysAndDoNotLeak) {
  sana::test::TempDir dir;
  write_random_lora(dir.file("alpha.safetensors"), 1);
  write_random_lora(dir.file("beta.safetensors"), 2);
  sana::server::ServerOptions o;
  o.lora_dir = dir.path().string();
  LiveServer s(o);
  auto c = s.client();

  const auto pipe = sana::load_pipeline(kStudent, at::kCPU, at::kFloat);
  const auto expected = [&](std::vector<sana::LoraSpec> loras) {
    for (const auto& l : loras) pipe->components.apply_lora(l);
    sana::GenerationParams p = model_defaults(kStudent);
    p.prompt = "a red circle", p.seed = 3;
    const at::Tensor img = pipe->generate(sana::to_generate_options(p)).images[0];
    pipe->components.remove_loras();
    return sana::decode_png(sana::encode_png(img), "library");
  };
  const at::Tensor none = expected({}), alpha = expected({{dir.file("alpha.safetensors"), 0.8}}),
                   beta = expected({{dir.file("beta.safetensors"), 1.0}}),
                   both = expected({{dir.file("alpha.safetensors"), 0.8}, {dir.file("beta.safetensors"), 1.0}});
  ASSERT_FALSE(at::equal(none, alpha));
  ASSERT_FALSE(at::equal(alpha, beta));

  struct Case {
    const char* path;
    json body;
    const at::Tensor* want;
  };
  const std::vector<Case> cases = {
      {"/v1/images/generations", {{"prompt", "a red circle"}}, &none},
      {"/v1/images/generations", {{"prompt", "a red circle <lora:alpha:0.8>"}}, &alpha},
      {"/sdapi/v1/txt2img", {{"prompt", "a red circle"}, {"loras", {"beta"}}}, &beta},
      {"/sdapi/v1/txt2img", {{"prompt", "<lora:alpha:0.8> a red circle"}}, &alpha},
      {"/v1/images/generations", {{"prompt", "a red circle"}}, &none},
      {"/v1/images/generations",
       {{"prompt", "a red circle <lora:alpha:0.8>"}, {"loras", {{{"name", "beta"}, {"scale", 1}}}}}, &both},
      {"/sdapi/v1/txt2img", {{"prompt", "a red circle"}, {"loras", {"alpha:0.8"}}}, &alpha},
      {"/sdapi/v1/txt2img", {{"prompt", "a red circle"}}, &none},
  };
  for (int round = 0; round < 2; ++round)
    for (const Case& k : cases) {
      SCOPED_TRACE(std::string(k.path) + " " + k.body.dump());
      json body = k.body;
      body["seed"] = 3;
      int status = 0;
      const json r = post_json(c, k.path, body, &status);
      ASSERT_EQ(status, 200) << r.dump();
      const std::string b64 = r.contains("images") ? r["images"][0] : r["data"][0]["b64_json"];
      EXPECT_TRUE(at::equal(decode_b64(b64), *k.want));
    }

  const auto g = c.Get("/sdapi/v1/loras");
  ASSERT_TRUE(g);
  const json list = json::parse(g->body);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["name"], "alpha");
  EXPECT_EQ(list[1]["path"], "beta.safetensors");  // no server paths

  write_random_lora(dir.file("misfit.safetensors"), 3, /*in_extra=*/1);
  for (const auto& [body, message] : std::vector<std::pair<json, std::string>>{
           {{{"prompt", "x <lora:gamma>"}}, "prompt: unknown LoRA 'gamma'"},
           {{{"prompt", "x"}, {"loras", {"../alpha"}}}, "is not a LoRA name"},
           {{{"prompt", "x"}, {"loras", {"alpha:99"}}}, "between -10 and 10"},
           {{{"prompt", "x"}, {"loras", "alpha"}}, "loras: must be a list"},
           {{{"prompt", "x <lora:alpha:much>"}}, "has no number as its scale"},
           {{{"prompt", "x"}, {"loras", {"misfit"}}}, "is the LoRA for another model?"}}) {
    int status = 0;
    const json r = post_json(c, "/v1/images/generations", body, &status);
    EXPECT_EQ(status, 400) << body.dump() << " " << r.dump();
    EXPECT_NE(r.dump().find(message), std::string::npos) << r.dump();
  }
  int status = 0;
  const json r = post_json(c, "/v1/images/generations", {{"prompt", "a red circle"}, {"seed", 3}}, &status);
  ASSERT_EQ(status, 200);
  EXPECT_TRUE(at::equal(decode_b64(r["data"][0]["b64_json"]), none));  // the misfit left nothing behind

  LiveServer plain;  // no --lora-dir
  auto pc = plain.client();
  const json refused = post_json(pc, "/v1/images/generations", {{"prompt", "x <lora:alpha>"}}, &status);
  EXPECT_EQ(status, 400);
  EXPECT_NE(refused.dump().find("--lora-dir"), std::string::npos) << refused.dump();
}
