// Config parsing: the real SANA-Sprint configs, reference defaults, and clear errors.
#include <fstream>
#include <functional>

#include "sana/error.h"
#include "sana/io/config.h"
#include "test_util.h"

using sana::test::fixture;

namespace {
using sana::test::error_of;
}  // namespace

TEST(Config, RealSprint06B) {
  const auto c = sana::load_sana_transformer_config(
      fixture("configs/Sana_Sprint_0.6B_1024px_diffusers/transformer/config.json"));
  EXPECT_EQ(c.inner_dim(), 1152);
  EXPECT_EQ(c.num_layers, 28);
  EXPECT_EQ(c.cross_inner_dim(), 1152);
  EXPECT_EQ(c.ff_hidden(), 2880);
  EXPECT_TRUE(c.guidance_embeds);
  EXPECT_EQ(c.qk_norm.value(), "rms_norm_across_heads");
  EXPECT_FALSE(c.interpolation_scale.has_value());
  EXPECT_DOUBLE_EQ(c.guidance_embeds_scale, 0.1);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
}

TEST(Config, RealSprint16B) {
  const auto c = sana::load_sana_transformer_config(
      fixture("configs/Sana_Sprint_1.6B_1024px_diffusers/transformer/config.json"));
  EXPECT_EQ(c.inner_dim(), 2240);
  EXPECT_EQ(c.num_layers, 20);
  EXPECT_EQ(c.cross_inner_dim(), 2240);
  EXPECT_EQ(c.ff_hidden(), 5600);
}

TEST(Config, DefaultsAreTheDiffusersClassDefaults) {
  const auto c = sana::parse_sana_transformer_config(R"({"unknown_key": [1, 2], "_diffusers_version": "9"})", "mem");
  EXPECT_EQ(c.in_channels, 32);
  EXPECT_EQ(c.out_channels, 32);
  EXPECT_EQ(c.num_attention_heads, 70);
  EXPECT_EQ(c.num_layers, 20);
  EXPECT_EQ(c.cross_attention_dim, 2240);
  EXPECT_FALSE(c.guidance_embeds);
  EXPECT_FALSE(c.qk_norm.has_value());
  // out_channels null means in_channels
  EXPECT_EQ(sana::parse_sana_transformer_config(R"({"in_channels": 4, "out_channels": null})", "mem").out_channels, 4);
}

TEST(Config, WrongTypeNamesFileAndKey) {
  const std::string msg = error_of([] { sana::parse_sana_transformer_config(R"({"num_layers": "28"})", "cfg.json"); });
  EXPECT_NE(msg.find("cfg.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'num_layers'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("integer"), std::string::npos) << msg;
  EXPECT_NE(error_of([] { sana::parse_sana_transformer_config(R"({"guidance_embeds": 1})", "c"); }).find("true or false"),
            std::string::npos);
  EXPECT_NE(error_of([] { sana::parse_sana_transformer_config(R"({"qk_norm": "layer_norm"})", "c"); }).find("qk_norm"),
            std::string::npos);
  EXPECT_NE(error_of([] { sana::parse_sana_transformer_config(R"({"num_layers": 0})", "c"); }).find("positive"),
            std::string::npos);
  EXPECT_NE(error_of([] { sana::parse_sana_transformer_config(R"([1])", "c"); }).find("not a JSON object"),
            std::string::npos);
  EXPECT_NE(error_of([] { sana::parse_sana_transformer_config(R"({"_class_name": "UNet2DModel"})", "c"); })
                .find("expected SanaTransformer2DModel"),
            std::string::npos);
}

TEST(Config, ModelIndexAndScheduler) {
  const auto index = sana::load_model_index(fixture("pipeline_sprint_tiny/model_index.json"));
  EXPECT_EQ(index.class_name, "SanaSprintPipeline");
  EXPECT_EQ(index.components.at("transformer").second, "SanaTransformer2DModel");
  EXPECT_EQ(index.components.at("text_encoder").first, "transformers");
  EXPECT_EQ(index.components.at("vae").second, "AutoencoderDC");
  const auto sched = sana::load_scm_scheduler_config(fixture("pipeline_sprint_tiny/scheduler/scheduler_config.json"));
  EXPECT_DOUBLE_EQ(sched.sigma_data, 0.5);
  EXPECT_EQ(sched.prediction_type, "trigflow");
}

TEST(Config, MissingRequiredKeyAndMissingFile) {
  sana::test::TempDir dir;
  const std::string path = dir.file("model_index.json");
  std::ofstream(path) << R"({"transformer": ["diffusers", "SanaTransformer2DModel"]})";
  const std::string msg = error_of([&] { sana::load_model_index(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("'_class_name'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("required"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { sana::load_model_index(dir.file("nope.json")); }).find("nope.json"), std::string::npos);
}
