// The training commands end to end on a tiny shapes world: data -> DC-AE -> tokenizer + Gemma-2 -> cache -> flow
// teacher -> distilled student, with the identities they must satisfy: deterministic data order, resume equals an
// uninterrupted run, the student starts exactly as the teacher, the exported folders load and generate.
#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <set>

#include "sana/diffusion/trigflow.h"
#include "sana/error.h"
#include "sana/frontend/generation_params.h"
#include "sana/io/config.h"
#include "sana/io/image.h"
#include "sana/models/sana_controlnet.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/pipeline/sana.h"
#include "sana/pipeline/sana_sprint.h"
#include "sana/shapes/world.h"
#include "sana/text/prompt.h"
#include "sana/text/tokenizer.h"
#include "sana/train/lm_pretrain.h"
#include "sana/train/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Scenes 0..n-1 of seed 7 as an image-caption folder at `size` px (with scribbles when `control`); their captions.
std::vector<std::string> write_shapes_folder(const fs::path& data, int n, int size, bool control) {
  fs::create_directories(data);
  std::vector<std::string> captions;
  for (int i = 0; i < n; ++i) {
    const auto scene = sana::shapes::scene_for(7, i);
    char stem[16];
    std::snprintf(stem, sizeof(stem), "%04d", i);
    write((data / (std::string(stem) + ".txt")).string(), scene.caption + "\n");
    sana::save_png((data / (std::string(stem) + ".png")).string(), sana::shapes::render(scene, size));
    if (control)
      sana::save_png((data / (std::string(stem) + ".control.png")).string(),
                     sana::shapes::render_scribble(scene, size, 1.5));
    captions.push_back(scene.caption);
  }
  return captions;
}

std::vector<double> logged(const std::string& log, const std::string& key) {
  std::vector<double> v;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j.contains(key)) v.push_back(j[key].get<double>());
  }
  return v;
}

std::vector<std::string> logged_labels(const std::string& log, const std::string& key) {
  std::vector<std::string> v;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) v.push_back(json::parse(line).value(key, ""));
  return v;
}

// The flow loss of `transformer` (with ControlNet `cn`, if any) on the first 8 cached samples at fixed draws of s and
// the noise: the yardstick of the "it learns" tests.
double flow_loss_at_fixed_draws(const sana::SanaTransformer2DModel& transformer, const sana::LatentCache& cache,
                                const std::shared_ptr<sana::SanaControlNetModel>& cn) {
  at::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(9);
  const at::Tensor x0 = cache.latents.narrow(0, 0, 8), eps = at::randn(x0.sizes(), gen);
  const at::Tensor s = at::rand({8}, gen) * 0.8 + 0.1;
  sana::SanaTransformerInputs in;
  in.hidden_states = (1 - s.view({-1, 1, 1, 1})) * x0 + s.view({-1, 1, 1, 1}) * eps;
  in.timestep = s, in.encoder_hidden_states = cache.prompt_embeds.narrow(0, 0, 8);
  in.encoder_attention_mask = cache.prompt_attention_mask.narrow(0, 0, 8);
  const at::Tensor control = cache.control_latents.defined() ? cache.control_latents.narrow(0, 0, 8) : at::Tensor();
  const at::Tensor v = sana::sana_velocity(transformer, {cn, control, 1.0}, in);
  return (v - (eps - x0)).pow(2).mean().item<double>();
}

// One tiny world shared by the tests of this file (built once: data, VAE, text encoder, cache, teacher).
class TinyWorld : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new sana::test::TempDir();
    const auto& d = dir_->path();
    write_shapes_folder(d / "data", 48, 32, /*control=*/true);
    write((d / "vae.json").string(), R"({"latent_channels": 4, "attention_head_dim": 8,
      "encoder_block_types": ["ResBlock", "ResBlock", "EfficientViTBlock", "EfficientViTBlock"],
      "decoder_block_types": ["ResBlock", "ResBlock", "EfficientViTBlock", "EfficientViTBlock"],
      "encoder_block_out_channels": [8, 16, 32, 32], "decoder_block_out_channels": [8, 16, 32, 32],
      "encoder_layers_per_block": [1, 1, 1, 1], "decoder_layers_per_block": [1, 1, 1, 1],
      "encoder_qkv_multiscales": [[], [], [5], [5]], "decoder_qkv_multiscales": [[], [], [5], [5]],
      "upsample_block_type": "interpolate", "downsample_block_type": "Conv"})");
    write((d / "gemma.json").string(), R"({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
      "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "query_pre_attn_scalar": 16,
      "max_position_embeddings": 128})");
    write((d / "transformer.json").string(), R"({"in_channels": 4, "out_channels": 4, "num_attention_heads": 2,
      "attention_head_dim": 16, "num_layers": 2, "num_cross_attention_heads": 2, "cross_attention_head_dim": 16,
      "cross_attention_dim": 32, "caption_channels": 32, "sample_size": 4, "interpolation_scale": null,
      "qk_norm": "rms_norm_across_heads"})");

    sana::TrainOptions vae;
    vae.out = (d / "base" / "vae").string();
    vae.steps = 3, vae.batch_size = 8, vae.lr = 1e-3, vae.log_every = 100;
    sana::train_vae((d / "data").string(), (d / "vae.json").string(), vae);
    sana::make_text_encoder((d / "data").string(), (d / "gemma.json").string(), 300, 3, (d / "base").string());
    sana::CacheOptions cache;
    cache.data = (d / "data").string(), cache.base = (d / "base").string(), cache.out = (d / "cache").string();
    cache.batch_size = 16, cache.shard_size = 20;  // three shards
    cache.prompt.use_complex_human_instruction = false;
    cache.prompt.max_sequence_length = 16;
    sana::build_latent_cache(cache);
    sana::train_flow(flow_options(), train_options("teacher", 6));
  }
  static void TearDownTestSuite() { delete dir_; }

  // A copy of the tiny teacher's folder with random transformer weights in the reference fixtures' scheme
  // (nn::init_random, the cache's widths): unlike the barely trained tiny teacher, whose output projection is still
  // near zero, every path of it passes gradients on at full strength.
  static std::string random_teacher(const std::string& name) {
    const std::string base = path(name);
    fs::copy(path("teacher"), base, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    sana::SanaTransformer2DModel random(sana::load_sana_transformer_config(base + "/transformer/config.json"), at::kFloat);
    sana::nn::init_random(random, 0);
    sana::nn::save_state_dict(random, base + "/transformer/diffusion_pytorch_model.safetensors");
    return base;
  }
  static sana::FlowTrainOptions flow_options() {
    sana::FlowTrainOptions f;
    f.cache = path("cache"), f.base = path("base"), f.config = path("transformer.json");
    f.caption_dropout = 0.25;
    return f;
  }
  static sana::TrainOptions train_options(const std::string& out, int64_t steps) {
    sana::TrainOptions o;
    o.out = path(out);
    o.steps = steps, o.batch_size = 8, o.lr = 1e-3, o.log_every = 100, o.checkpoint_every = 3, o.seed = 5;
    o.ema_decay = 0.9;
    return o;
  }
  static sana::DistillOptions distill_options() {
    sana::DistillOptions d;
    d.teacher = path("teacher"), d.cache = path("cache");
    d.tangent_warmup = 4;
    return d;
  }
  static sana::ControlNetFlowOptions controlnet_options() {
    sana::ControlNetFlowOptions c;
    c.base = path("teacher"), c.cache = path("cache");
    c.num_layers = 1;
    return c;
  }
  static std::string path(const std::string& name) { return (dir_->path() / name).string(); }
  static sana::test::TempDir* dir_;
};
sana::test::TempDir* TinyWorld::dir_ = nullptr;

}  // namespace

TEST(Data, SampleIndexVisitsEveryItemOncePerEpochAndIsSeeded) {
  const int64_t n = 10, B = 4;
  std::vector<int64_t> seen;
  for (int64_t step = 0; step < 5; ++step)
    for (int64_t j = 0; j < B; ++j) seen.push_back(sana::sample_index(3, step, B, j, n));
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::set<int64_t> s(seen.begin() + epoch * n, seen.begin() + (epoch + 1) * n);
    EXPECT_EQ(s.size(), static_cast<size_t>(n)) << "epoch " << epoch;
  }
  EXPECT_NE(std::vector<int64_t>(seen.begin(), seen.begin() + n), std::vector<int64_t>(seen.begin() + n, seen.end()));
  int differ = 0;
  for (int64_t j = 0; j < n; ++j) differ += sana::sample_index(3, 0, n, j, n) != sana::sample_index(4, 0, n, j, n);
  EXPECT_GT(differ, 0);
}

TEST(Data, MissingInputsAreClearErrors) {
  sana::test::TempDir dir;
  try {
    sana::LatentCache::open(dir.path().string());
    FAIL();
  } catch (const sana::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cache_config.json"), std::string::npos) << e.what();
  }
  write(dir.file("a.png"), "");
  try {
    sana::ImageCaptionFolder::open(dir.path().string());
    FAIL();
  } catch (const sana::Error& e) {
    EXPECT_NE(std::string(e.what()).find("a.txt"), std::string::npos) << e.what();
  }
}

// Pretraining the text encoder as a language model on the captions: on captions it never saw, its next-token loss
// falls below the unigram entropy of those tokens (the best any model that ignores the context can do, counted here
// from the training captions), which the random encoder is far above.
TEST(TextEncoderPretraining, PredictsCaptionsBetterThanTokenFrequencies) {
  sana::test::TempDir dir;
  const auto& d = dir.path();
  const std::vector<std::string> train = write_shapes_folder(d / "data", 400, 8, /*control=*/false);
  write((d / "gemma.json").string(), R"({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "query_pre_attn_scalar": 16,
    "max_position_embeddings": 128})");
  sana::LmPretrainOptions o;
  o.steps = 300, o.batch_size = 32, o.lr = 3e-3, o.max_sequence_length = 64;
  sana::make_text_encoder((d / "data").string(), (d / "gemma.json").string(), 300, 3, (d / "random").string());
  sana::make_text_encoder((d / "data").string(), (d / "gemma.json").string(), 300, 3, (d / "lm").string(), false, o);
  EXPECT_TRUE(fs::exists(d / "lm" / "text_encoder" / "training" / "log.jsonl"));
  const auto tokenizer = sana::GemmaTokenizer::from_pretrained((d / "lm" / "tokenizer").string());

  // Unigram cross-entropy of unseen captions' tokens under the training captions' token frequencies (add-one).
  std::map<int, double> freq;
  double total = 0;
  for (const auto& c : train)
    for (int t : tokenizer.encode(sana::lower_strip(c))) freq[t] += 1, total += 1;
  std::vector<std::string> unseen;
  for (int i = 0; i < 300; ++i) unseen.push_back(sana::shapes::scene_for(99, i).caption);
  double unigram = 0, count = 0;
  for (const auto& c : unseen)
    for (int t : tokenizer.encode(sana::lower_strip(c)))
      unigram -= std::log((freq[t] + 1) / (total + tokenizer.vocab_size())), count += 1;
  unigram /= count;

  sana::PromptOptions p;
  p.use_complex_human_instruction = false;
  p.max_sequence_length = 64;
  const auto tok = sana::tokenize_prompts(tokenizer, unseen, p);
  ASSERT_EQ(tok.attention_mask.select(1, 63).sum().item<int64_t>(), 0) << "captions were truncated";
  auto loss_of = [&](const std::string& folder) {
    const auto model = sana::Gemma2Model::from_pretrained((d / folder / "text_encoder").string(), at::kFloat);
    at::NoGradGuard no_grad;
    return sana::lm_loss(*model, tok.input_ids, tok.attention_mask).item<double>();
  };
  const double random = loss_of("random"), trained = loss_of("lm");
  EXPECT_LT(trained, unigram - 0.3) << "unigram " << unigram << ", random " << random;
  EXPECT_GT(random, unigram) << "trained " << trained;
}

TEST_F(TinyWorld, CacheHoldsScaledLatentsAndTheEmptyPrompt) {
  const auto cache = sana::LatentCache::open(path("cache"));
  ASSERT_EQ(cache.size(), 48);
  EXPECT_EQ(cache.latents.sizes(), (std::vector<int64_t>{48, 4, 4, 4}));
  EXPECT_EQ(cache.prompt_embeds.sizes(), (std::vector<int64_t>{48, 16, 32}));
  EXPECT_EQ(cache.null_mask.sum().item<int64_t>(), 1);  // "" is <bos> only
  EXPECT_EQ(cache.captions[5], sana::shapes::scene_for(7, 5).caption);
  // scaling_factor = 1 / std of the latents (measured on the same images): the cached latents have unit std.
  EXPECT_NEAR(cache.latents.std().item<double>(), 1.0, 0.05);
}

TEST_F(TinyWorld, FlowTrainingResumeEqualsAnUninterruptedRun) {
  auto o = train_options("flow_resumed", 3);
  sana::train_flow(flow_options(), o);
  o.steps = 6, o.resume = true;
  sana::train_flow(flow_options(), o);
  const auto a = logged(path("teacher/training/log.jsonl"), "loss");
  const auto b = logged(path("flow_resumed/training/log.jsonl"), "loss");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6 * std::abs(a[i])) << "step " << i;
  // The exported weights (EMA) agree too.
  const auto ta = sana::Checkpoint::open(path("teacher/transformer/diffusion_pytorch_model.safetensors"));
  const auto tb = sana::Checkpoint::open(path("flow_resumed/transformer/diffusion_pytorch_model.safetensors"));
  for (const auto& name : ta.names()) EXPECT_CLOSE(tb.get(name), ta.get(name), 1e-6);
}

// A snapshot is what an export at its step would write (the EMA weights), and taking one leaves the training as it
// was: the same losses and final weights as the run without snapshots.
TEST_F(TinyWorld, SnapshotsAreTheExportAtTheirStepAndChangeNothing) {
  auto o = train_options("flow_snapshots", 6);
  o.snapshot_every = 3;
  sana::train_flow(flow_options(), o);
  sana::train_flow(flow_options(), train_options("flow_3", 3));
  const auto a = logged(path("teacher/training/log.jsonl"), "loss");
  const auto b = logged(path("flow_snapshots/training/log.jsonl"), "loss");
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "step " << i;
  const std::string weights = "transformer/diffusion_pytorch_model.safetensors";
  const fs::path snaps = path("flow_snapshots/training/snapshots");
  for (const auto& [snapshot, exported] : {std::pair{"step-3", "flow_3"}, {"step-6", "teacher"}, {"step-6", "flow_snapshots"}}) {
    SCOPED_TRACE(std::string(snapshot) + " against " + exported);
    const auto s = sana::Checkpoint::open((snaps / snapshot / weights).string());
    const auto e = sana::Checkpoint::open(path(std::string(exported) + "/" + weights));
    for (const auto& name : e.names()) EXPECT_CLOSE(s.get(name), e.get(name), 0.0);
    EXPECT_TRUE(fs::exists(snaps / snapshot / "model_index.json"));
  }
  for (const auto& e : fs::directory_iterator(snaps)) EXPECT_EQ(e.path().extension(), "") << e.path();
  // A command that writes no snapshots says so instead of ignoring the flag.
  sana::TrainOptions vae = train_options("vae_snapshots", 1);
  vae.snapshot_every = 1;
  EXPECT_THROW(sana::train_vae(path("data"), path("vae.json"), vae), sana::Error);
}

// `sana-sprint train` as two Gloo processes on loopback (torchrun-style variables), each with half of the global
// batch, exports the weights one process computes on the whole batch.
TEST_F(TinyWorld, TwoProcessTrainingEqualsOneProcess) {
  const int port = 28000 + (getpid() % 1000);  // test_distributed uses 29000-29999
  const std::string cmd = std::string(SANA_CLI) + " -t 1 train --cache " + path("cache") + " --base " + path("base") +
                          " --config " + path("transformer.json") + " -o " + path("ddp") +
                          " --steps 6 -b 8 --lr 1e-3 --log-every 100 --checkpoint-every 3 -s 5 --ema 0.9"
                          " --caption-dropout 0.25 2>>" + path("ddp.log");
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port);
  const std::string script = "(" + env + " RANK=0 LOCAL_RANK=0 " + cmd + ") & p0=$!; (" + env +
                             " RANK=1 LOCAL_RANK=1 " + cmd + ") & p1=$!; wait $p0 && wait $p1";
  ASSERT_EQ(std::system(("bash -c '" + script + "'").c_str()), 0) << sana::read_text_file(path("ddp.log"));
  const auto one = sana::Checkpoint::open(path("teacher/transformer/diffusion_pytorch_model.safetensors"));
  const auto two = sana::Checkpoint::open(path("ddp/transformer/diffusion_pytorch_model.safetensors"));
  for (const auto& name : one.names()) EXPECT_CLOSE(two.get(name), one.get(name), 2e-5);
  const auto a = logged(path("teacher/training/log.jsonl"), "loss");
  const auto b = logged(path("ddp/training/log.jsonl"), "loss");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * std::abs(a[i])) << "step " << i;
}

TEST_F(TinyWorld, TeacherFolderGeneratesTheFlowOdeSolution) {
  // One Euler step at guidance 1 is x0 = x1 - v(x1, s = 1): the pipeline's timestep convention (t = 1000 s times
  // timestep_scale 0.001) must hand the transformer s.
  const auto pipe = sana::SanaPipeline::from_pretrained(path("teacher"), at::kCPU, at::kFloat);
  sana::GenerateOptions o;
  o.prompts = {"a red circle"};
  o.height = o.width = 32;
  o.guidance_scale = 1.0;
  o.steps = 1;
  o.seed = 11;
  o.prompt.use_complex_human_instruction = false;
  o.prompt.max_sequence_length = 16;
  const auto r = pipe.generate(o);
  c10::InferenceMode guard;
  sana::SanaTransformerInputs in;
  in.hidden_states = r.initial_noise;
  in.encoder_hidden_states = r.prompt_embeds;
  in.encoder_attention_mask = r.prompt_attention_mask;
  in.timestep = at::ones({1});
  EXPECT_CLOSE(r.final_latents, r.initial_noise - pipe.components.transformer->forward(in), 1e-5);
  EXPECT_EQ(r.images.sizes(), (std::vector<int64_t>{1, 3, 32, 32}));
}

// The tiny preview decoder's trainer: a resumed run logs what an uninterrupted one logs, the export loads as the
// teacher's vae_tiny/ and decodes its latents at the VAE's size, and a decoder of another latent space is refused.
TEST_F(TinyWorld, TinyDecoderResumesExactlyAndDecodesThePipelinesLatents) {
  write(path("tiny.json"), R"({"_class_name": "AutoencoderTiny", "latent_channels": 4,
    "decoder_block_out_channels": [16, 8, 8, 8], "num_decoder_blocks": [1, 0, 0, 1]})");
  sana::TinyDecoderOptions t;
  t.cache = path("cache"), t.base = path("base"), t.config = path("tiny.json");
  sana::train_tiny_decoder(t, train_options("tiny_full", 6));
  auto o = train_options("tiny_resumed", 3);
  sana::train_tiny_decoder(t, o);
  o.steps = 6, o.resume = true;
  sana::train_tiny_decoder(t, o);
  const auto a = logged(path("tiny_full/training/log.jsonl"), "loss");
  const auto b = logged(path("tiny_resumed/training/log.jsonl"), "loss");
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(a, b);
  EXPECT_LT(a.back(), a.front());

  auto pipe = sana::SanaPipeline::from_pretrained(path("teacher"), at::kCPU, at::kFloat);
  pipe.components.attach_tiny_vae(path("tiny_full"), at::kFloat);
  sana::GenerateOptions g;
  g.prompts = {"a red circle"};
  g.height = g.width = 32;
  g.steps = 1;
  g.prompt.use_complex_human_instruction = false;
  g.prompt.max_sequence_length = 16;
  g.tiny_decode = true;
  const auto r = pipe.generate(g);
  EXPECT_EQ(r.images.sizes(), (std::vector<int64_t>{1, 3, 32, 32}));

  write(path("tiny16.json"), R"({"latent_channels": 16, "decoder_block_out_channels": [8, 8, 8, 8],
    "num_decoder_blocks": [1, 1, 1, 1]})");
  t.config = path("tiny16.json");
  EXPECT_NE(sana::test::error_of([&] { sana::train_tiny_decoder(t, train_options("tiny16", 2)); }).find("tiny16.json"),
            std::string::npos);
}

// train-lora --objective flow: a resumed run logs what an uninterrupted one logs; the file has diffusers' PEFT names and
// shapes (rank 4 on to_q, to_k, to_v of both attentions of every block) and loads through --lora's path; trained at a
// high rate it lowers the teacher's flow loss at fixed draws; a Sprint folder and unknown targets are refused.
TEST_F(TinyWorld, LoraLearnsTheFlowLossResumesExactlyAndLoadsAsALoraFile) {
  const std::string base = random_teacher("lora_base");
  sana::LoraTrainOptions l;
  l.base = base, l.cache = path("cache");
  sana::train_lora(l, train_options("lora_full", 6));
  auto o = train_options("lora_resumed", 3);
  sana::train_lora(l, o);
  o.steps = 6, o.resume = true;
  sana::train_lora(l, o);
  EXPECT_EQ(logged(path("lora_full/training/log.jsonl"), "loss"), logged(path("lora_resumed/training/log.jsonl"), "loss"));

  const std::string file = path("lora_full/pytorch_lora_weights.safetensors");
  const auto tensors = sana::Checkpoint::open(file);
  const auto cfg = sana::load_sana_transformer_config(base + "/transformer/config.json");
  const int64_t inner = cfg.inner_dim(), cross_in = cfg.cross_attention_dim;
  EXPECT_EQ(tensors.names().size(), static_cast<size_t>(cfg.num_layers * 2 * 3 * 2));
  for (int b = 0; b < cfg.num_layers; ++b)
    for (const char* attn : {"attn1", "attn2"})
      for (const char* m : {"to_q", "to_k", "to_v"}) {
        const std::string p = "transformer.transformer_blocks." + std::to_string(b) + "." + attn + "." + m;
        const int64_t in = std::string(attn) == "attn2" && std::string(m) != "to_q" ? cross_in : inner;
        ASSERT_TRUE(tensors.contains(p + ".lora_A.weight")) << p;
        EXPECT_EQ(tensors.get(p + ".lora_A.weight").sizes(), (std::vector<int64_t>{4, in}));
        EXPECT_EQ(tensors.get(p + ".lora_B.weight").size(1), 4);
      }

  auto fit = train_options("lora_fit", 60);
  fit.lr = 1e-2, fit.ema_decay = 0, fit.checkpoint_every = 1000, fit.sample_every = -1;
  l.caption_dropout = 0;
  sana::train_lora(l, fit);
  const auto cache = sana::LatentCache::open(path("cache"));
  auto pipe = sana::SanaPipeline::from_pretrained(base, at::kCPU, at::kFloat);
  const double before = flow_loss_at_fixed_draws(*pipe.components.transformer, cache, nullptr);
  pipe.components.apply_lora({path("lora_fit/pytorch_lora_weights.safetensors"), 1.0});
  const double after = flow_loss_at_fixed_draws(*pipe.components.transformer, cache, nullptr);
  EXPECT_LT(after, before * 0.6) << "flow loss at fixed draws: before " << before << ", with the LoRA " << after;

  l.target_modules = {"to_nothing"};
  EXPECT_NE(sana::test::error_of([&] { sana::train_lora(l, train_options("lora_bad", 1)); }).find("--target-modules"),
            std::string::npos);
}

// train-lora --objective distill: LoRA adapters on a frozen Sprint student, distilled (sCM + LADD) from the teacher
// with its own LoRA fused. A resumed run logs what an uninterrupted one logs; the file holds only the adapters, in
// diffusers' PEFT names, and loads through --lora's path; the teacher's LoRA is in effect (it changes the sCM loss of
// the same draws); trained, the student's LoRA brings its TrigFlow F toward the teacher-with-LoRA's.
TEST_F(TinyWorld, SprintLoraDistilsFromTheTeacherWithItsLora) {
  sana::LoraTrainOptions flow;
  flow.base = path("teacher"), flow.cache = path("cache");
  auto fo = train_options("lora_teacher", 30);
  fo.lr = 1e-2, fo.ema_decay = 0, fo.sample_every = -1;
  sana::train_lora(flow, fo);
  const std::string teacher_lora = path("lora_teacher/pytorch_lora_weights.safetensors");
  sana::distill(distill_options(), train_options("lora_student_base", 0));

  const auto options = [&](const std::string& loss, bool with_teacher_lora) {
    auto d = distill_options();
    d.loss = loss;
    d.student = path("lora_student_base");
    d.lora_rank = 4;
    if (with_teacher_lora) d.teacher_loras = {teacher_lora};
    return d;
  };
  sana::distill(options("hybrid", true), train_options("lora_sprint_full", 6));
  auto o = train_options("lora_sprint_resumed", 3);
  sana::distill(options("hybrid", true), o);
  o.steps = 6, o.resume = true;
  sana::distill(options("hybrid", true), o);
  for (const char* key : {"loss_scm", "loss_adv", "loss_d"})
    EXPECT_EQ(logged(path("lora_sprint_full/training/log.jsonl"), key),
              logged(path("lora_sprint_resumed/training/log.jsonl"), key)) << key;
  // Only the adapters are exported, named as diffusers writes them.
  const auto file = sana::Checkpoint::open(path("lora_sprint_full/pytorch_lora_weights.safetensors"));
  const auto cfg = sana::load_sana_transformer_config(path("lora_student_base/transformer/config.json"));
  EXPECT_EQ(file.names().size(), static_cast<size_t>(cfg.num_layers * 2 * 3 * 2));
  for (const auto& name : file.names()) EXPECT_NE(name.find(".lora_"), std::string::npos) << name;
  // The teacher's LoRA changes the target: the first sCM loss of the same draws differs without it.
  sana::distill(options("scm", false), train_options("lora_sprint_plain", 1));
  sana::distill(options("scm", true), train_options("lora_sprint_target", 1));
  EXPECT_NE(logged(path("lora_sprint_plain/training/log.jsonl"), "loss_scm"),
            logged(path("lora_sprint_target/training/log.jsonl"), "loss_scm"));

  // Trained (sCM, a high rate), the student's LoRA moves its F toward the teacher-with-LoRA's at fixed draws.
  auto fit = train_options("lora_sprint_fit", 40);
  fit.lr = 1e-2, fit.ema_decay = 0, fit.sample_every = -1, fit.checkpoint_every = 1000;
  sana::distill(options("scm", true), fit);
  auto teacher = sana::SanaPipeline::from_pretrained(path("teacher"), at::kCPU, at::kFloat);
  teacher.components.apply_lora({teacher_lora, 1.0});
  auto student = sana::SanaSprintPipeline::from_pretrained(path("lora_student_base"), at::kCPU, at::kFloat);
  const auto cache = sana::LatentCache::open(path("cache"));
  c10::InferenceMode guard;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor x = at::randn({4, 4, 4, 4}, gen), t = at::tensor({0.2f, 0.7f, 1.1f, 1.5f});
  sana::SanaTransformerInputs cond;
  cond.encoder_hidden_states = cache.prompt_embeds.narrow(0, 0, 4);
  cond.encoder_attention_mask = cache.prompt_attention_mask.narrow(0, 0, 4);
  const at::Tensor target = sana::SanaTrigFlow(teacher.components.transformer).forward(x, t, cond);
  cond.guidance = at::full({4}, 0.45);
  const auto distance = [&] {
    return (sana::SanaTrigFlow(student.components.transformer).forward(x, t, cond) - target).pow(2).mean().item<double>();
  };
  const double before = distance();
  student.components.apply_lora({path("lora_sprint_fit/pytorch_lora_weights.safetensors"), 1.0});
  const double after = distance();
  EXPECT_LT(after, before / 4) << "mean squared distance to the teacher-with-LoRA's F: without the LoRA " << before
                           << ", with it " << after;
}

TEST_F(TinyWorld, StudentStartsAsTheTeacherAndExportsALoadableSprintPipeline) {
  auto o = train_options("student0", 0);
  auto d = distill_options();
  d.intermediate_timesteps = 1.0;
  sana::distill(d, o);
  // The 2-step middle time reaches `generate` through the folder's defaults (and a given value still wins).
  sana::GenerationParams params;
  params.model = path("student0");
  sana::apply_model_defaults(params, {});
  EXPECT_EQ(params.intermediate_timesteps, 1.0);
  EXPECT_EQ(params.steps, 1);
  params.intermediate_timesteps = 1.2;
  sana::apply_model_defaults(params, {"intermediate_timesteps"});
  EXPECT_EQ(params.intermediate_timesteps, 1.2);
  const auto teacher = sana::SanaTransformer2DModel::from_pretrained(path("teacher/transformer"), at::kFloat);
  const auto pipe = sana::SanaSprintPipeline::from_pretrained(path("student0"), at::kCPU, at::kFloat);
  c10::InferenceMode guard;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const at::Tensor x = at::randn({2, 4, 4, 4}, gen), t = at::tensor({0.3f, 1.5f});
  const auto cache = sana::LatentCache::open(path("cache"));
  sana::SanaTransformerInputs cond;
  cond.encoder_hidden_states = cache.prompt_embeds.narrow(0, 0, 2);
  cond.encoder_attention_mask = cache.prompt_attention_mask.narrow(0, 0, 2);
  const at::Tensor F_teacher = sana::SanaTrigFlow(teacher).forward(x, t, cond);
  cond.guidance = at::full({2}, 0.45);
  EXPECT_CLOSE(sana::SanaTrigFlow(pipe.components.transformer).forward(x, t, cond), F_teacher, 1e-5);

  sana::GenerateOptions g;
  g.prompts = {"two red circles above a blue square"};
  g.height = g.width = 32;
  g.steps = 1;
  g.prompt.use_complex_human_instruction = false;
  g.prompt.max_sequence_length = 16;
  const auto r = pipe.generate(g);
  EXPECT_EQ(r.images.sizes(), (std::vector<int64_t>{1, 3, 32, 32}));
  EXPECT_TRUE(at::isfinite(r.images).all().item<bool>());
}

TEST_F(TinyWorld, HybridDistillationResumeEqualsAnUninterruptedRun) {
  auto o = train_options("student_full", 6);
  sana::distill(distill_options(), o);
  o = train_options("student_resumed", 3);
  sana::distill(distill_options(), o);
  o.steps = 6, o.resume = true;
  sana::distill(distill_options(), o);
  for (const char* key : {"loss_scm", "loss_adv", "loss_d", "grad_norm_g"}) {
    const auto a = logged(path("student_full/training/log.jsonl"), key);
    const auto b = logged(path("student_resumed/training/log.jsonl"), key);
    ASSERT_EQ(a.size(), 3u) << key;
    ASSERT_EQ(b.size(), a.size()) << key;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6 * (1 + std::abs(a[i]))) << key << " " << i;
  }
  // G and D alternate: iterations 0, 2, 4 are G steps, 1, 3, 5 D steps.
  const auto phases = logged_labels(path("student_full/training/log.jsonl"), "phase");
  EXPECT_EQ(phases, (std::vector<std::string>{"G", "D", "G", "D", "G", "D"}));
}

TEST_F(TinyWorld, AblationLossesRunAndBadOptionsAreErrors) {
  for (const std::string loss : {"scm", "ladd"}) {
    auto o = train_options("student_" + loss, 2);
    auto d = distill_options();
    d.loss = loss;
    sana::distill(d, o);
    const auto log = path("student_" + loss + "/training/log.jsonl");
    if (loss == "scm") {
      EXPECT_EQ(logged(log, "loss_d").size(), 0u);  // no discriminator
      EXPECT_EQ(logged(log, "loss_scm").size(), 2u);
    } else {
      EXPECT_EQ(logged(log, "loss_d").size(), 1u);
      EXPECT_EQ(logged(log, "loss_scm")[0], 0.0);
    }
  }
  auto d = distill_options();
  d.loss = "gan";
  EXPECT_THROW(sana::distill(d, train_options("bad", 1)), sana::Error);
  d = distill_options();
  d.head_block_ids = {7};
  EXPECT_THROW(sana::distill(d, train_options("bad", 1)), sana::Error);
  for (double t : {0.0, 1.6}) {  // the middle time must lie inside the schedule (0, pi/2)
    d = distill_options();
    d.intermediate_timesteps = t;
    EXPECT_THROW(sana::distill(d, train_options("bad", 1)), sana::Error) << t;
  }
  auto f = flow_options();
  f.config = path("vae.json");  // wrong kind of config: in_channels 3 vs 4 latent channels
  EXPECT_THROW(sana::train_flow(f, train_options("bad", 1)), sana::Error);
}

// A checkpoint records the options that shape the run: resuming with another --loss or other head blocks is
// refused with each difference named; a checkpoint whose step is not a plain integer is refused.
TEST_F(TinyWorld, ResumeRefusesChangedOptionsAndMalformedSteps) {
  auto o = train_options("student_opts", 3);
  sana::distill(distill_options(), o);
  o.steps = 4, o.resume = true;
  auto d = distill_options();
  d.loss = "scm";
  d.head_block_ids = {0};
  try {
    sana::distill(d, o);
    FAIL() << "resume with changed options was accepted";
  } catch (const sana::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("loss was \"hybrid\", now \"scm\""), std::string::npos) << m;
    EXPECT_NE(m.find("head_blocks"), std::string::npos) << m;
  }
  const std::string ckpt = path("student_opts/training/checkpoint.safetensors");
  for (const std::string step : {"1e3", "-5", ""}) {
    const auto f = sana::SafetensorsFile::open(ckpt);
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [name, info] : f->tensors()) tensors.emplace_back(name, f->get(name).clone());
    auto meta = f->metadata();
    meta["step"] = step;
    sana::save_safetensors(path("bad_step.safetensors"), tensors, meta);
    fs::create_directories(path("bad_step_run/training"));
    fs::copy_file(path("bad_step.safetensors"), path("bad_step_run/training/checkpoint.safetensors"),
                  fs::copy_options::overwrite_existing);
    auto ob = train_options("bad_step_run", 4);
    ob.resume = true;
    EXPECT_THROW(sana::distill(distill_options(), ob), sana::Error) << "step '" << step << "'";
  }
}

// The cache carries the control images' latents (the folder has NAME.control.png beside every image).
TEST_F(TinyWorld, CacheHoldsControlLatents) {
  const auto cache = sana::LatentCache::open(path("cache"));
  ASSERT_TRUE(cache.control_latents.defined());
  EXPECT_EQ(cache.control_latents.sizes(), cache.latents.sizes());
  EXPECT_GT((cache.control_latents - cache.latents).abs().mean().item<double>(), 0.1);  // not the images again
}

// train-controlnet --objective flow: at step 0 the exported ControlNet leaves the teacher's image bit-identical (zero
// projections); a resumed run logs what an uninterrupted one logs; and on a handful of triples the loss measured at
// fixed draws falls.
TEST_F(TinyWorld, ControlNetFlowTrainingStartsAsIdentityResumesAndLearns) {
  sana::train_controlnet_flow(controlnet_options(), train_options("cn0", 0));
  auto pipe = sana::SanaPipeline::from_pretrained(path("teacher"), at::kCPU, at::kFloat);
  sana::GenerateOptions g;
  g.prompts = {"a red circle"};
  g.height = g.width = 32, g.steps = 3, g.seed = 2;
  g.prompt.use_complex_human_instruction = false, g.prompt.max_sequence_length = 16;
  const at::Tensor plain = pipe.generate(g).images;
  pipe.components.attach_controlnet(path("cn0"), at::kFloat);
  g.control_image = sana::load_png(path("data/0003.control.png"));
  EXPECT_TRUE(at::equal(pipe.generate(g).images, plain));

  auto o = train_options("cn_full", 6);
  sana::train_controlnet_flow(controlnet_options(), o);
  o = train_options("cn_resumed", 3);
  sana::train_controlnet_flow(controlnet_options(), o);
  o.steps = 6, o.resume = true;
  sana::train_controlnet_flow(controlnet_options(), o);
  const auto a = logged(path("cn_full/training/log.jsonl"), "loss");
  const auto b = logged(path("cn_resumed/training/log.jsonl"), "loss");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6 * std::abs(a[i])) << "step " << i;
}

TEST_F(TinyWorld, ControlNetOverfitsAHandfulOfTriples) {
  // 8 triples, many steps at a high rate: the flow loss at fixed draws on those triples falls by at least 4x. The
  // base has random weights (random_teacher): it passes the ControlNet's residuals on at full strength.
  const std::string base = random_teacher("random_base");
  const auto cache = sana::LatentCache::open(path("cache"));
  const auto teacher = sana::SanaTransformer2DModel::from_pretrained(base + "/transformer", at::kFloat);
  const auto loss_with = [&](const std::shared_ptr<sana::SanaControlNetModel>& cn) {
    return flow_loss_at_fixed_draws(*teacher, cache, cn);
  };
  const double before = loss_with(nullptr);
  // A cache of the first 8 triples only.
  fs::create_directories(path("cache8"));
  for (const char* f : {"null.safetensors", "captions.txt"}) fs::copy_file(path("cache") + "/" + f, path("cache8") + "/" + f);
  sana::save_safetensors(path("cache8/shard-00000.safetensors"),
                         {{"latents", cache.latents.narrow(0, 0, 8).contiguous()},
                          {"prompt_embeds", cache.prompt_embeds.narrow(0, 0, 8).contiguous()},
                          {"prompt_attention_mask", cache.prompt_attention_mask.narrow(0, 0, 8).contiguous()},
                          {"control_latents", cache.control_latents.narrow(0, 0, 8).contiguous()}});
  auto cfg = json::parse(sana::read_text_file(path("cache/cache_config.json")));
  cfg["shards"] = {"shard-00000.safetensors"};
  write(path("cache8/cache_config.json"), cfg.dump());
  std::vector<std::string> caps(cache.captions.begin(), cache.captions.begin() + 8);
  std::string text;
  for (const auto& c : caps) text += c + "\n";
  write(path("cache8/captions.txt"), text);
  auto c = controlnet_options();
  c.base = base, c.cache = path("cache8"), c.caption_dropout = 0, c.num_layers = 2;
  auto o = train_options("cn_overfit", 150);
  o.lr = 2e-3, o.ema_decay = 0, o.checkpoint_every = 1000, o.log_every = 10, o.sample_every = -1;
  sana::train_controlnet_flow(c, o);
  const auto cn = sana::SanaControlNetModel::from_pretrained(path("cn_overfit"), at::kFloat);
  const double after = loss_with(cn);
  EXPECT_LT(after, before / 4) << "flow loss at fixed draws: before " << before << ", after " << after;
}

// train-controlnet --objective distill at 0 iterations: the student with its ControlNet (made from the teacher's)
// is exactly the TrigFlow view of the teacher with its ControlNet.
TEST_F(TinyWorld, StudentControlNetStartsAsTheTeachers) {
  sana::train_controlnet_flow(controlnet_options(), train_options("cn_teacher", 4));
  sana::distill(distill_options(), train_options("student_base", 0));
  auto d = distill_options();
  d.teacher_controlnet = path("cn_teacher");
  d.student = path("student_base");
  sana::distill(d, train_options("cn_student", 0));
  const auto teacher = sana::SanaTransformer2DModel::from_pretrained(path("teacher/transformer"), at::kFloat);
  const auto teacher_cn = sana::SanaControlNetModel::from_pretrained(path("cn_teacher"), at::kFloat);
  const auto student = sana::SanaTransformer2DModel::from_pretrained(path("student_base/transformer"), at::kFloat);
  const auto student_cn = sana::SanaControlNetModel::from_pretrained(path("cn_student"), at::kFloat);
  EXPECT_TRUE(student_cn->config().guidance_embeds);
  const auto cache = sana::LatentCache::open(path("cache"));
  c10::InferenceMode guard;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor x = at::randn({2, 4, 4, 4}, gen), t = at::tensor({0.4f, 1.3f});
  const at::Tensor control = cache.control_latents.narrow(0, 0, 2);
  sana::SanaTransformerInputs cond;
  cond.encoder_hidden_states = cache.prompt_embeds.narrow(0, 0, 2);
  cond.encoder_attention_mask = cache.prompt_attention_mask.narrow(0, 0, 2);
  const at::Tensor F_teacher = sana::SanaTrigFlow(teacher, {teacher_cn, control, 1.0}).forward(x, t, cond);
  const at::Tensor F_plain = sana::SanaTrigFlow(teacher).forward(x, t, cond);
  cond.guidance = at::full({2}, 0.45);
  const at::Tensor F_student = sana::SanaTrigFlow(student, {student_cn, control, 1.0}).forward(x, t, cond);
  EXPECT_CLOSE(F_student, F_teacher, 1e-5);
  EXPECT_GT(sana::test::max_abs_diff(F_teacher, F_plain), 1e-4)
      << "the trained ControlNet should change F";
}
