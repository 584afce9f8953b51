// The C API (include/sana_sprint.h) through libsana_sprint.so: the same bytes as `sana-sprint generate` for the
// shipped Sprint and teacher folders (text to image, ControlNet, img2img), defaults from the model folder, threads
// and cancellation, and an error code with a message for every misuse (never a crash or an exception).
#include "sana_sprint.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "sana/frontend/generation_params.h"
#include "sana/io/image.h"
#include "sana/io/safetensors.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/lora.h"
#include "test_util.h"

namespace {

const std::string kSprint = std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes";
const std::string kTeacher = std::string(SANA_MODELS_DIR) + "/sana-shapes-teacher";

struct Image {
  sana_image img{};
  ~Image() { sana_image_free(&img); }
};

sana_ctx* open(const std::string& dir, const char* controlnet = nullptr) {
  sana_ctx_params p;
  sana_ctx_params_init(&p);
  p.model_dir = dir.c_str();
  p.controlnet_dir = controlnet;
  sana_ctx* ctx = sana_ctx_new(&p);
  EXPECT_NE(ctx, nullptr) << sana_last_error();
  return ctx;
}

sana_gen_params defaults_of(sana_ctx* ctx, const char* prompt, int64_t seed) {
  sana_gen_params g;
  EXPECT_EQ(sana_ctx_gen_params_init(ctx, &g), SANA_OK) << sana_last_error();
  g.prompt = prompt;
  g.seed = seed;
  return g;
}

// The CLI's PNG as uint8 [H, W, 3].
at::Tensor cli_image(const std::string& args, const sana::test::TempDir& dir, const std::string& name) {
  const std::string out = dir.file(name + ".png");
  const sana::test::CliRun r = sana::test::run_cli("generate " + args + " -o " + out);
  EXPECT_EQ(r.rc, 0) << r.err;
  return r.rc == 0 ? sana::to_uint8_hwc(sana::load_png(out)) : at::Tensor();
}

at::Tensor tensor_of(const sana_image& img) {
  return at::from_blob(img.data, {img.height, img.width, img.channels}, at::kByte).clone();
}

// The PNG at `path` as a C image (the caller owns `pixels`).
sana_image c_image(const std::string& path, at::Tensor& pixels) {
  pixels = sana::to_uint8_hwc(sana::load_png(path));
  return sana_image{static_cast<int>(pixels.size(1)), static_cast<int>(pixels.size(0)), 3, pixels.data_ptr<uint8_t>(), 0};
}

void expect_same_bytes(const at::Tensor& cli, const sana_image& img) {
  ASSERT_TRUE(cli.defined());
  ASSERT_EQ(img.channels, 3);
  ASSERT_EQ(cli.size(0), img.height);
  ASSERT_EQ(cli.size(1), img.width);
  EXPECT_TRUE(at::equal(cli, tensor_of(img))) << "the C API's image differs from the CLI's";
}

}  // namespace

TEST(CApi, VersionAndDefaultsFromTheGenerationParameters) {
  EXPECT_STREQ(sana_version(), SANA_PROJECT_VERSION);
  EXPECT_EQ(sana_api_version(), SANA_API_VERSION);
  // The generation-parameters module's defaults, the ones `generate --help` prints.
  const sana::GenerationParams d;
  sana_gen_params g;
  sana_gen_params_init(&g);
  EXPECT_EQ(g.struct_size, sizeof(sana_gen_params));
  EXPECT_EQ(g.prompt, nullptr);
  EXPECT_EQ(g.width, d.width);
  EXPECT_EQ(g.height, d.height);
  EXPECT_EQ(g.steps, d.steps);
  EXPECT_EQ(g.seed, d.seed);
  EXPECT_EQ(g.guidance, d.guidance);
  EXPECT_EQ(g.intermediate_timesteps, d.intermediate_timesteps);
  EXPECT_EQ(g.complex_human_instruction, d.complex_human_instruction);
  EXPECT_EQ(g.strength, d.strength);
  EXPECT_EQ(g.control_preprocess, d.control_preprocess);
  sana_ctx_params c;
  sana_ctx_params_init(&c);
  EXPECT_EQ(c.device, d.device);
  EXPECT_EQ(c.dtype, d.dtype);
  EXPECT_EQ(c.quantize_min_weights, d.quantize_min_weights);
}

TEST(CApi, SprintSameBytesAsTheCli) {
  sana::test::TempDir dir;
  sana_ctx* ctx = open(kSprint);
  ASSERT_NE(ctx, nullptr);
  EXPECT_STREQ(sana_ctx_pipeline(ctx), "SanaSprintPipeline");
  for (const int steps : {1, 2}) {
    SCOPED_TRACE(steps);
    sana_gen_params g = defaults_of(ctx, "two red circles above a blue square", 7);
    g.steps = steps;
    Image out;
    ASSERT_EQ(sana_generate(ctx, &g, &out.img), SANA_OK) << sana_last_error();
    EXPECT_EQ(out.img.seed, 7);
    expect_same_bytes(cli_image("-m " + kSprint + " -p 'two red circles above a blue square' -s 7 --steps " +
                                    std::to_string(steps), dir, "sprint" + std::to_string(steps)),
                      out.img);
  }
  sana_ctx_free(ctx);
}

// API version 2 appended `decoder` (and ctx `tiny_vae_dir`): "tiny" draws what `generate --decoder tiny` draws; a
// caller built against version 1 (a struct that ends before the new field) gets the full decoder, as before.
TEST(CApi, TinyDecoderSameBytesAsTheCliAndVersion1StructsStillWork) {
  sana::test::TempDir dir;
  sana_ctx* ctx = open(kSprint);
  ASSERT_NE(ctx, nullptr);
  sana_gen_params g = defaults_of(ctx, "a small yellow star", 5);
  EXPECT_STREQ(g.decoder, "full");
  g.decoder = "tiny";
  Image tiny;
  ASSERT_EQ(sana_generate(ctx, &g, &tiny.img), SANA_OK) << sana_last_error();
  expect_same_bytes(cli_image("-m " + kSprint + " -p 'a small yellow star' -s 5 --decoder tiny", dir, "tiny"), tiny.img);
  g.struct_size = offsetof(sana_gen_params, decoder);  // version 1's size: `decoder` is not read
  Image v1;
  ASSERT_EQ(sana_generate(ctx, &g, &v1.img), SANA_OK) << sana_last_error();
  expect_same_bytes(cli_image("-m " + kSprint + " -p 'a small yellow star' -s 5", dir, "full"), v1.img);
  sana_ctx_free(ctx);

  sana_ctx_params p;
  sana_ctx_params_init(&p);
  p.model_dir = kSprint.c_str();
  p.tiny_vae_dir = "/no/such/tiny";
  EXPECT_EQ(sana_ctx_new(&p), nullptr);
  EXPECT_NE(std::string(sana_last_error()).find("/no/such/tiny"), std::string::npos) << sana_last_error();
  p.struct_size = offsetof(sana_ctx_params, tiny_vae_dir);  // version 1: the field is not read
  sana_ctx* old = sana_ctx_new(&p);
  EXPECT_NE(old, nullptr) << sana_last_error();
  sana_ctx_free(old);
}

TEST(CApi, TeacherSameBytesAsTheCli) {
  sana::test::TempDir dir;
  sana_ctx* ctx = open(kTeacher);
  ASSERT_NE(ctx, nullptr);
  sana_gen_params g = defaults_of(ctx, "a green triangle", 3);
  g.steps = 6;
  g.negative_prompt = "blurry";
  Image out;
  ASSERT_EQ(sana_generate(ctx, &g, &out.img), SANA_OK) << sana_last_error();
  expect_same_bytes(cli_image("-m " + kTeacher + " -p 'a green triangle' -s 3 --steps 6 --negative-prompt blurry", dir,
                              "teacher"),
                    out.img);
  sana_ctx_free(ctx);
}

TEST(CApi, ControlNetAndImg2ImgSameBytesAsTheCli) {
  sana::test::TempDir dir;
  sana_ctx* ctx = open(kSprint);
  ASSERT_NE(ctx, nullptr);
  // The control image: a drawing of the shapes world's size, black strokes on white, as the live page sends.
  const std::string control = sana::test::fixture("pipeline_sana_controlnet_tiny/control0.png");
  at::Tensor control_pixels, init_pixels;
  const sana_image control_img = c_image(control, control_pixels);
  sana_gen_params g = defaults_of(ctx, "a red circle", 11);
  g.control_image = &control_img;
  g.control_preprocess = "invert";
  g.control_scale = 0.7;
  Image with_control;
  ASSERT_EQ(sana_generate(ctx, &g, &with_control.img), SANA_OK) << sana_last_error();
  expect_same_bytes(cli_image("-m " + kSprint + " -p 'a red circle' -s 11 --control-image " + control +
                                  " --control-preprocess invert --control-scale 0.7",
                              dir, "control"),
                    with_control.img);

  // img2img from the CLI's text-to-image picture.
  cli_image("-m " + kSprint + " -p 'a blue square' -s 5", dir, "init");
  const sana_image init_img = c_image(dir.file("init.png"), init_pixels);
  sana_gen_params i = defaults_of(ctx, "a red square", 12);
  i.steps = 2;
  i.init_image = &init_img;
  i.strength = 0.5;
  Image img2img;
  ASSERT_EQ(sana_generate(ctx, &i, &img2img.img), SANA_OK) << sana_last_error();
  expect_same_bytes(cli_image("-m " + kSprint + " -p 'a red square' -s 12 --steps 2 --strength 0.5 --init-image " +
                                  dir.file("init.png"),
                              dir, "img2img"),
                    img2img.img);
  sana_ctx_free(ctx);
}

TEST(CApi, LorasSameBytesAsTheCli) {
  sana::test::TempDir dir;
  // A random rank-4 LoRA on the first self-attention's query, sized from the model.
  const auto t = sana::SanaTransformer2DModel::from_pretrained(kSprint + "/transformer", at::TensorOptions());
  const at::Tensor& w = sana::nn::weighted_layers(*t).at("transformer_blocks.0.attn1.to_q")->weight;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  const std::string lora = dir.file("lora.safetensors");
  sana::save_safetensors(lora, {{"transformer_blocks.0.attn1.to_q.lora_A.weight", at::randn({4, w.size(1)}, gen) * 0.3},
                                {"transformer_blocks.0.attn1.to_q.lora_B.weight", at::randn({w.size(0), 4}, gen) * 0.3}});
  const std::string spec = lora + ":0.8";
  const char* loras[] = {spec.c_str()};
  sana_ctx_params p;
  sana_ctx_params_init(&p);
  p.model_dir = kSprint.c_str();
  p.loras = loras;
  p.n_loras = 1;
  sana_ctx* ctx = sana_ctx_new(&p);
  ASSERT_NE(ctx, nullptr) << sana_last_error();
  sana_gen_params g = defaults_of(ctx, "a red circle", 4);
  Image out;
  ASSERT_EQ(sana_generate(ctx, &g, &out.img), SANA_OK) << sana_last_error();
  expect_same_bytes(cli_image("-m " + kSprint + " -p 'a red circle' -s 4 --lora " + spec, dir, "lora"), out.img);
  EXPECT_FALSE(at::equal(cli_image("-m " + kSprint + " -p 'a red circle' -s 4", dir, "plain"), tensor_of(out.img)));
  sana_ctx_free(ctx);
  const char* missing[] = {"/no/such/lora.safetensors"};
  p.loras = missing;
  EXPECT_EQ(sana_ctx_new(&p), nullptr);
  EXPECT_NE(std::string(sana_last_error()).find("/no/such/lora.safetensors"), std::string::npos) << sana_last_error();
  p.loras = nullptr;
  EXPECT_EQ(sana_ctx_new(&p), nullptr);
  EXPECT_STREQ(sana_last_error(), "loras is NULL or n_loras negative");
}

TEST(CApi, TwoContextsAndOneContextFromTwoThreads) {
  sana_ctx* sprint = open(kSprint);
  sana_ctx* teacher = open(kTeacher);
  ASSERT_TRUE(sprint && teacher);
  sana_gen_params gs = defaults_of(sprint, "a red circle", 1);
  sana_gen_params gt = defaults_of(teacher, "a red circle", 1);
  gt.steps = 4;
  Image s1, t1;
  ASSERT_EQ(sana_generate(sprint, &gs, &s1.img), SANA_OK) << sana_last_error();
  ASSERT_EQ(sana_generate(teacher, &gt, &t1.img), SANA_OK) << sana_last_error();
  EXPECT_FALSE(at::equal(tensor_of(s1.img), tensor_of(t1.img)));  // two different models answered

  // Two threads on one context at once: the calls are serialised and each gives the single-thread bytes.
  Image a, b;
  int rc_a = -1, rc_b = -1;
  std::thread ta([&] { rc_a = sana_generate(sprint, &gs, &a.img); });
  std::thread tb([&] { rc_b = sana_generate(sprint, &gs, &b.img); });
  ta.join();
  tb.join();
  ASSERT_EQ(rc_a, SANA_OK);
  ASSERT_EQ(rc_b, SANA_OK);
  EXPECT_TRUE(at::equal(tensor_of(a.img), tensor_of(s1.img)));
  EXPECT_TRUE(at::equal(tensor_of(b.img), tensor_of(s1.img)));
  sana_ctx_free(sprint);
  sana_ctx_free(teacher);
}

namespace {

struct CancelFromAnotherThread {
  sana_ctx* ctx;
  std::vector<std::string> stages;
  int cancel_result = -2;
};

// At the first step, another thread cancels the call (and is joined, so the cancel has happened before the next stage).
int cancel_at_first_step(const char* stage, double, void* user) {
  auto* s = static_cast<CancelFromAnotherThread*>(user);
  s->stages.push_back(stage);
  if (std::string(stage).rfind("step 1", 0) == 0) std::thread([s] { s->cancel_result = sana_cancel(s->ctx); }).join();
  return 0;
}

int stop_at_text_encoder(const char* stage, double, void*) { return std::strcmp(stage, "text encoder") == 0; }

}  // namespace

TEST(CApi, ProgressAndCancellation) {
  sana_ctx* ctx = open(kTeacher);
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(sana_cancel(ctx), 0);  // nothing running: nothing is remembered
  CancelFromAnotherThread state{ctx};
  sana_gen_params g = defaults_of(ctx, "a red circle", 1);
  g.steps = 4;
  g.progress = cancel_at_first_step;
  g.progress_user_data = &state;
  Image out;
  EXPECT_EQ(sana_generate(ctx, &g, &out.img), SANA_ERR_CANCELLED);
  EXPECT_STREQ(sana_last_error(), "cancelled");
  EXPECT_EQ(state.cancel_result, 1);
  EXPECT_EQ(out.img.data, nullptr);
  ASSERT_GE(state.stages.size(), 2u);
  EXPECT_EQ(state.stages.back(), "step 1/4");  // stopped at the stage after the cancel: no step 2

  g.progress = stop_at_text_encoder;
  EXPECT_EQ(sana_generate(ctx, &g, &out.img), SANA_ERR_CANCELLED);

  g.progress = nullptr;  // the context works on after a cancelled call
  EXPECT_EQ(sana_generate(ctx, &g, &out.img), SANA_OK) << sana_last_error();
  EXPECT_NE(out.img.data, nullptr);
  sana_ctx_free(ctx);
}

namespace {

int free_during_call(const char* stage, double, void* user) {
  if (std::string(stage) == "text encoder") sana_ctx_free(static_cast<sana_ctx*>(user));
  return 0;
}

}  // namespace

TEST(CApi, FreeDuringACallFinishesTheCallThenReportsTheHandle) {
  sana_ctx* ctx = open(kSprint);
  ASSERT_NE(ctx, nullptr);
  sana_gen_params g = defaults_of(ctx, "a red circle", 1);
  g.progress = free_during_call;
  g.progress_user_data = ctx;
  Image out;
  EXPECT_EQ(sana_generate(ctx, &g, &out.img), SANA_OK) << sana_last_error();
  sana_image_free(&out.img);
  EXPECT_EQ(sana_generate(ctx, &g, &out.img), SANA_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sana_last_error()).find("not a live context"), std::string::npos) << sana_last_error();
  EXPECT_EQ(sana_cancel(ctx), -1);
  EXPECT_EQ(sana_ctx_pipeline(ctx), nullptr);
  sana_ctx_free(ctx);  // a second free is reported, not a crash
  EXPECT_NE(std::string(sana_last_error()).find("freed twice"), std::string::npos) << sana_last_error();
}

TEST(CApi, BadInputGivesACodeAndAMessage) {
  const auto error = [] { return std::string(sana_last_error()); };
  EXPECT_EQ(sana_ctx_new(nullptr), nullptr);
  EXPECT_EQ(error(), "params is NULL");
  sana_ctx_params cp;
  sana_ctx_params_init(&cp);
  EXPECT_EQ(sana_ctx_new(&cp), nullptr);
  EXPECT_EQ(error(), "model_dir is empty");
  cp.model_dir = "/no/such/folder";
  EXPECT_EQ(sana_ctx_new(&cp), nullptr);
  EXPECT_NE(error().find("/no/such/folder"), std::string::npos) << error();
  cp.model_dir = kSprint.c_str();
  cp.dtype = "int4";
  EXPECT_EQ(sana_ctx_new(&cp), nullptr);
  EXPECT_NE(error().find("dtype"), std::string::npos) << error();
  cp.dtype = "fp32";
  cp.quantize = "q3";
  EXPECT_EQ(sana_ctx_new(&cp), nullptr);
  EXPECT_NE(error().find("quantize"), std::string::npos) << error();
  cp.quantize = nullptr;
  cp.n_threads = -1;
  EXPECT_EQ(sana_ctx_new(&cp), nullptr);
  EXPECT_NE(error().find("n_threads"), std::string::npos) << error();
  cp.n_threads = 0;
  cp.struct_size = sizeof(cp) + 8;  // from a newer header
  EXPECT_EQ(sana_ctx_new(&cp), nullptr);
  EXPECT_NE(error().find("newer header"), std::string::npos) << error();

  sana_ctx* ctx = open(kSprint);
  ASSERT_NE(ctx, nullptr);
  sana_image out{};
  sana_gen_params g;
  sana_gen_params_init(&g);
  EXPECT_EQ(sana_generate(ctx, &g, &out), SANA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(error(), "prompt is NULL");
  g.prompt = "x";
  EXPECT_EQ(sana_generate(ctx, nullptr, &out), SANA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sana_generate(ctx, &g, nullptr), SANA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(error(), "out is NULL");
  EXPECT_EQ(sana_generate(nullptr, &g, &out), SANA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(error(), "ctx is NULL");
  EXPECT_EQ(sana_generate(reinterpret_cast<sana_ctx*>(&g), &g, &out), SANA_ERR_INVALID_ARGUMENT);
  EXPECT_NE(error().find("not a live context"), std::string::npos);
  EXPECT_EQ(sana_ctx_gen_params_init(ctx, nullptr), SANA_ERR_INVALID_ARGUMENT);

  const auto field_error = [&](const std::function<void(sana_gen_params&)>& change) {
    sana_gen_params bad = defaults_of(ctx, "x", 1);
    change(bad);
    EXPECT_NE(sana_generate(ctx, &bad, &out), SANA_OK);
    EXPECT_EQ(out.data, nullptr);
    return error();
  };
  EXPECT_EQ(field_error([](auto& p) { p.struct_size = 0; }).rfind("params.struct_size is 0", 0), 0u);
  EXPECT_NE(field_error([](auto& p) { p.struct_size = 8; }).find("smaller than any version"), std::string::npos);
  EXPECT_EQ(field_error([](auto& p) { p.steps = 0; }), "steps: must be at least 1, got 0");
  EXPECT_EQ(field_error([](auto& p) { p.width = 60; }), "width: must be a multiple of the VAE factor 8, got 60");
  EXPECT_EQ(field_error([](auto& p) { p.prompt = ""; }), "prompt: is empty");
  EXPECT_EQ(field_error([](auto& p) { p.guidance = -1; }).rfind("guidance: must be between 0", 0), 0u);
  EXPECT_EQ(field_error([](auto& p) { p.sampler = "ddim"; }).rfind("sampler: must be euler or dpm++2m", 0), 0u);
  EXPECT_EQ(field_error([](auto& p) { p.control_preprocess = "blur"; }).rfind("control_preprocess:", 0), 0u);
  EXPECT_EQ(field_error([](auto& p) { p.decoder = "fast"; }).rfind("decoder: must be full or tiny", 0), 0u);
  uint8_t pixels[4 * 4 * 2] = {};
  sana_image two_channels{4, 4, 2, pixels, 0};
  EXPECT_EQ(field_error([&](auto& p) { p.init_image = &two_channels; }),
            "init_image.channels is 2; expected 1 (grey), 3 (RGB) or 4 (RGBA)");
  sana_image no_data{4, 4, 3, nullptr, 0};
  EXPECT_EQ(field_error([&](auto& p) { p.control_image = &no_data; }), "control_image.data is NULL");
  sana_image huge{100000, 4, 3, pixels, 0};
  EXPECT_EQ(field_error([&](auto& p) { p.control_image = &huge; }).rfind("control_image is 100000x4", 0), 0u);
  sana_image grey{4, 4, 1, pixels, 0};
  EXPECT_EQ(field_error([&](auto& p) { p.init_image = &grey; p.strength = 0; }).rfind("strength:", 0), 0u);
  // A good call after all of that.
  sana_gen_params ok = defaults_of(ctx, "x", 1);
  EXPECT_EQ(sana_generate(ctx, &ok, &out), SANA_OK) << error();
  EXPECT_EQ(error(), "");
  sana_image_free(&out);
  sana_image_free(&out);  // freed images are zeroed: a second free does nothing
  sana_image_free(nullptr);
  sana_ctx_free(ctx);
}
