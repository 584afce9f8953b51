#include "sana/train/optim.h"

#include <ATen/core/grad_mode.h>

#include <cmath>
#include <map>

#include "sana/error.h"

namespace sana {

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  for (const auto& [name, p] : params_) {
    exp_avg_.push_back(at::zeros_like(p));
    exp_avg_sq_.push_back(at::zeros_like(p));
  }
}

void AdamW::step() {
  at::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(options_.beta2, static_cast<double>(step_));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i].second;
    const at::Tensor g = p.grad();
    if (!g.defined()) continue;
    if (options_.weight_decay != 0) p.mul_(1 - options_.lr * options_.weight_decay);
    exp_avg_[i].mul_(options_.beta1).add_(g, 1 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(g, g, 1 - options_.beta2);
    const at::Tensor denom = (exp_avg_sq_[i].sqrt() / std::sqrt(bc2)).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -options_.lr / bc1);
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("exp_avg." + params_[i].first, exp_avg_[i]);
    out.emplace_back("exp_avg_sq." + params_[i].first, exp_avg_sq_[i]);
  }
  out.emplace_back("step", at::scalar_tensor(step_, at::kLong));
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, at::Tensor>>& state) {
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto restore = [&](const std::string& key, at::Tensor& dst) {
      auto it = by_name.find(key);
      if (it == by_name.end() || it->second.sizes() != dst.sizes())
        throw Error("optimizer state: missing or misshapen " + key);
      dst.copy_(it->second);
    };
    restore("exp_avg." + params_[i].first, exp_avg_[i]);
    restore("exp_avg_sq." + params_[i].first, exp_avg_sq_[i]);
  }
  auto it = by_name.find("step");
  if (it == by_name.end()) throw Error("optimizer state: missing 'step'");
  step_ = it->second.item<int64_t>();
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  double sq = 0;
  for (const auto& p : params)
    if (p.grad().defined()) sq += p.grad().to(at::kDouble).pow(2).sum().item<double>();
  const double norm = std::sqrt(sq);
  if (!std::isfinite(norm)) return norm;
  if (norm > max_norm)
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(max_norm / (norm + 1e-6));
  return norm;
}

}  // namespace sana
