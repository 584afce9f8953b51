// The SanaSprintPipeline fixture (diffusers, random tiny weights) reproduced from the directory on disk: tokens,
// prompt embeddings, schedule, noise, every step's x0, the decoded image (float <= 1e-4, uint8 within 1/255).
#include <nlohmann/json.hpp>

#include <fstream>

#include "sana/error.h"
#include "sana/frontend/generation_params.h"
#include "sana/pipeline/pipeline.h"
#include "sana/pipeline/prompt_encoding.h"
#include "sana/pipeline/sana.h"
#include "sana/pipeline/sana_sprint.h"
#include "sana/pipeline/resolution.h"
#include "sana/shapes/eval.h"
#include "sana/shapes/world.h"
#include "test_util.h"

using sana::test::fixture;
using sana::test::unpadded;

namespace {

struct Case {
  std::string name;
  std::vector<std::string> prompts;
  uint64_t seed;
  int steps, hw;
};

std::vector<Case> cases_of(const sana::SafetensorsFile& ref) {
  std::vector<Case> out;
  for (const auto& [name, text] : ref.metadata()) {
    if (name == "format") continue;
    const auto j = nlohmann::json::parse(text);
    out.push_back({name, j["prompt"].get<std::vector<std::string>>(), j["seed"].get<uint64_t>(), j["steps"].get<int>(),
                   j["hw"].get<int>()});
  }
  return out;
}

sana::GenerateOptions options_of(const Case& c) {
  sana::GenerateOptions o;
  o.prompts = c.prompts;
  o.seed = c.seed;
  o.height = o.width = c.hw;
  o.steps = c.steps;
  if (c.steps == 2) o.intermediate_timesteps = 1.3;  // the pipeline default for 2 steps
  o.resolution_binning = false;
  return o;
}

}  // namespace

class PipelineFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pipe_ = new sana::SanaSprintPipeline(
        sana::SanaSprintPipeline::from_pretrained(fixture("pipeline_sprint_tiny"), sana::test::test_device(),
                                                  at::kFloat));
    ref_ = sana::SafetensorsFile::open(fixture("pipeline_sprint_tiny/expected.safetensors"));
  }
  static void TearDownTestSuite() { delete pipe_; }
  static sana::SanaSprintPipeline* pipe_;
  static std::shared_ptr<const sana::SafetensorsFile> ref_;
};
sana::SanaSprintPipeline* PipelineFixture::pipe_ = nullptr;
std::shared_ptr<const sana::SafetensorsFile> PipelineFixture::ref_;

TEST_F(PipelineFixture, TokenizationWithComplexHumanInstruction) {
  const auto cases = cases_of(*ref_);
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto tok = sana::tokenize_prompts(*pipe_->components.tokenizer, c.prompts, {});
    EXPECT_TRUE(at::equal(tok.input_ids, ref_->get(c.name + ".input_ids_full")));
    EXPECT_TRUE(at::equal(tok.attention_mask, ref_->get(c.name + ".attention_mask_full")));
  }
}

// The instruction prefix from the cache, then only each prompt's tokens: the embeddings at the unpadded positions
// equal the whole padded forward's (fp32), padded positions are zero and the mask is the same. Prompts of different lengths in one batch, with and without the instruction, an empty one, one that
// starts with punctuation (its first tokens may merge with the instruction's last ones) and one past the length limit.
TEST_F(PipelineFixture, PrefixCacheEqualsTheWholeTextEncoderForward) {
  const auto& c = pipe_->components;
  std::string long_prompt;
  for (int i = 0; i < 150; ++i) long_prompt += "word" + std::to_string(i) + " ";
  const std::vector<std::string> prompts = {"a red circle above a blue square", "", ":) -- odd start", "cat",
                                            long_prompt};
  sana::TextEncoderPrefixCache cache;
  for (bool chi : {true, false}) {
    SCOPED_TRACE(chi ? "with the instruction" : "without");
    sana::PromptOptions po;
    po.use_complex_human_instruction = chi;
    const auto [whole, whole_mask] = sana::encode_prompt_with(*c.tokenizer, *c.text_encoder, prompts, po, c.device);
    const auto [cached, mask] = sana::encode_prompt_with(*c.tokenizer, *c.text_encoder, prompts, po, c.device, &cache);
    EXPECT_TRUE(at::equal(mask, whole_mask));
    EXPECT_CLOSE(cached, unpadded(whole, mask), 1e-5);
    EXPECT_EQ(at::count_nonzero(cached.masked_select(mask.unsqueeze(-1).expand_as(cached) == 0)).item<int64_t>(), 0);
  }
}

// Cutting the trailing padding before the transformer changes nothing: padded keys get zero weight.
TEST_F(PipelineFixture, DroppingPaddingLeavesTheTransformerOutput) {
  const auto& c = pipe_->components;
  const auto [embeds, mask] = pipe_->encode_prompt({"a red circle", "a much longer prompt about a green triangle"}, {});
  const auto [cut, cut_mask] = sana::without_padding(embeds, mask);
  ASSERT_LT(cut.size(1), embeds.size(1));
  EXPECT_EQ(cut_mask.sum().item<int64_t>(), mask.sum().item<int64_t>());
  const auto& tc = c.transformer->config();
  sana::SanaTransformerInputs in;
  in.hidden_states = at::randn({2, tc.in_channels, 4, 4}).to(c.device);
  in.timestep = at::full({2}, 0.7).to(c.device);
  if (tc.guidance_embeds) in.guidance = at::full({2}, 4.5).to(c.device);
  in.encoder_hidden_states = embeds, in.encoder_attention_mask = mask;
  const at::Tensor full_out = c.transformer->forward(in);
  in.encoder_hidden_states = cut, in.encoder_attention_mask = cut_mask;
  EXPECT_CLOSE(c.transformer->forward(in), full_out, 1e-5);
}

// bf16 end to end (weights, activations, the decoder) against the fp32 reference of every case: the latents' relative
// error and the image's PSNR stay within the bounds docs/PERFORMANCE.md states for this fixture.
TEST_F(PipelineFixture, Bf16StaysCloseToTheFp32Reference) {
  const auto bf16 =
      sana::SanaSprintPipeline::from_pretrained(fixture("pipeline_sprint_tiny"), sana::test::test_device(), at::kBFloat16);
  for (const auto& c : cases_of(*ref_)) {
    SCOPED_TRACE(c.name);
    const auto r = bf16.generate(options_of(c));
    const at::Tensor latents = ref_->get(c.name + ".final_latents");
    const double rel = ((r.final_latents.cpu().to(at::kFloat) - latents).norm() / latents.norm()).item<double>();
    const double mse = (r.images.cpu() - ref_->get(c.name + ".image")).pow(2).mean().item<double>();
    const double psnr = 10 * std::log10(1.0 / std::max(mse, 1e-12));
    std::printf("  %s: latents relative error %.4f, image PSNR %.1f dB\n", c.name.c_str(), rel, psnr);
    EXPECT_LE(rel, 0.03);
    EXPECT_GE(psnr, 40.0);
  }
}

TEST_F(PipelineFixture, ReproducesEveryCase) {
  for (const auto& c : cases_of(*ref_)) {
    SCOPED_TRACE(c.name);
    const std::string p = c.name + ".";
    const auto r = pipe_->generate(options_of(c));
    EXPECT_CLOSE(r.prompt_embeds, unpadded(ref_->get(p + "prompt_embeds"), r.prompt_attention_mask), 1e-4);
    EXPECT_TRUE(sana::test::same(r.prompt_attention_mask, ref_->get(p + "prompt_attention_mask")));
    EXPECT_TRUE(sana::test::same(r.timesteps, ref_->get(p + "timesteps")));
    EXPECT_TRUE(sana::test::same(r.initial_noise, ref_->get(p + "initial_noise"))) << "noise must be bit-identical";
    ASSERT_EQ(static_cast<int>(r.denoised.size()), c.steps);
    for (int i = 0; i < c.steps; ++i)
      EXPECT_CLOSE(r.denoised[i], ref_->get(p + "step" + std::to_string(i) + ".denoised"), 1e-4);
    EXPECT_CLOSE(r.final_latents, ref_->get(p + "final_latents"), 1e-4);
    EXPECT_CLOSE(r.vae_decoded, ref_->get(p + "vae_decoded"), 1e-4);
    const at::Tensor image = ref_->get(p + "image");
    EXPECT_CLOSE(r.images, image, 1e-4);
    // uint8 as numpy's round-half-even of x * 255.
    const at::Tensor u8 = at::round(r.images.cpu() * 255).to(at::kInt), ref_u8 = at::round(image * 255).to(at::kInt);
    EXPECT_LE((u8 - ref_u8).abs().max().item<int>(), 1);
  }
}

TEST(Prompt, LowerStripIsUnicodeAware) {
  EXPECT_EQ(sana::lower_strip("  A Red CIRCLE\n"), "a red circle");
  EXPECT_EQ(sana::lower_strip("\u00C9T\u00C9 \u0394\u0399\u039F"), "\u00E9t\u00E9 \u03B4\u03B9\u03BF");
  EXPECT_EQ(sana::lower_strip("\t\u3000x\u3000"), "x");
}

TEST(Pipeline, ResolutionBins) {
  EXPECT_EQ(sana::closest_1024_bin(1024, 1024), std::make_pair(1024, 1024));
  EXPECT_EQ(sana::closest_1024_bin(512, 512), std::make_pair(1024, 1024));
  EXPECT_EQ(sana::closest_1024_bin(768, 1344), std::make_pair(768, 1344));
  EXPECT_EQ(sana::closest_1024_bin(1000, 500), std::make_pair(1408, 704));
}

TEST(Pipeline, MissingComponentIsNamed) {
  sana::test::TempDir dir;
  std::filesystem::copy_file(fixture("pipeline_sprint_tiny/model_index.json"), dir.file("model_index.json"));
  try {
    sana::SanaSprintPipeline::from_pretrained(dir.path().string(), at::kCPU, at::kFloat);
    FAIL();
  } catch (const sana::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer/"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, FastTokenizerOnlyIsAClearError) {
  sana::test::TempDir dir;
  std::ofstream(dir.file("tokenizer.json")) << "{}";
  try {
    sana::GemmaTokenizer::from_pretrained(dir.path().string());
    FAIL();
  } catch (const sana::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tokenizer.model"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, EncodesWithBosAndRoundTrips) {
  const auto tok = sana::GemmaTokenizer::from_pretrained(fixture("pipeline_sprint_tiny/tokenizer"));
  const auto ids = tok.encode("a red circle above a blue square");
  ASSERT_GT(ids.size(), 2u);
  EXPECT_EQ(ids[0], tok.bos_id());
  EXPECT_EQ(tok.decode(std::vector<int>(ids.begin() + 1, ids.end())), "a red circle above a blue square");
}

// train_sentencepiece with the fixture tokenizer's recorded spm_train flags reproduces that tokenizer: the same ids
// for the captions and the complex human instruction.
TEST(Tokenizer, TrainingReproducesTheFixtureTokenizer) {
  sana::test::TempDir dir;
  const std::string captions = fixture("pipeline_sprint_tiny/tokenizer/spm_training_captions.txt");
  // The recorded command's flags, with this run's input and output.
  std::ifstream command_file(fixture("pipeline_sprint_tiny/tokenizer/spm_train_command.txt"));
  std::vector<std::string> flags = {"--input=" + captions, "--model_prefix=" + dir.file("tokenizer")};
  for (std::string word; command_file >> word;) {
    if (!word.empty() && word.back() == ')') word.pop_back();
    if (word.rfind("--", 0) == 0 && word.rfind("--input=", 0) != 0 && word.rfind("--model_prefix=", 0) != 0)
      flags.push_back(word);
  }
  ASSERT_GT(flags.size(), 2u);
  sana::train_sentencepiece(flags);
  const auto trained = sana::GemmaTokenizer::from_model_file(dir.file("tokenizer.model"));
  const auto reference = sana::GemmaTokenizer::from_pretrained(fixture("pipeline_sprint_tiny/tokenizer"));
  EXPECT_EQ(trained.vocab_size(), reference.vocab_size());
  for (const std::string& text : {std::string("a red circle above a blue square"), sana::default_complex_human_instruction()})
    EXPECT_EQ(trained.encode(text), reference.encode(text));
  EXPECT_THROW(sana::train_sentencepiece({"--input=/no/such/file", "--model_prefix=" + dir.file("x")}), sana::Error);
}

// The shipped shapes models (models/): they load by the default path, generate at their defaults' size, and the
// student agrees with its teacher: the student's image from seed s is closer to the teacher's image from seed s (the
// same initial noise) than to the teacher's image from another seed, and its ShapesEval score is not far below the
// teacher's on the same prompts.
// A VAE of its own dtype (--dtype auto's per-stage choice): a bf16 pipeline with an fp32 VAE draws the all-bf16
// pipeline's picture (the same latents; only the decode's rounding differs).
TEST(ShippedModels, VaeInItsOwnDtype) {
  const std::string dir = std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes";
  sana::PipelineLoadOptions mixed;
  mixed.vae_dtype = at::kFloat;
  const auto a = sana::load_pipeline(dir, at::kCPU, at::kBFloat16, mixed);
  const auto b = sana::load_pipeline(dir, at::kCPU, at::kBFloat16);
  EXPECT_EQ(a->components.vae->dtype(), at::kFloat);
  EXPECT_EQ(a->components.tiny_vae->dtype(), at::kFloat);
  EXPECT_EQ(a->components.transformer->config().in_channels, b->components.transformer->config().in_channels);
  sana::GenerationParams params;
  params.model = dir;
  sana::apply_model_defaults(params, {});
  params.prompt = "a red circle";
  const sana::GenerateOptions o = sana::to_generate_options(params);
  const auto ra = a->generate(o), rb = b->generate(o);
  EXPECT_TRUE(at::equal(ra.final_latents, rb.final_latents));
  EXPECT_LT((ra.images - rb.images).abs().max().item<double>(), 0.05);
}

TEST(ShippedModels, StudentFollowsItsTeacherFromTheSameNoise) {
  const std::string dir = SANA_MODELS_DIR;
  const auto student = sana::load_pipeline(dir + "/sana-sprint-shapes", at::kCPU, at::kFloat);
  const auto teacher = sana::load_pipeline(dir + "/sana-shapes-teacher", at::kCPU, at::kFloat);
  ASSERT_NE(dynamic_cast<const sana::SanaSprintPipeline*>(student.get()), nullptr);
  ASSERT_NE(dynamic_cast<const sana::SanaPipeline*>(teacher.get()), nullptr);
  // The options `generate` would use: the student folder's generation_defaults.json (64x64, no instruction, 32
  // tokens, its own 2-step middle time) through the shared front-end path.
  sana::GenerationParams params;
  params.model = dir + "/sana-sprint-shapes";
  sana::apply_model_defaults(params, {});
  params.steps = 2;
  sana::shapes::EvalReport s_report, t_report;
  double same = 0, other = 0;
  const int n = 24;
  std::vector<at::Tensor> teacher_images;
  for (int i = 0; i < n; ++i) {
    const auto scene = sana::shapes::scene_for(777, i);
    params.prompt = scene.caption;
    params.seed = i;
    sana::GenerateOptions o = sana::to_generate_options(params);
    const at::Tensor s_img = student->generate(o).images[0];
    o.steps = 20;
    const at::Tensor t_img = teacher->generate(o).images[0];
    EXPECT_EQ(s_img.sizes(), (std::vector<int64_t>{3, 64, 64}));
    teacher_images.push_back(t_img);
    if (i > 0) {
      same += (s_img - t_img).pow(2).mean().item<double>();
      other += (s_img - teacher_images[i - 1]).pow(2).mean().item<double>();
    }
    sana::shapes::add_result(s_report, scene, sana::shapes::check(scene, sana::shapes::detect(s_img)));
    sana::shapes::add_result(t_report, scene, sana::shapes::check(scene, sana::shapes::detect(t_img)));
  }
  EXPECT_LT(same, 0.5 * other) << "mean squared distance to the teacher: same noise " << same / (n - 1)
                               << ", other noise " << other / (n - 1);
  EXPECT_GE(s_report.overall(), 0.5 * t_report.overall())
      << "ShapesEval: student " << s_report.overall() << ", teacher " << t_report.overall();
}

// A pipeline answers what it does (front ends ask it instead of reading the transformer's config): the teacher guides
// with CFG, takes no init image and names samplers its scheduler accepts; the student the reverse. embed_text through
// a caller's encoder (the server's cache) asks for the texts the pipeline's own rule needs (the teacher's negative
// prompt only under CFG, without the instruction prefix) and gives the embeddings the pipeline computes itself.
TEST(Pipeline, AnswersItsCapabilitiesAndEmbedsThroughACallersEncoder) {
  const std::string models = SANA_MODELS_DIR;
  const auto teacher = sana::load_pipeline(models + "/sana-shapes-teacher", at::kCPU, at::kFloat);
  const auto student = sana::load_pipeline(models + "/sana-sprint-shapes", at::kCPU, at::kFloat);
  const auto t = teacher->capabilities(), s = student->capabilities();
  EXPECT_TRUE(t.classifier_free_guidance);
  EXPECT_FALSE(t.init_image);
  EXPECT_FALSE(s.classifier_free_guidance);
  EXPECT_TRUE(s.init_image);
  ASSERT_FALSE(t.samplers.empty());
  const auto& flow = dynamic_cast<const sana::SanaPipeline&>(*teacher);
  for (const std::string& name : t.samplers) EXPECT_NO_THROW(sana::FlowScheduler::create(flow.scheduler_config, name)) << name;
  EXPECT_EQ(s.samplers, std::vector<std::string>{"scm"});

  c10::InferenceMode guard;
  for (const double guidance : {4.5, 1.0}) {
    sana::GenerateOptions own, cached;
    own.prompts = cached.prompts = {"a red circle"};
    own.negative_prompt = cached.negative_prompt = "blurry";
    own.guidance_scale = cached.guidance_scale = guidance;
    teacher->embed_text(own);
    std::vector<std::pair<std::string, bool>> asked;  // text, with the instruction prefix
    teacher->embed_text(cached, [&](const std::string& text, const sana::PromptOptions& po) {
      asked.emplace_back(text, po.use_complex_human_instruction);
      return teacher->encode_prompt({text}, po);
    });
    EXPECT_TRUE(at::equal(own.prompt_embeds, cached.prompt_embeds));
    if (guidance > 1) {
      ASSERT_EQ(asked.size(), 2u);
      EXPECT_EQ(asked[1].first, "blurry");
      EXPECT_EQ(asked[1].second, false);
      EXPECT_TRUE(at::equal(own.negative_prompt_embeds, cached.negative_prompt_embeds));
    } else {
      EXPECT_EQ(asked.size(), 1u) << "no negative prompt without CFG";
      EXPECT_FALSE(cached.negative_prompt_embeds.defined());
    }
  }
}
