// Parameter EMA (ema.h).
#include "train/ema.h"

#include <ATen/core/grad_mode.h>

namespace sana::detail {

EMA::EMA(const NamedTensors& params, double decay) : params_(params), decay_(decay) {
  at::NoGradGuard no_grad;
  for (const auto& [name, p] : params) avg_.emplace_back(name, p.detach().to(at::kFloat).clone());
}

void EMA::update() {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i)
    avg_[i].second.mul_(decay_).add_(params_[i].second.detach().to(at::kFloat), 1.0 - decay_);
}

void EMA::copy_to_params() const {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].second.copy_(avg_[i].second);
}

AveragesInParams::AveragesInParams(const EMA* ema) : ema_(ema) {
  if (!ema_) return;
  at::NoGradGuard no_grad;
  for (const auto& [name, p] : ema_->params()) saved_.push_back(p.detach().clone());
  ema_->copy_to_params();
}

AveragesInParams::~AveragesInParams() {
  if (!ema_) return;
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < saved_.size(); ++i) ema_->params()[i].second.copy_(saved_[i]);
}

}  // namespace sana::detail
