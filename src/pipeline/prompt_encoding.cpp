// Pipeline step 1: prompt embeddings (prompt_encoding.h).
#include "sana/pipeline/prompt_encoding.h"

#include "sana/error.h"
#include "sana/pipeline/pipeline.h"

namespace sana {

std::pair<at::Tensor, at::Tensor> encode_prompt_with(const GemmaTokenizer& tokenizer, const Gemma2Model& text_encoder,
                                                     const std::vector<std::string>& prompts,
                                                     const PromptOptions& options, const at::Device& device) {
  const TokenizedPrompts tok = tokenize_prompts(tokenizer, prompts, options);
  const at::Tensor hidden = text_encoder.forward(tok.input_ids.to(device), tok.attention_mask.to(device));
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
    std::tie(embeds, mask) = encode_prompt_with(*c.tokenizer, *c.text_encoder, o.prompts, o.prompt, c.device);
  }
  require_finite(embeds, "text encoder");
  if (o.num_images_per_prompt > 1) {
    embeds = embeds.repeat_interleave(o.num_images_per_prompt, 0);
    mask = mask.repeat_interleave(o.num_images_per_prompt, 0);
  }
  return {embeds, mask};
}

}  // namespace sana
