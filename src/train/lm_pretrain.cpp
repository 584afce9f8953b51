#include "sana/train/lm_pretrain.h"

#include <ATen/core/grad_mode.h>
#include <algorithm>
#include <cmath>

#include "sana/error.h"
#include "sana/text/prompt.h"
#include "sana/train/data.h"
#include "train/gradients.h"
#include "train/run_log.h"

namespace sana {
namespace {

using namespace detail;

// Token ids and masks of all captions, as the pipeline tokenises a prompt without the instruction.
TokenizedPrompts tokenize_all(const GemmaTokenizer& tokenizer, const std::vector<std::string>& captions, int length) {
  PromptOptions p;
  p.use_complex_human_instruction = false;
  p.max_sequence_length = length;
  return tokenize_prompts(tokenizer, captions, p);
}

double heldout_loss(const Gemma2Model& model, const at::Tensor& ids, const at::Tensor& mask) {
  at::NoGradGuard no_grad;
  double sum = 0, count = 0;
  for (int64_t i = 0; i < ids.size(0); i += 256) {
    const int64_t n = std::min<int64_t>(256, ids.size(0) - i);
    const at::Tensor m = mask.narrow(0, i, n);
    const double tokens = m.narrow(1, 1, m.size(1) - 1).sum().item<double>();
    sum += lm_loss(model, ids.narrow(0, i, n), m).item<double>() * tokens;
    count += tokens;
  }
  return sum / std::max(1.0, count);
}

// Cosine from lr to lr / 10 after the warm-up (apply_gradients ramps the warm-up itself).
double cosine_lr(const LmPretrainOptions& o, int64_t step) {
  const double t = static_cast<double>(step - o.warmup_steps) / std::max<int64_t>(1, o.steps - o.warmup_steps);
  return o.lr * (0.1 + 0.45 * (1 + std::cos(M_PI * std::clamp(t, 0.0, 1.0))));
}

}  // namespace

at::Tensor lm_loss(const Gemma2Model& model, const at::Tensor& input_ids, const at::Tensor& attention_mask) {
  const int64_t L = input_ids.size(1);
  if (L < 2) throw Error("lm_loss: sequences need at least 2 tokens");
  const at::Tensor logits = model.lm_logits(model.forward(input_ids, attention_mask)).narrow(1, 0, L - 1);
  const at::Tensor target = input_ids.narrow(1, 1, L - 1);
  const at::Tensor weight = attention_mask.narrow(1, 1, L - 1).to(logits.scalar_type());
  const at::Tensor nll = -at::log_softmax(logits.to(at::kFloat), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1);
  return (nll * weight).sum() / weight.sum().clamp_min(1);
}

LmPretrainReport pretrain_language_model(Gemma2Model& model, const GemmaTokenizer& tokenizer,
                                         const std::vector<std::string>& captions, const LmPretrainOptions& o) {
  const int64_t n = static_cast<int64_t>(captions.size());
  if (n < 2) throw Error("text-encoder pretraining: needs at least 2 captions, got " + std::to_string(n));
  const int64_t heldout = std::clamp<int64_t>(std::llround(n * o.heldout_fraction), 1, n - 1);
  if (o.batch_size < 1) throw Error("--pretrain-batch-size must be at least 1");
  const TokenizedPrompts all = tokenize_all(tokenizer, captions, o.max_sequence_length);
  const at::Tensor train_ids = all.input_ids.narrow(0, 0, n - heldout), train_mask = all.attention_mask.narrow(0, 0, n - heldout);
  const at::Tensor test_ids = all.input_ids.narrow(0, n - heldout, heldout),
                   test_mask = all.attention_mask.narrow(0, n - heldout, heldout);
  LmPretrainReport r;
  r.train_captions = n - heldout;
  r.heldout_loss_before = heldout_loss(model, test_ids, test_mask);

  const NamedTensors params = trainable(model);
  if (params.empty()) throw Error("text-encoder pretraining: the model has no trainable parameters");
  AdamWOptions ao;
  ao.lr = o.lr;
  AdamW optim(params, ao);
  std::unique_ptr<JsonlLog> log = o.log_path.empty() ? nullptr : std::make_unique<JsonlLog>(o.log_path, 0);
  Progress progress("text-encoder pretraining", o.steps, 0);
  for (int64_t step = 0; step < o.steps; ++step) {
    std::vector<int64_t> idx;
    for (int j = 0; j < o.batch_size; ++j) idx.push_back(sample_index(o.seed, step, o.batch_size, j, n - heldout));
    const at::Tensor rows = at::tensor(idx, at::kLong);
    const at::Tensor loss = lm_loss(model, train_ids.index_select(0, rows), train_mask.index_select(0, rows));
    optim.zero_grad();
    loss.backward();
    const double gnorm =
        apply_gradients(optim, params, cosine_lr(o, step), o.warmup_steps, step, /*clip=*/1.0, nullptr, nullptr).first;
    const double l = loss.item<double>();
    if (log) log->write(step, {{"loss", l}, {"grad_norm", gnorm}, {"lr", optim.lr()}});
    if ((step + 1) % 50 == 0 || step + 1 == o.steps) progress.update(step + 1, {{"loss", l}});
  }
  r.heldout_loss_after = heldout_loss(model, test_ids, test_mask);
  for (const auto& [_, p] : params) p.mutable_grad() = at::Tensor();
  return r;
}

}  // namespace sana
