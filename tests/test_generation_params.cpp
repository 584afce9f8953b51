// The generation-parameters module every front end shares: strict JSON fields (names and diffusers aliases), the
// model folder's defaults under the user's choices, validation that names the field, and the pipeline call.
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "sana/frontend/generation_params.h"
#include "sana/pipeline/dtype_auto.h"
#include "test_util.h"

using nlohmann::json;
using sana::GenerationParams;
using sana::ParamError;

namespace {

// The field a ParamError names for `p`, or "" when it validates.
std::string failing_field(const GenerationParams& p) {
  try {
    sana::validate(p);
  } catch (const ParamError& e) {
    return e.field();
  }
  return "";
}

std::string json_error_field(const json& j) {
  GenerationParams p;
  try {
    sana::set_params_from_json(p, j);
  } catch (const ParamError& e) {
    return e.field();
  }
  return "";
}

GenerationParams valid() {
  GenerationParams p;
  p.prompt = "a red circle";
  return p;
}

}  // namespace

TEST(GenerationParams, JsonSetsFieldsByNameOrDiffusersAlias) {
  GenerationParams p;
  const auto set = sana::set_params_from_json(
      p, json{{"prompt", "x"}, {"num_inference_steps", 4}, {"guidance_scale", 3.5}, {"width", 64.0},
              {"use_complex_human_instruction", false}, {"timesteps", {1.5, 0.7, 0.3, 0.1, 0.0}}, {"seed", -1}});
  EXPECT_EQ(p.prompt, "x");
  EXPECT_EQ(p.steps, 4);
  EXPECT_EQ(p.guidance, 3.5);
  EXPECT_EQ(p.width, 64);
  EXPECT_FALSE(p.complex_human_instruction);
  EXPECT_EQ(p.timesteps, (std::vector<double>{1.5, 0.7, 0.3, 0.1, 0.0}));
  EXPECT_EQ(p.seed, -1);
  EXPECT_EQ(set, (sana::FieldSet{"prompt", "steps", "guidance", "width", "complex_human_instruction", "timesteps",
                                 "seed"}));
  // Fields in `skip` are left alone.
  GenerationParams q;
  sana::set_params_from_json(q, json{{"steps", 9}, {"height", 32}}, {"steps"});
  EXPECT_EQ(q.steps, GenerationParams().steps);
  EXPECT_EQ(q.height, 32);
}

TEST(GenerationParams, JsonTypesAreStrict) {
  EXPECT_EQ(json_error_field(json{{"width", 64.7}}), "width");             // not truncated
  EXPECT_EQ(json_error_field(json{{"height", 4294967360LL}}), "height");   // not wrapped
  EXPECT_EQ(json_error_field(json{{"steps", true}}), "steps");             // not 1
  EXPECT_EQ(json_error_field(json{{"steps", "2"}}), "steps");
  EXPECT_EQ(json_error_field(json{{"guidance", "high"}}), "guidance");
  EXPECT_EQ(json_error_field(json{{"num_inference_steps", 2.5}}), "num_inference_steps");  // named as written
  EXPECT_EQ(json_error_field(json{{"vae_tiling", 1}}), "vae_tiling");
  EXPECT_EQ(json_error_field(json{{"timesteps", {1.0, "0"}}}), "timesteps");
  EXPECT_EQ(json_error_field(json{{"promt", "typo"}}), "promt");
  GenerationParams p;
  EXPECT_NO_THROW(sana::set_params_from_json(p, json{{"promt", "typo"}}, {}, /*allow_unknown=*/true));
  EXPECT_THROW(sana::set_params_from_json(p, json::array()), ParamError);
}

TEST(GenerationParams, ValidationNamesTheField) {
  EXPECT_EQ(failing_field(valid()), "");
  const std::vector<std::pair<std::string, std::function<void(GenerationParams&)>>> cases = {
      {"prompt", [](GenerationParams& p) { p.prompt.clear(); }},
      {"prompt", [](GenerationParams& p) { p.prompt.assign(sana::GenerationLimits::max_prompt_bytes + 1, 'a'); }},
      {"width", [](GenerationParams& p) { p.width = 0; }},
      {"height", [](GenerationParams& p) { p.height = sana::GenerationLimits::max_side + 8; }},
      {"steps", [](GenerationParams& p) { p.steps = 0; }},
      {"steps", [](GenerationParams& p) { p.steps = sana::GenerationLimits::max_steps + 1; }},
      {"batch_count", [](GenerationParams& p) { p.batch_count = 0; }},
      {"max_sequence_length", [](GenerationParams& p) { p.max_sequence_length = 20000; }},
      {"guidance", [](GenerationParams& p) { p.guidance = std::nan(""); }},
      {"guidance", [](GenerationParams& p) { p.guidance = 1e30; }},
      {"seed", [](GenerationParams& p) { p.seed = -5; }},
      {"max_timesteps", [](GenerationParams& p) { p.max_timesteps = 2.0; }},
      {"intermediate_timesteps", [](GenerationParams& p) { p.intermediate_timesteps = 1.6; }},
      {"timesteps", [](GenerationParams& p) { p.timesteps = {1.5, 0.5}; }},                    // must end in 0
      {"timesteps", [](GenerationParams& p) { p.timesteps = {1.5, 0.0}; }},                    // steps + 1 values
      {"timesteps", [](GenerationParams& p) { p.steps = 2, p.timesteps = {0.5, 1.0, 0.0}; }},  // decreasing
      {"sampler", [](GenerationParams& p) { p.sampler = "ddim"; }},
      {"dtype", [](GenerationParams& p) { p.dtype = "int8"; }},
      {"device", [](GenerationParams& p) { p.device = "tpu"; }},
  };
  for (const auto& [field, change] : cases) {
    GenerationParams p = valid();
    change(p);
    EXPECT_EQ(failing_field(p), field);
  }
  // The intermediate time only matters for the default 2-step schedule.
  GenerationParams p = valid();
  p.steps = 1, p.intermediate_timesteps = 1.6;
  EXPECT_EQ(failing_field(p), "");
}

TEST(GenerationParams, ModelDefaultsFillOnlyWhatWasNotGiven) {
  sana::test::TempDir dir;
  std::ofstream(dir.file("generation_defaults.json"))
      << R"({"height": 64, "width": 64, "num_inference_steps": 1, "guidance_scale": 4.5, "max_sequence_length": 32,
            "use_complex_human_instruction": false, "resolution_binning": false, "prompt": "not from a folder",
            "something_new": 1})";
  GenerationParams p = valid();
  p.model = dir.path().string();
  p.steps = 3;
  sana::apply_model_defaults(p, {"steps"});
  EXPECT_EQ(p.steps, 3);  // given by the user
  EXPECT_EQ(p.height, 64);
  EXPECT_EQ(p.width, 64);
  EXPECT_EQ(p.max_sequence_length, 32);
  EXPECT_FALSE(p.complex_human_instruction);
  EXPECT_FALSE(p.resolution_binning);
  EXPECT_EQ(p.prompt, "a red circle");  // a folder does not choose the prompt

  std::ofstream(dir.file("generation_defaults.json")) << R"({"num_inference_steps": "one"})";
  try {
    sana::apply_model_defaults(p, {});
    FAIL();
  } catch (const sana::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("generation_defaults.json"), std::string::npos) << m;
    EXPECT_NE(m.find("num_inference_steps"), std::string::npos) << m;
  }
}

TEST(GenerationParams, PipelineCallAndPngText) {
  GenerationParams p = valid();
  p.steps = 2, p.seed = 7, p.batch_count = 3, p.vae_tiling = true, p.complex_human_instruction = false;
  auto o = sana::to_generate_options(p);
  EXPECT_EQ(o.prompts, std::vector<std::string>{"a red circle"});
  EXPECT_EQ(o.steps, 2);
  EXPECT_EQ(o.seed, 7u);
  EXPECT_EQ(o.num_images_per_prompt, 3);
  EXPECT_TRUE(o.tiled_decode);
  EXPECT_FALSE(o.prompt.use_complex_human_instruction);
  ASSERT_TRUE(o.intermediate_timesteps.has_value());  // the reference's default applies to 2 steps only
  EXPECT_EQ(*o.intermediate_timesteps, 1.3);
  p.steps = 4;
  EXPECT_FALSE(sana::to_generate_options(p).intermediate_timesteps.has_value());
  const std::string text = sana::png_parameters(p, "SCM", at::tensor({1.5708f, 0.0f}), 1, "sana-sprint test");
  EXPECT_EQ(text.rfind("a red circle\nSteps: 4, Timesteps: 1.5708,0, Sampler: SCM, Seed: 7, Batch index: 1", 0), 0u)
      << text;
  p.seed = -1;
  EXPECT_GE(sana::resolve_seed(p), 0);
}

// --dtype auto: the rule (bf16 only where at least 10 % faster), the probe's per-machine cache (written on the first
// load, read by the next; a damaged file is measured anew), and the front end's load settings from it.
TEST(DtypeAuto, RuleCacheAndLoadSettings) {
  sana::DtypeProbe probe{1.0, 0.4, 1.0, 1.3};
  auto d = sana::choose_dtypes(probe);
  EXPECT_EQ(d.transformer, at::kBFloat16);
  EXPECT_EQ(d.vae, at::kFloat);
  probe = {1.0, 0.95, 1.0, 0.5};  // a near tie keeps the reference's fp32
  d = sana::choose_dtypes(probe);
  EXPECT_EQ(d.transformer, at::kFloat);
  EXPECT_EQ(d.vae, at::kBFloat16);
  EXPECT_EQ(sana::auto_dtypes(at::Device(at::kCUDA)).vae, at::kBFloat16);  // no probe on CUDA

  sana::test::TempDir dir;
  const auto first = sana::auto_dtypes(at::kCPU, dir.file("a"));
  EXPECT_NE(first.how.find("measured"), std::string::npos) << first.how;
  auto cache = nlohmann::json::parse(std::ifstream(dir.file("a/dtype-auto.json")));
  ASSERT_EQ(cache.size(), 1u);
  auto& entry = cache.begin().value();
  EXPECT_EQ(sana::choose_dtypes({entry["matmul_fp32"], entry["matmul_bf16"], entry["conv_fp32"], entry["conv_bf16"]})
                .transformer,
            first.transformer);
  // Another folder holding this machine's entry with times that favour bf16 everywhere: read, not measured.
  entry = {{"matmul_fp32", 1.0}, {"matmul_bf16", 0.5}, {"conv_fp32", 1.0}, {"conv_bf16", 0.5}};
  std::filesystem::create_directories(dir.file("b"));
  std::ofstream(dir.file("b/dtype-auto.json")) << cache.dump();
  const auto cached = sana::auto_dtypes(at::kCPU, dir.file("b"));
  EXPECT_EQ(cached.transformer, at::kBFloat16);
  EXPECT_EQ(cached.vae, at::kBFloat16);
  EXPECT_NE(cached.how.find("cached in"), std::string::npos) << cached.how;
  std::filesystem::create_directories(dir.file("c"));
  std::ofstream(dir.file("c/dtype-auto.json")) << "{not json";
  EXPECT_NE(sana::auto_dtypes(at::kCPU, dir.file("c")).how.find("measured"), std::string::npos);

  // The front end: "auto" validates, and the load settings are the probe's (the cache folder from SANA_CACHE_DIR).
  setenv("SANA_CACHE_DIR", dir.file("b").c_str(), 1);
  GenerationParams p = valid();
  p.dtype = "auto";
  EXPECT_NO_THROW(sana::validate(p));
  std::string how;
  EXPECT_EQ(sana::load_dtype(p, &how), at::kBFloat16);
  EXPECT_EQ(how.rfind("dtype auto: text encoder and transformer bf16, VAE bf16", 0), 0u) << how;
  EXPECT_EQ(sana::load_options(p).vae_dtype, at::kBFloat16);
  unsetenv("SANA_CACHE_DIR");
  p.dtype = "fp32";
  EXPECT_EQ(sana::load_dtype(p, &how), at::kFloat);
  EXPECT_TRUE(how.empty());
  EXPECT_FALSE(sana::load_options(p).vae_dtype.has_value());
  p.dtype = "int4";
  EXPECT_NE(sana::test::error_of([&] { sana::validate(p); }).find("dtype"), std::string::npos);
}
