#pragma once
// Pipeline step 1: prompts -> the embeddings and mask the transformer cross-attends to (SANA's prompt processing in
// sana/text/prompt.h, then the text encoder, then SANA's token selection).
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "sana/models/gemma2.h"
#include "sana/pipeline/options.h"
#include "sana/text/prompt.h"
#include "sana/text/tokenizer.h"

namespace sana {

struct PipelineComponents;

// {embeds [B, max_sequence_length, C], mask [B, max_sequence_length]} on `device`.
std::pair<at::Tensor, at::Tensor> encode_prompt_with(const GemmaTokenizer& tokenizer, const Gemma2Model& text_encoder,
                                                     const std::vector<std::string>& prompts,
                                                     const PromptOptions& options, const at::Device& device);

// The call's prompt embeddings, num_images_per_prompt rows per prompt (prompt-major): options.prompt_embeds when
// given, otherwise the encoded options.prompts.
std::pair<at::Tensor, at::Tensor> prompt_embeddings_for(const PipelineComponents& components,
                                                        const GenerateOptions& options);

}  // namespace sana
