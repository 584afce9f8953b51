#pragma once
// Pipeline step 1: prompts -> the embeddings and mask the transformer cross-attends to (SANA's prompt processing in
// sana/text/prompt.h, then the text encoder, then SANA's token selection).
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "sana/models/gemma2.h"
#include "sana/pipeline/prefix_cache.h"
#include "sana/pipeline/options.h"
#include "sana/text/prompt.h"
#include "sana/text/tokenizer.h"

namespace sana {

struct PipelineComponents;

// {embeds [B, max_sequence_length, C], mask [B, max_sequence_length]} on `device`. With a prefix cache the
// instruction's positions come from the cache and only each prompt's own tokens are run; padded positions are then
// not computed and hold zeros (the reference computes them, and every consumer masks them). Without one the whole
// padded sequence is run, as in the reference.
std::pair<at::Tensor, at::Tensor> encode_prompt_with(const GemmaTokenizer& tokenizer, const Gemma2Model& text_encoder,
                                                     const std::vector<std::string>& prompts,
                                                     const PromptOptions& options, const at::Device& device,
                                                     TextEncoderPrefixCache* prefix_cache = nullptr);

// embeds [B, L, C] and mask [B, L] cut after the last position any row attends to. The transformer's cross-attention
// gives padded positions zero weight, so dropping them changes no result, only the work.
std::pair<at::Tensor, at::Tensor> without_padding(const at::Tensor& embeds, const at::Tensor& mask);

// The call's prompt embeddings, num_images_per_prompt rows per prompt (prompt-major): options.prompt_embeds when
// given, otherwise the encoded options.prompts.
std::pair<at::Tensor, at::Tensor> prompt_embeddings_for(const PipelineComponents& components,
                                                        const GenerateOptions& options);

}  // namespace sana
