#pragma once
// Next-token pretraining of the shapes world's tiny Gemma-2 on its caption corpus (docs/ARCHITECTURE.md, "Training").
// SANA's teacher reads the hidden states of a *pretrained* language model; a random frozen encoder gives the teacher
// features in which "left of" or the colour of the second object are only token identities. A few minutes of
// causal language modelling on the captions make the features of a word depend on its context the way the grammar
// does; the encoder is then frozen as before.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sana/models/gemma2.h"
#include "sana/text/tokenizer.h"

namespace sana {

struct LmPretrainOptions {
  int64_t steps = 0;            // 0: the encoder stays random
  int batch_size = 64;
  double lr = 3e-3;            // AdamW; linear warm-up, then cosine decay to lr / 10
  int warmup_steps = 30;
  uint64_t seed = 0;           // caption order
  int max_sequence_length = 32;  // tokens per caption, <bos> included (the latent cache's setting)
  double heldout_fraction = 0.05;  // the last captions, never trained on, measure the loss
  std::string log_path;        // JSONL of every step (empty: none)
};

struct LmPretrainReport {
  double heldout_loss_before = 0, heldout_loss_after = 0;  // nats per predicted token
  int64_t train_captions = 0;
};

// Mean next-token cross-entropy (nats) over the positions whose next token is a token (attention_mask 1), <bos> not
// predicted. input_ids, attention_mask: [B, L] as tokenize_prompts makes them.
at::Tensor lm_loss(const Gemma2Model& model, const at::Tensor& input_ids, const at::Tensor& attention_mask);

// Trains every parameter of `model` in place on `captions` (lower-cased and stripped as the pipeline does).
LmPretrainReport pretrain_language_model(Gemma2Model& model, const GemmaTokenizer& tokenizer,
                                         const std::vector<std::string>& captions, const LmPretrainOptions& options);

}  // namespace sana
