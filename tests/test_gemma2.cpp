// Gemma2Model against the transformers fixture (eager attention: soft-capping, sliding window, GQA, padding).
#include "sana/error.h"
#include "sana/models/gemma2.h"
#include "sana/nn/module_io.h"
#include "test_util.h"

using sana::test::fixture;

TEST(Gemma2, MatchesTransformersFixture) {
  auto model = sana::Gemma2Model::from_pretrained(fixture("gemma2_tiny"), at::kFloat);
  // The fixture exercises what the real encoder needs: GQA, a sliding window shorter than the sequence,
  // query_pre_attn_scalar != head_dim and soft-capping that matters.
  const auto& c = model->config();
  ASSERT_LT(c.num_key_value_heads, c.num_attention_heads);
  auto io = sana::SafetensorsFile::open(fixture("gemma2_tiny/io.safetensors"));
  ASSERT_LT(*c.sliding_window, io->get("input_ids").size(1));
  const at::Tensor out = model->forward(io->get("input_ids"), io->get("attention_mask"));
  EXPECT_CLOSE(out, io->get("last_hidden_state"), 1e-4);
}

TEST(Gemma2, PrefixedCausalLMCheckpointLoads) {
  // A Gemma2ForCausalLM-style file: "model." names plus an lm_head, which the encoder does not use.
  sana::test::TempDir dir;
  std::filesystem::copy_file(fixture("gemma2_tiny/config.json"), dir.file("config.json"));
  const auto ckpt = sana::Checkpoint::open(fixture("gemma2_tiny/model.safetensors"));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& name : ckpt.names()) tensors.emplace_back("model." + name, ckpt.get(name));
  tensors.emplace_back("lm_head.weight", ckpt.get("embed_tokens.weight"));
  sana::save_safetensors(dir.file("model.safetensors"), tensors);
  auto model = sana::Gemma2Model::from_pretrained(dir.path().string(), at::kFloat);
  auto io = sana::SafetensorsFile::open(fixture("gemma2_tiny/io.safetensors"));
  EXPECT_CLOSE(model->forward(io->get("input_ids"), io->get("attention_mask")), io->get("last_hidden_state"), 1e-4);
}

TEST(Gemma2, RealConfigParameterCount) {
  // Gemma-2-2B: 2,614,341,888 parameters (= the two bf16 shards' 5.23 GB).
  const auto cfg = sana::load_gemma2_config(
      fixture("configs/Sana_Sprint_0.6B_1024px_diffusers/text_encoder/config.json"));
  sana::Gemma2Model model(cfg, at::kFloat);  // uninitialised storage: never touched
  EXPECT_EQ(sana::nn::count_parameters(model), 2614341888);
}

// The prefix cache's arithmetic: a sequence split anywhere (before and past the sliding window, inside padding) and
// continued from the prefix's keys and values equals the whole forward at the unpadded positions.
TEST(Gemma2, ContinuingACachedPrefixEqualsTheWholeForward) {
  auto model = sana::Gemma2Model::from_pretrained(fixture("gemma2_tiny"), at::kFloat);
  auto io = sana::SafetensorsFile::open(fixture("gemma2_tiny/io.safetensors"));
  const at::Tensor ids = io->get("input_ids"), mask = io->get("attention_mask");
  const at::Tensor whole = model->forward(ids, mask);
  const int64_t B = ids.size(0), L = ids.size(1), window = *model->config().sliding_window;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t length = mask[b].sum().item<int64_t>();
    for (int64_t start : {int64_t{1}, window / 2, window, window + 1, length - 1}) {
      if (start < 1 || start >= length) continue;
      SCOPED_TRACE("row " + std::to_string(b) + ", prefix of " + std::to_string(start));
      const at::Tensor row = ids.narrow(0, b, 1);
      const at::Tensor prefix_ids = row.narrow(1, 0, start).reshape({-1});
      const auto state = model->encode_prefix(std::vector<int64_t>(prefix_ids.data_ptr<int64_t>(),
                                                                   prefix_ids.data_ptr<int64_t>() + start));
      EXPECT_CLOSE(state.hidden, whole.narrow(0, b, 1).narrow(1, 0, start), 1e-5);
      const at::Tensor rest = model->forward_after(state, start, row.narrow(1, start, L - start),
                                                   mask.narrow(0, b, 1).narrow(1, start, L - start));
      const at::Tensor expected = whole.narrow(0, b, 1).narrow(1, start, length - start);
      EXPECT_CLOSE(rest.narrow(1, 0, length - start), expected, 1e-5);
    }
  }
}

TEST(Gemma2, PrefixStateMustCoverTheStart) {
  auto model = sana::Gemma2Model::from_pretrained(fixture("gemma2_tiny"), at::kFloat);
  const auto state = model->encode_prefix({2, 5, 7});
  const at::Tensor ids = at::full({1, 2}, 9, at::kLong), mask = at::ones({1, 2}, at::kLong);
  EXPECT_THROW(model->forward_after(state, 4, ids, mask), sana::Error);
  EXPECT_THROW(model->encode_prefix({}), sana::Error);
}
