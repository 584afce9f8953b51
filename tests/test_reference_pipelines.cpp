// The diffusers reference pipelines beyond text-to-image Sprint, reproduced from their folders on disk with every
// intermediate the fixtures record: the flow teacher with both schedulers real SANA checkpoints ship (DPM-Solver++
// and flow Euler, shift 3, real CFG with a negative prompt), the teacher with a ControlNet, and Sprint img2img.
// Cases, prompts and sizes come from each fixture's metadata.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/io/image.h"
#include "sana/models/dcae.h"
#include "sana/pipeline/pipeline.h"
#include "sana/pipeline/sana.h"
#include "sana/pipeline/sana_sprint.h"
#include "test_util.h"

using nlohmann::json;
using sana::test::fixture;
using sana::test::unpadded;

namespace {

struct Case {
  std::string name;
  json meta;
};

std::vector<Case> cases_of(const sana::SafetensorsFile& ref) {
  std::vector<Case> out;
  for (const auto& [name, text] : ref.metadata())
    if (name != "format") out.push_back({name, json::parse(text)});
  return out;
}

sana::GenerateOptions options_of(const json& m, const std::string& folder) {
  sana::GenerateOptions o = sana::test::case_options(m);
  o.record_steps = true;
  o.negative_prompt = m.value("negative", "");
  if (m.contains("control")) {
    o.control_image = sana::load_png(fixture(folder + "/" + m["control"].get<std::string>()));
    o.controlnet_conditioning_scale = m["scale"].get<double>();
  }
  if (m.contains("init")) {
    o.image = sana::load_png(fixture(folder + "/" + m["init"].get<std::string>()));
    o.strength = m["strength"].get<double>();
  }
  return o;
}

void expect_image(const at::Tensor& actual, const at::Tensor& expected) {
  EXPECT_CLOSE(actual, expected, 1e-3);
  const at::Tensor diff = (at::round(actual.cpu() * 255) - at::round(expected * 255)).abs();
  EXPECT_LE(diff.max().item<float>(), 1.0f);
}

// A teacher fixture: per step the CFG batch's input, timestep, output (and ControlNet residuals), then the image.
void check_teacher(const std::string& folder) {
  const auto pipe = sana::load_pipeline(fixture(folder), sana::test::test_device(), at::kFloat);
  const auto ref = sana::SafetensorsFile::open(fixture(folder + "/expected.safetensors"));
  const auto cases = cases_of(*ref);
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    SCOPED_TRACE(folder + " " + c.name);
    const std::string p = c.name + ".";
    const auto r = pipe->generate(options_of(c.meta, folder));
    EXPECT_TRUE(sana::test::same(r.timesteps.to(at::kDouble), ref->get(p + "timesteps").to(at::kDouble)));
    if (ref->contains(p + "initial_noise")) EXPECT_TRUE(sana::test::same(r.initial_noise, ref->get(p + "initial_noise")));
    const at::Tensor embeds = ref->get(p + "prompt_embeds");  // rows: negative, prompt
    EXPECT_CLOSE(r.prompt_embeds, unpadded(embeds.narrow(0, 1, 1), r.prompt_attention_mask), 1e-4);
    ASSERT_EQ(static_cast<int>(r.steps.size()), c.meta["steps"].get<int>());
    for (size_t i = 0; i < r.steps.size(); ++i) {
      const std::string s = p + "step" + std::to_string(i) + ".";
      EXPECT_CLOSE(r.steps[i].model_input, ref->get(s + "transformer_input"), 1e-4);
      EXPECT_CLOSE(r.steps[i].timestep, ref->get(s + "transformer_timestep").to(at::kFloat), 1e-3);
      EXPECT_CLOSE(r.steps[i].model_output, ref->get(s + "transformer_output"), 1e-4);
      for (size_t j = 0; j < r.steps[i].controlnet_block_samples.size(); ++j)
        EXPECT_CLOSE(r.steps[i].controlnet_block_samples[j],
                     ref->get(s + "controlnet_block_samples." + std::to_string(j)), 1e-4);
    }
    if (ref->contains(p + "controlnet_cond")) {
      EXPECT_CLOSE(r.vae_encode_input[0], ref->get(p + "vae_encode0.input")[0], 1e-6);
      EXPECT_CLOSE(r.control_latents, ref->get(p + "controlnet_cond"), 1e-4);
      EXPECT_FALSE(r.steps.at(0).controlnet_block_samples.empty());
    }
    expect_image(r.images, ref->get(p + "image"));
  }
}

}  // namespace

TEST(ReferencePipelines, TeacherWithDpmSolverFlowScheduler) { check_teacher("pipeline_sana_tiny"); }

TEST(ReferencePipelines, TeacherWithFlowEulerScheduler) { check_teacher("pipeline_sana_euler_tiny"); }

TEST(ReferencePipelines, TeacherWithControlNet) { check_teacher("pipeline_sana_controlnet_tiny"); }

// Sprint img2img: strength skips whole steps, the init latent is noised in TrigFlow space at the first kept time.
TEST(ReferencePipelines, SprintImg2Img) {
  const std::string folder = "pipeline_sprint_img2img_tiny";
  const auto pipe = sana::SanaSprintPipeline::from_pretrained(fixture(folder), at::kCPU, at::kFloat);
  const auto ref = sana::SafetensorsFile::open(fixture(folder + "/expected.safetensors"));
  const auto cases = cases_of(*ref);
  ASSERT_FALSE(cases.empty());
  const double sigma_d = pipe.scheduler_config.sigma_data, sf = pipe.components.vae->config().scaling_factor;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string p = c.name + ".";
    const auto r = pipe.generate(options_of(c.meta, folder));
    EXPECT_TRUE(at::equal(r.timesteps, ref->get(p + "timesteps")));
    EXPECT_CLOSE(r.prompt_embeds, unpadded(ref->get(p + "prompt_embeds"), r.prompt_attention_mask), 1e-4);
    EXPECT_CLOSE(r.vae_encode_input, ref->get(p + "vae_encode0.input"), 1e-6);
    EXPECT_CLOSE(r.image_latents, ref->get(p + "vae_encode0.latent") * sf * sigma_d, 1e-4);
    const int steps = c.meta["steps"].get<int>();
    const int kept = steps - sana::img2img_first_step(steps, c.meta["strength"].get<double>());
    ASSERT_EQ(static_cast<int>(r.steps.size()), kept);
    for (int i = 0; i < kept; ++i) {
      // The fixture records the flow-space view: x_s = x_hat sqrt(s^2 + (1-s)^2) at s = sin t / (sin t + cos t),
      // and the raw velocity v, from which F = ((1 - 2s) x_s + (1 - 2s + 2s^2) v) / sqrt(s^2 + (1-s)^2).
      const std::string s = p + "step" + std::to_string(i) + ".";
      const at::Tensor t = r.steps[i].timestep.view({-1, 1, 1, 1});
      const at::Tensor flow_s = at::sin(t) / (at::sin(t) + at::cos(t));
      const at::Tensor norm = at::sqrt(flow_s * flow_s + (1 - flow_s) * (1 - flow_s));
      EXPECT_CLOSE(flow_s.view({-1}), ref->get(s + "transformer_timestep"), 1e-6);
      const at::Tensor x_s = r.steps[i].model_input * norm;
      EXPECT_CLOSE(x_s, ref->get(s + "transformer_input"), 1e-4);
      const at::Tensor v = ref->get(s + "transformer_output");
      EXPECT_CLOSE(r.steps[i].model_output, ((1 - 2 * flow_s) * x_s + (1 - 2 * flow_s + 2 * flow_s * flow_s) * v) / norm,
                   1e-4);
    }
    expect_image(r.images, ref->get(p + "image"));
  }
}

// diffusers' get_timesteps skips t_start = int(n - n * strength) steps (the product and difference in doubles): the
// expected values here are that formula evaluated by hand. The rule once documented here, n - int(n * strength),
// differs at 2 steps for 0 < strength < 0.5 and 0.5 < strength < 1, and at 4 steps for 0.3 and 0.7.
TEST(ReferencePipelines, Img2ImgSkipsTheStepsDiffusersSkips) {
  struct Case {
    int steps;
    double strength;
    int first;
  } cases[] = {{1, 0.01, 0}, {1, 0.6, 0}, {1, 1.0, 0}, {2, 0.2, 1}, {2, 0.4, 1}, {2, 0.5, 1}, {2, 0.6, 0},
               {2, 1.0, 0},  {3, 1.0 / 3, 2}, {4, 0.1, 3}, {4, 0.25, 3}, {4, 0.3, 2}, {4, 0.5, 2}, {4, 0.7, 1},
               {4, 0.75, 1}, {4, 0.8, 0}};
  for (const auto& c : cases) {
    SCOPED_TRACE(std::to_string(c.steps) + " steps, strength " + std::to_string(c.strength));
    EXPECT_EQ(sana::img2img_first_step(c.steps, c.strength), c.first);
  }
  for (const double bad : {0.0, -0.1, 1.5, std::nan("")}) EXPECT_THROW(sana::img2img_first_step(2, bad), sana::Error);
}

// At a strength that skips the same whole steps as a fixture case's, diffusers runs exactly that case (strength only
// enters through t_start), so the fixture's image is the reference there too; 0.3 and 0.4 are such strengths for the
// shared cases (2 and 4 steps at 0.5), where the int(n * strength) rule would run fewer steps.
TEST(ReferencePipelines, SprintImg2ImgAtOtherStrengthsWithTheSameSkippedSteps) {
  const std::string folder = "pipeline_sprint_img2img_tiny";
  const auto pipe = sana::SanaSprintPipeline::from_pretrained(fixture(folder), at::kCPU, at::kFloat);
  const auto ref = sana::SafetensorsFile::open(fixture(folder + "/expected.safetensors"));
  int checked = 0;
  for (const auto& c : cases_of(*ref)) {
    const int n = c.meta["steps"].get<int>();
    const auto t_start = [n](double s) { return static_cast<int>(std::max(n - std::min(n * s, 1.0 * n), 0.0)); };
    for (const double s : {0.3, 0.4, 0.45}) {
      if (s == c.meta["strength"].get<double>() || t_start(s) != t_start(c.meta["strength"].get<double>())) continue;
      SCOPED_TRACE(c.name + " at strength " + std::to_string(s));
      sana::GenerateOptions o = options_of(c.meta, folder);
      o.strength = s;
      const auto r = pipe.generate(o);
      EXPECT_EQ(static_cast<int>(r.steps.size()), n - t_start(s));
      expect_image(r.images, ref->get(c.name + ".image"));
      ++checked;
    }
  }
  EXPECT_GE(checked, 1);
}

// `sana-sprint generate`'s order: every call's text embedded first (the teacher's negative prompt with it), then the
// text encoder released, then the calls run from the stored embeddings; the reference images are unchanged.
TEST(ReferencePipelines, TeacherFromTextEmbeddedBeforeTheTextEncoderIsReleased) {
  const std::string folder = "pipeline_sana_tiny";
  auto pipe = sana::load_pipeline(fixture(folder), sana::test::test_device(), at::kFloat);
  const auto ref = sana::SafetensorsFile::open(fixture(folder + "/expected.safetensors"));
  const auto cases = cases_of(*ref);
  ASSERT_FALSE(cases.empty());
  std::vector<sana::GenerateOptions> calls;
  for (const auto& c : cases) {
    calls.push_back(options_of(c.meta, folder));
    pipe->embed_text(calls.back());
    EXPECT_EQ(calls.back().negative_prompt_embeds.defined(), calls.back().guidance_scale > 1.0);
  }
  pipe->components.release_text_encoder();
  EXPECT_FALSE(pipe->components.text_encoder || pipe->components.tokenizer || pipe->components.prefix_cache);
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    const std::string p = cases[i].name + ".";
    const auto r = pipe->generate(calls[i]);
    for (size_t k = 0; k < r.steps.size(); ++k)  // both CFG halves: the negative prompt's embedding is in them
      EXPECT_CLOSE(r.steps[k].model_output, ref->get(p + "step" + std::to_string(k) + ".transformer_output"), 1e-4);
    expect_image(r.images, ref->get(p + "image"));
  }
  try {
    pipe->generate(options_of(cases[0].meta, folder));
    ADD_FAILURE() << "a call with prompts after the release ran";
  } catch (const sana::Error& e) {
    EXPECT_NE(std::string(e.what()).find("pass prompt embeddings"), std::string::npos) << e.what();
  }
}

// `vae=` as in diffusers: a pipeline folder without its own vae/ runs with the VAE given by folder and gives the
// reference images; another VAE of the same latent space leaves every transformer step as it was and decodes the
// final latents with its own decoder.
TEST(ReferencePipelines, AnotherVaeFolderReplacesTheModelsVae) {
  const std::string folder = "pipeline_sana_tiny";
  const auto ref = sana::SafetensorsFile::open(fixture(folder + "/expected.safetensors"));
  const auto cases = cases_of(*ref);
  ASSERT_FALSE(cases.empty());
  const auto& c = cases[0];
  const std::string p = c.name + ".";

  sana::test::TempDir dir;
  const std::filesystem::path without_vae = dir.file("model");
  std::filesystem::copy(fixture(folder), without_vae, std::filesystem::copy_options::recursive);
  std::filesystem::remove_all(without_vae / "vae");
  const auto own = sana::load_pipeline(without_vae.string(), at::kCPU, at::kFloat, {"", fixture(folder + "/vae")});
  expect_image(own->generate(options_of(c.meta, folder)).images, ref->get(p + "image"));

  const auto other = sana::load_pipeline(fixture(folder), at::kCPU, at::kFloat, {"", fixture("dcae_tiny")});
  const auto r = other->generate(options_of(c.meta, folder));
  for (size_t k = 0; k < r.steps.size(); ++k)
    EXPECT_CLOSE(r.steps[k].model_output, ref->get(p + "step" + std::to_string(k) + ".transformer_output"), 1e-4);
  const auto vae = sana::AutoencoderDC::from_pretrained(fixture("dcae_tiny"), at::TensorOptions(at::kFloat));
  const at::Tensor decoded = vae->decode(r.final_latents / vae->config().scaling_factor);
  EXPECT_CLOSE(r.images, (decoded / 2 + 0.5).clamp(0, 1), 1e-6);
  EXPECT_GT((r.images - ref->get(p + "image")).abs().max().item<float>(), 0.05);  // the swap took effect
}

// A VAE of another latent space is refused from its config alone, before any weights are read (the folders below
// hold no weights), naming the folder and the mismatch.
TEST(ReferencePipelines, AVaeOfAnotherLatentSpaceIsRefused) {
  const std::string model = fixture("pipeline_sprint_tiny");
  const auto own = nlohmann::json::parse(sana::read_text_file(model + "/vae/config.json"));
  sana::test::TempDir dir;
  const auto refused = [&](const std::string& name, const json& config, const std::string& expected) {
    SCOPED_TRACE(name);
    const std::string vae = dir.file(name);
    std::filesystem::create_directories(vae);
    std::ofstream(vae + "/config.json") << config.dump();
    try {
      sana::load_pipeline(model, at::kCPU, at::kFloat, {"", vae});
      ADD_FAILURE() << "loaded";
    } catch (const sana::Error& e) {
      EXPECT_NE(std::string(e.what()).find("vae " + vae + ": " + expected), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("another latent space"), std::string::npos) << e.what();
    }
  };
  const int channels = own["latent_channels"].get<int>();
  json config = own;
  config["latent_channels"] = channels * 2;
  refused("channels", config, "has " + std::to_string(channels * 2) + " latent channels");
  config = own;
  config["scaling_factor"] = own["scaling_factor"].get<double>() * 2;
  refused("scaling", config, "has scaling_factor");
  // The DC-AE-Lite fixture: the same channels and scaling factor, but one stage more than this model's VAE.
  const auto lite = nlohmann::json::parse(sana::read_text_file(fixture("dcae_lite_tiny/config.json")));
  const int factor = 1 << (static_cast<int>(lite["decoder_block_out_channels"].size()) - 1);
  const int own_factor = 1 << (static_cast<int>(own["decoder_block_out_channels"].size()) - 1);
  if (factor != own_factor && lite["latent_channels"] == own["latent_channels"])
    refused("factor", lite, "compresses by " + std::to_string(factor) + "x");
  EXPECT_THROW(sana::load_pipeline(model, at::kCPU, at::kFloat, {"", dir.file("none")}), sana::Error);
}

// The DC-AE-Lite config this project ships for benchmarks (tests/data/README.md) is a drop-in VAE for both Sprint
// models, as its authors say: the same latent space (32 channels, 32x, the same scaling factor); the tiny Lite fixture
// (4 channels, 8x) is not.
TEST(ReferencePipelines, TheDcAeLiteConfigFitsTheSprintModels) {
  const std::string lite = fixture("configs/dc-ae-lite-f32c32-sana-1.1-diffusers");
  const auto config = sana::load_autoencoder_dc_config(lite + "/config.json");
  EXPECT_EQ(config.spatial_factor(), 32);
  EXPECT_EQ(config.decoder_layers_per_block.at(0), 0);
  for (const std::string model : {"configs/Sana_Sprint_0.6B_1024px_diffusers", "configs/Sana_Sprint_1.6B_1024px_diffusers"}) {
    SCOPED_TRACE(model);
    EXPECT_NO_THROW(sana::check_vae_fits(config, lite, fixture(model)));
    const std::string tiny = fixture("dcae_lite_tiny");
    EXPECT_THROW(sana::check_vae_fits(sana::load_autoencoder_dc_config(tiny + "/config.json"), tiny, fixture(model)),
                 sana::Error);
  }
}
