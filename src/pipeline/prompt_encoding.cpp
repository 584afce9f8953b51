// Pipeline step 1: prompt embeddings (prompt_encoding.h).
#include "sana/pipeline/prompt_encoding.h"

#include <algorithm>

#include "sana/error.h"
#include "sana/pipeline/pipeline.h"

namespace sana {
namespace {

// The text encoder's hidden states [B, L, C] of tokenised prompts, the shared instruction prefix taken from the
// cache: rows reuse the positions they share with the cached prefix, the rest (up to the longest prompt) is run,
// and positions past each row's last token stay zero.
at::Tensor hidden_after_prefix(const Gemma2Model& text_encoder, const TokenizedPrompts& tok,
                               TextEncoderPrefixCache& cache, const at::Device& device) {
  const auto state = cache.get(text_encoder, std::vector<int64_t>(tok.prefix_ids.begin(), tok.prefix_ids.end()));

  // A prompt's first tokens can merge with the instruction's last ones ("User Prompt: " + "a" drops the lone
  // space piece), so what a row shares with the prefix is measured on the token ids.
  const int64_t B = tok.input_ids.size(0), L = tok.input_ids.size(1);
  const auto ids = tok.input_ids.accessor<int64_t, 2>();
  const at::Tensor lengths = tok.attention_mask.sum(1);
  int64_t start = static_cast<int64_t>(state->ids.size()), end = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t length = lengths[b].item<int64_t>();
    int64_t shared = 0;
    while (shared < length && shared < static_cast<int64_t>(state->ids.size()) && ids[b][shared] == state->ids[shared])
      ++shared;
    start = std::min(start, shared);
    end = std::max(end, length);
  }
  at::Tensor hidden = at::zeros({B, L, state->hidden.size(2)}, state->hidden.options());
  hidden.narrow(1, 0, start).copy_(state->hidden.narrow(1, 0, start).expand({B, start, -1}));
  if (end > start) {
    const at::Tensor mask = tok.attention_mask.narrow(1, start, end - start).to(device);
    const at::Tensor rest = text_encoder.forward_after(*state, start, tok.input_ids.narrow(1, start, end - start).to(device), mask);
    hidden.narrow(1, start, end - start).copy_(rest * mask.unsqueeze(-1).to(rest.scalar_type()));
  }
  return hidden;
}

}  // namespace

std::pair<at::Tensor, at::Tensor> encode_prompt_with(const GemmaTokenizer& tokenizer, const Gemma2Model& text_encoder,
                                                     const std::vector<std::string>& prompts,
                                                     const PromptOptions& options, const at::Device& device,
                                                     TextEncoderPrefixCache* prefix_cache) {
  const TokenizedPrompts tok = tokenize_prompts(tokenizer, prompts, options);
  const at::Tensor hidden =
      prefix_cache ? hidden_after_prefix(text_encoder, tok, *prefix_cache, device)
                   : text_encoder.forward(tok.input_ids.to(device), tok.attention_mask.to(device));
  const at::Tensor index = tok.select_index.to(device);
  return {hidden.index_select(1, index), tok.attention_mask.to(device).index_select(1, index)};
}

std::pair<at::Tensor, at::Tensor> prompt_embeddings_for(const PipelineComponents& c, const GenerateOptions& o) {
  if (o.num_images_per_prompt < 1) throw Error("num_images_per_prompt must be at least 1");
  at::Tensor embeds, mask;
  if (o.prompt_embeds.defined()) {
    if (!o.prompt_attention_mask.defined()) throw Error("prompt_embeds given without prompt_attention_mask");
    embeds = o.prompt_embeds.to(c.device, c.transformer->dtype());
    mask = o.prompt_attention_mask.to(c.device);
  } else {
    if (o.prompts.empty()) throw Error("prompt: no prompt given");
    if (!c.tokenizer || !c.text_encoder) throw Error("this pipeline has no text encoder: pass prompt embeddings");
    std::tie(embeds, mask) =
        encode_prompt_with(*c.tokenizer, *c.text_encoder, o.prompts, o.prompt, c.device, c.prefix_cache.get());
  }
  require_finite(embeds, "text encoder");
  if (o.num_images_per_prompt > 1) {
    embeds = embeds.repeat_interleave(o.num_images_per_prompt, 0);
    mask = mask.repeat_interleave(o.num_images_per_prompt, 0);
  }
  return {embeds, mask};
}

std::pair<at::Tensor, at::Tensor> without_padding(const at::Tensor& embeds, const at::Tensor& mask) {
  const at::Tensor used = at::nonzero((mask != 0).any(0));
  const int64_t keep = used.numel() ? used.max().item<int64_t>() + 1 : 1;
  if (keep == mask.size(1)) return {embeds, mask};
  return {embeds.narrow(1, 0, keep), mask.narrow(1, 0, keep)};
}

}  // namespace sana
