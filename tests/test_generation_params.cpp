// The generation-parameters module every front end shares: strict JSON fields (names and diffusers aliases), the
// model folder's defaults under the user's choices, validation that names the field, and the pipeline call.
#include <nlohmann/json.hpp>

#include <fstream>

#include "sana/frontend/generation_params.h"
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
