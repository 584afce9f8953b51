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

CAME::CAME(std::vector<std::pair<std::string, at::Tensor>> params, CAMEOptions options)
    : params_(std::move(params)), options_(options) {
  for (const auto& [name, p] : params_) {
    Slot s;
    s.exp_avg = at::zeros_like(p);
    if (p.dim() >= 2) {
      auto rows = p.sizes().vec(), cols = p.sizes().vec();
      rows.pop_back();                   // shape[:-1]
      cols.erase(cols.end() - 2);        // shape[:-2] + shape[-1:]
      s.row = at::zeros(rows, p.options());
      s.col = at::zeros(cols, p.options());
      s.res_row = at::zeros(rows, p.options());
      s.res_col = at::zeros(cols, p.options());
    } else {
      s.exp_avg_sq = at::zeros_like(p);
    }
    slots_.push_back(std::move(s));
  }
}

namespace {
// The factored estimate's inverse square root: rsqrt(row_i / mean(row)) * rsqrt(col_j).
at::Tensor approx_rsqrt(const at::Tensor& row, const at::Tensor& col) {
  return (row / row.mean(-1, true)).rsqrt().unsqueeze(-1) * col.unsqueeze(-2).rsqrt();
}
}  // namespace

void CAME::step() {
  at::NoGradGuard no_grad;
  ++step_;
  const auto& o = options_;
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i].second;
    const at::Tensor g = p.grad();
    if (!g.defined()) continue;
    Slot& s = slots_[i];
    const bool factored = p.dim() >= 2;
    at::Tensor u = g * g + o.eps1;
    if (factored) {
      s.row.mul_(o.beta2).add_(u.mean(-1), 1 - o.beta2);
      s.col.mul_(o.beta2).add_(u.mean(-2), 1 - o.beta2);
      u = approx_rsqrt(s.row, s.col) * g;
    } else {
      s.exp_avg_sq.mul_(o.beta2).add_(u, 1 - o.beta2);
      u = s.exp_avg_sq.rsqrt() * g;
    }
    const double rms = u.norm().item<double>() / std::sqrt(static_cast<double>(u.numel()));
    u.div_(std::max(1.0, rms / o.clip_threshold));
    s.exp_avg.mul_(o.beta1).add_(u, 1 - o.beta1);
    at::Tensor update;
    if (factored) {
      const at::Tensor res = (u - s.exp_avg).pow(2) + o.eps2;
      s.res_row.mul_(o.beta3).add_(res.mean(-1), 1 - o.beta3);
      s.res_col.mul_(o.beta3).add_(res.mean(-2), 1 - o.beta3);
      update = approx_rsqrt(s.res_row, s.res_col) * s.exp_avg;
    } else {
      update = s.exp_avg;
    }
    if (o.weight_decay != 0) p.mul_(1 - o.weight_decay * o.lr);
    p.sub_(update * o.lr);
  }
}

void CAME::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
}

std::vector<std::pair<std::string, at::Tensor>> CAME::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& n = params_[i].first;
    const Slot& s = slots_[i];
    out.emplace_back("exp_avg." + n, s.exp_avg);
    if (s.exp_avg_sq.defined()) out.emplace_back("exp_avg_sq." + n, s.exp_avg_sq);
    if (s.row.defined()) {
      out.emplace_back("exp_avg_sq_row." + n, s.row);
      out.emplace_back("exp_avg_sq_col." + n, s.col);
      out.emplace_back("exp_avg_res_row." + n, s.res_row);
      out.emplace_back("exp_avg_res_col." + n, s.res_col);
    }
  }
  out.emplace_back("step", at::scalar_tensor(step_, at::kLong));
  return out;
}

void CAME::load_state(const std::vector<std::pair<std::string, at::Tensor>>& state) {
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  at::NoGradGuard no_grad;
  auto restore = [&](const std::string& key, at::Tensor& dst) {
    auto it = by_name.find(key);
    if (it == by_name.end() || it->second.sizes() != dst.sizes())
      throw Error("optimizer state: missing or misshapen " + key + " (was the checkpoint written with another --optimizer?)");
    dst.copy_(it->second);
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& n = params_[i].first;
    Slot& s = slots_[i];
    restore("exp_avg." + n, s.exp_avg);
    if (s.exp_avg_sq.defined()) restore("exp_avg_sq." + n, s.exp_avg_sq);
    if (s.row.defined()) {
      restore("exp_avg_sq_row." + n, s.row);
      restore("exp_avg_sq_col." + n, s.col);
      restore("exp_avg_res_row." + n, s.res_row);
      restore("exp_avg_res_col." + n, s.res_col);
    }
  }
  auto it = by_name.find("step");
  if (it == by_name.end()) throw Error("optimizer state: missing 'step'");
  step_ = it->second.item<int64_t>();
}

std::unique_ptr<Optimizer> make_optimizer(const std::string& name,
                                          std::vector<std::pair<std::string, at::Tensor>> params, double lr,
                                          double weight_decay) {
  if (name == "adamw") return std::make_unique<AdamW>(std::move(params), AdamWOptions{lr, 0.9, 0.999, 1e-8, weight_decay});
  if (name == "came") {
    CAMEOptions o;
    o.lr = lr, o.weight_decay = weight_decay;
    return std::make_unique<CAME>(std::move(params), o);
  }
  throw Error("--optimizer must be adamw or came, got '" + name + "'");
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
