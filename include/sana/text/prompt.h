#pragma once
// SANA's prompt processing (docs/ARCHITECTURE.md, "Text encoder"):
//  1. prompt.lower().strip();
//  2. the complex human instruction (CHI) is prepended (the diffusers default text; switchable off);
//  3. tokenised to max_length = len(encode(CHI)) + max_sequence_length - 2 (or max_sequence_length without CHI) with
//     <bos>, right padding and truncation;
//  4. after the text encoder, positions [0] + the last (max_sequence_length - 1) are kept, for embeddings and mask.
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "sana/text/tokenizer.h"

namespace sana {

// The diffusers default complex_human_instruction lines, joined with "\n" (ends with "User Prompt: ").
const std::string& default_complex_human_instruction();

struct PromptOptions {
  bool use_complex_human_instruction = true;
  std::string complex_human_instruction = default_complex_human_instruction();
  int max_sequence_length = 300;
};

struct TokenizedPrompts {
  at::Tensor input_ids;       // [B, L_all] int64
  at::Tensor attention_mask;  // [B, L_all] int64, 1 = token, 0 = padding
  at::Tensor select_index;    // [max_sequence_length] int64: positions kept after the text encoder
  std::vector<int> prefix_ids;  // the tokens every row starts from: <bos> + the instruction (or <bos> alone)
};

// Python's str.lower().strip() for UTF-8 text (lower-casing per Unicode code point).
std::string lower_strip(const std::string& text);

TokenizedPrompts tokenize_prompts(const GemmaTokenizer& tokenizer, const std::vector<std::string>& prompts,
                                  const PromptOptions& options);

}  // namespace sana
