// LoRA (docs/LORA.md): the diffusers/PEFT and kohya namings read alike; fused weights equal W + scale * alpha/r * B A
// (the formula, computed here in fp64); unfuse restores every weight bit for bit; the side path gives the fused
// model's output; `generate --lora` equals a folder whose weights were fused beforehand (teacher and student); bad
// files give one-line errors naming the file and the tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include <c10/core/InferenceMode.h>

#include "sana/io/image.h"
#include "sana/io/lora_file.h"
#include "sana/io/safetensors.h"
#include "sana/pipeline/pipeline.h"
#include "test_util.h"

namespace fs = std::filesystem;
using sana::test::error_of;
using sana::test::TempDir;

namespace {

const std::string kSprint = std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes";
const std::string kTeacher = std::string(SANA_MODELS_DIR) + "/sana-shapes-teacher";

struct Target {
  std::string module;
  double alpha;
};

// The layers the test LoRA targets: a self-attention and a cross-attention linear, and a 1x1 convolution of the
// feed-forward (block indices taken from the model's own depth).
std::vector<Target> targets(int blocks) {
  const std::string last = std::to_string(blocks - 1);
  return {{"transformer_blocks.0.attn1.to_q", 8}, {"transformer_blocks." + last + ".attn2.to_out.0", 2},
          {"transformer_blocks." + last + ".ff.conv_inverted", 4}};
}

struct RandomLora {
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> down_up;  // module -> (down, up)
  std::map<std::string, double> alpha;
};

RandomLora random_lora(sana::SanaTransformer2DModel& t, int64_t rank, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto layers = sana::nn::weighted_layers(t);
  RandomLora l;
  for (const Target& target : targets(static_cast<int>(t.config().num_layers))) {
    const at::Tensor& w = layers.at(target.module)->weight;
    std::vector<int64_t> down{rank, w.size(1)}, up{w.size(0), rank};
    if (w.dim() == 4) down.insert(down.end(), {w.size(2), w.size(3)}), up.insert(up.end(), {1, 1});
    l.down_up[target.module] = {at::randn(down, gen) * 0.1, at::randn(up, gen) * 0.1};
    l.alpha[target.module] = target.alpha;
  }
  return l;
}

// diffusers' pipeline-level file: transformer.<module>.lora_A/B.weight, the alphas in lora_adapter_metadata (one
// lora_alpha and an alpha_pattern for the others, as PEFT writes them).
std::string write_diffusers(const RandomLora& l, const std::string& path) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  nlohmann::json config = {{"transformer.r", 4}, {"transformer.lora_alpha", 8}};
  for (const auto& [module, du] : l.down_up) {
    tensors.push_back({"transformer." + module + ".lora_A.weight", du.first});
    tensors.push_back({"transformer." + module + ".lora_B.weight", du.second});
    if (l.alpha.at(module) != 8) config["transformer.alpha_pattern"][module] = l.alpha.at(module);
  }
  sana::save_safetensors(path, tensors, {{"format", "pt"}, {"lora_adapter_metadata", config.dump()}});
  return path;
}

// kohya's naming: lora_unet_<module with underscores>.lora_down/lora_up.weight and .alpha.
std::string write_kohya(const RandomLora& l, const std::string& path) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [module, du] : l.down_up) {
    std::string u = module;
    for (char& c : u) c = c == '.' ? '_' : c;
    tensors.push_back({"lora_unet_" + u + ".lora_down.weight", du.first});
    tensors.push_back({"lora_unet_" + u + ".lora_up.weight", du.second});
    tensors.push_back({"lora_unet_" + u + ".alpha", at::tensor(l.alpha.at(module))});
  }
  sana::save_safetensors(path, tensors);
  return path;
}

// W + scale * alpha / r * (B A), in fp64, as the LoRA papers define the update.
at::Tensor fused_by_formula(const at::Tensor& w, const std::pair<at::Tensor, at::Tensor>& du, double alpha, double scale) {
  const at::Tensor delta = at::mm(du.second.flatten(1).to(at::kDouble), du.first.flatten(1).to(at::kDouble));
  return w.to(at::kDouble) + delta.view(w.sizes()) * (scale * alpha / du.first.size(0));
}

std::map<std::string, at::Tensor> weights_of(sana::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, layer] : sana::nn::weighted_layers(m)) out[name] = layer->weight;
  return out;
}

}  // namespace

TEST(Lora, DiffusersAndKohyaFilesReadAlike) {
  TempDir dir;
  const auto t = sana::SanaTransformer2DModel::from_pretrained(kSprint + "/transformer", at::TensorOptions().dtype(at::kFloat));
  const RandomLora l = random_lora(*t, 4, 1);
  std::set<std::string> names;
  for (const auto& [name, layer] : sana::nn::weighted_layers(*t)) names.insert(name);
  const sana::LoraFile a = sana::read_lora_file(write_diffusers(l, dir.file("d.safetensors")), {{"transformer", names}});
  const sana::LoraFile b = sana::read_lora_file(write_kohya(l, dir.file("k.safetensors")), {{"transformer", names}});
  EXPECT_EQ(a.format, "diffusers");
  EXPECT_EQ(b.format, "kohya");
  ASSERT_EQ(a.layers.size(), l.down_up.size());
  ASSERT_EQ(b.layers.size(), l.down_up.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    SCOPED_TRACE(a.layers[i].module);
    EXPECT_EQ(a.layers[i].module, b.layers[i].module);
    EXPECT_EQ(a.layers[i].component, "transformer");
    EXPECT_DOUBLE_EQ(a.layers[i].alpha, l.alpha.at(a.layers[i].module));
    EXPECT_DOUBLE_EQ(b.layers[i].alpha, l.alpha.at(a.layers[i].module));
    EXPECT_TRUE(at::equal(a.layers[i].down, l.down_up.at(a.layers[i].module).first));
    EXPECT_TRUE(at::equal(b.layers[i].up, l.down_up.at(a.layers[i].module).second));
  }
  // Without metadata or .alpha tensors, alpha is the rank (scale 1), diffusers' rule.
  std::vector<std::pair<std::string, at::Tensor>> bare;
  for (const auto& [module, du] : l.down_up)
    bare.insert(bare.end(), {{module + ".lora_A.weight", du.first}, {module + ".lora_B.weight", du.second}});
  sana::save_safetensors(dir.file("bare.safetensors"), bare);
  for (const auto& layer : sana::read_lora_file(dir.file("bare.safetensors"), {{"transformer", names}}).layers)
    EXPECT_DOUBLE_EQ(layer.alpha, 4);
}

TEST(Lora, FusedWeightsAreTheFormulaAndUnfuseIsExact) {
  TempDir dir;
  auto c = sana::PipelineComponents::from_pretrained(kSprint, at::kCPU, at::kFloat);
  const RandomLora l = random_lora(*c.transformer, 4, 2);
  const auto before = weights_of(*c.transformer);
  std::map<std::string, at::Tensor> copies;
  for (const auto& [name, w] : before) copies[name] = w.clone();
  const double scale = 0.7;
  const auto report = c.apply_lora({write_kohya(l, dir.file("k.safetensors")), scale});
  EXPECT_EQ(report.fused, static_cast<int>(l.down_up.size()));
  EXPECT_EQ(report.side, 0);
  const auto after = weights_of(*c.transformer);
  for (const auto& [name, w] : after) {
    SCOPED_TRACE(name);
    if (l.down_up.count(name)) {
      EXPECT_CLOSE(w, fused_by_formula(copies[name], l.down_up.at(name), l.alpha.at(name), scale), 1e-6);
      EXPECT_FALSE(at::equal(w, copies[name]));
    } else {
      EXPECT_TRUE(at::equal(w, copies[name]));
    }
  }
  // A second LoRA on top, then both removed: every weight as it was, bit for bit.
  c.apply_lora({write_diffusers(random_lora(*c.transformer, 2, 3), dir.file("d.safetensors")), -1.5});
  c.remove_loras();
  for (const auto& [name, w] : weights_of(*c.transformer)) EXPECT_TRUE(at::equal(w, copies[name])) << name;
}

TEST(Lora, SidePathGivesTheFusedOutput) {
  TempDir dir;
  auto c = sana::PipelineComponents::from_pretrained(kSprint, at::kCPU, at::kFloat);
  const std::string file = write_diffusers(random_lora(*c.transformer, 4, 4), dir.file("d.safetensors"));
  const auto& cfg = c.transformer->config();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor x = at::randn({1, cfg.in_channels, 8, 8}, gen);
  const at::Tensor text = at::randn({1, 6, cfg.caption_channels}, gen);
  sana::SanaTransformerInputs in{x, text, at::full({1}, 0.6), cfg.guidance_embeds ? at::full({1}, 0.45) : at::Tensor()};
  const auto run = [&] {
    c10::InferenceMode inference;
    return c.transformer->forward(in).clone();
  };
  const at::Tensor base = run();
  c.apply_lora({file, 0.8}, /*side=*/true);
  const at::Tensor side = run();
  c.remove_loras();
  EXPECT_TRUE(at::equal(run(), base));
  c.apply_lora({file, 0.8});
  const at::Tensor fused = run();
  EXPECT_GT(sana::test::max_abs_diff(fused, base), 1e-3);  // the LoRA changes the output
  EXPECT_CLOSE(side, fused, 1e-4);
}

// `generate --lora FILE:SCALE` against the same folder with the LoRA fused into its weights beforehand (by the
// formula, here), for the student and the teacher: the same image within 1/255.
TEST(Lora, GenerateWithLoraEqualsAFolderFusedBeforehand) {
  for (const std::string& model : {kSprint, kTeacher}) {
    SCOPED_TRACE(model);
    TempDir dir;
    const auto t = sana::SanaTransformer2DModel::from_pretrained(model + "/transformer", at::TensorOptions().dtype(at::kFloat));
    const RandomLora l = random_lora(*t, 4, 6);
    const std::string lora = write_diffusers(l, dir.file("lora.safetensors"));
    const std::string fused = dir.file("fused");
    fs::copy(model, fused, fs::copy_options::recursive);
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& item : t->named_parameters()) {
      const std::string& name = item.key();
      const std::string module = name.substr(0, name.rfind('.'));
      const bool is_weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
      tensors.emplace_back(name, is_weight && l.down_up.count(module)
                                     ? fused_by_formula(item.value(), l.down_up.at(module), l.alpha.at(module), 0.6)
                                           .to(at::kFloat)
                                     : item.value());
    }
    for (const auto& item : t->named_buffers()) tensors.emplace_back(item.key(), item.value());
    const fs::path weights = fs::path(fused) / "transformer" / "diffusion_pytorch_model.safetensors";
    ASSERT_TRUE(fs::exists(weights));
    sana::save_safetensors(weights.string(), tensors);

    const std::string args = " -p 'a red circle' -s 3 --steps 2";
    const auto r1 = sana::test::run_cli("generate -m " + model + args + " --lora " + lora + ":0.6 -o " + dir.file("a.png"));
    ASSERT_EQ(r1.rc, 0) << r1.err;
    EXPECT_NE(r1.err.find("with 1 LoRA(s)"), std::string::npos) << r1.err;
    const auto r2 = sana::test::run_cli("generate -m " + fused + args + " -o " + dir.file("b.png"));
    ASSERT_EQ(r2.rc, 0) << r2.err;
    const auto r3 = sana::test::run_cli("generate -m " + model + args + " -o " + dir.file("c.png"));
    ASSERT_EQ(r3.rc, 0) << r3.err;
    std::map<std::string, std::string> text;
    const at::Tensor a = sana::load_png(dir.file("a.png"), &text), b = sana::load_png(dir.file("b.png"));
    EXPECT_LE(sana::test::max_abs_diff(a, b), 1.0 / 255 + 1e-6);
    EXPECT_GT(sana::test::max_abs_diff(a, sana::load_png(dir.file("c.png"))), 2.0 / 255);  // the LoRA did something
    EXPECT_NE(text["parameters"].find("LoRA: " + lora + ":0.6"), std::string::npos) << text["parameters"];
  }
}

TEST(Lora, QuantizedWeightsTakeTheSidePath) {
  TempDir dir;
  auto c = sana::PipelineComponents::from_pretrained(kSprint, at::kCPU, at::kFloat);
  const std::string file = write_diffusers(random_lora(*c.transformer, 4, 7), dir.file("d.safetensors"));
  c.quantize_int8({sana::nn::Int8Compute::weights, 0});
  const auto report = c.apply_lora({file, 1.0});
  EXPECT_EQ(report.fused, 0);
  EXPECT_EQ(report.side, 3);
  c.remove_loras();
  for (const auto& [name, layer] : sana::nn::weighted_layers(*c.transformer)) EXPECT_TRUE(layer->lora.empty());
}

TEST(Lora, BadFilesGiveOneLineErrors) {
  TempDir dir;
  auto c = sana::PipelineComponents::from_pretrained(kSprint, at::kCPU, at::kFloat);
  const auto w = weights_of(*c.transformer);
  const at::Tensor& q_weight = w.at("transformer_blocks.0.attn1.to_q");
  const int64_t in = q_weight.size(1), out = q_weight.size(0), hidden = w.at("transformer_blocks.0.ff.conv_depth").size(0);
  const at::Tensor A = at::randn({4, in}), B = at::randn({out, 4});
  const auto error_for = [&](std::vector<std::pair<std::string, at::Tensor>> tensors) {
    const std::string path = dir.file("bad.safetensors");
    sana::save_safetensors(path, tensors);
    return error_of([&] { c.apply_lora({path, 1.0}); });
  };
  const std::string q = "transformer.transformer_blocks.0.attn1.to_q";
  EXPECT_NE(error_for({{"transformer.transformer_blocks.99.attn1.to_q.lora_A.weight", A},
                       {"transformer.transformer_blocks.99.attn1.to_q.lora_B.weight", B}})
                .find("has no layer transformer_blocks.99.attn1.to_q"),
            std::string::npos);
  EXPECT_NE(error_for({{q + ".lora_A.weight", at::randn({4, in + 1})}, {q + ".lora_B.weight", B}}).find("takes"),
            std::string::npos);
  EXPECT_NE(error_for({{q + ".lora_A.weight", A}}).find("has no up (lora_B) partner"), std::string::npos);
  EXPECT_NE(error_for({{q + ".lora_A.weight", A * NAN}, {q + ".lora_B.weight", B}}).find("NaN"), std::string::npos);
  EXPECT_NE(error_for({{"text_encoder.layers.0.self_attn.q_proj.lora_A.weight", A}}).find("text encoder"),
            std::string::npos);
  EXPECT_NE(error_for({{"transformer.transformer_blocks.0.ff.conv_depth.lora_A.weight", at::randn({4, 1, 3, 3})},
                       {"transformer.transformer_blocks.0.ff.conv_depth.lora_B.weight", at::randn({hidden, 4, 1, 1})}})
                .find("grouped convolution"),
            std::string::npos);
  EXPECT_NE(error_for({{"lora_unet_no_such_layer.lora_down.weight", A}}).find("names no layer"), std::string::npos);
  EXPECT_NE(error_for({{"model.weight", A}}).find("is not a LoRA tensor"), std::string::npos);
  // Nothing was changed by any of them.
  for (const auto& [name, weight] : weights_of(*c.transformer)) EXPECT_TRUE(weight.is_same(w.at(name))) << name;
  EXPECT_EQ(error_of([] { sana::parse_lora_spec("x.safetensors:11"); }),
            "lora: the scale of x.safetensors must be between -10 and 10, got 11");
  EXPECT_EQ(sana::parse_lora_spec("a:b.safetensors").path, "a:b.safetensors");
  EXPECT_DOUBLE_EQ(sana::parse_lora_spec("f.safetensors:-0.5").scale, -0.5);
}
