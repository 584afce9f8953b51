#include "sana/train/flow_loss.h"

namespace sana {

at::Tensor flow_matching_loss_at(const FlowVelocityFn& velocity, const at::Tensor& x0, const at::Tensor& s,
                                 const at::Tensor& eps) {
  const at::Tensor sv = s.view({-1, 1, 1, 1}).to(x0.scalar_type());
  const at::Tensor x_s = (1 - sv) * x0 + sv * eps;
  return (velocity(x_s, s) - (eps - x0)).pow(2).mean();
}

at::Tensor flow_matching_loss(const FlowVelocityFn& velocity, const at::Tensor& x0, at::Generator& gen,
                              const FlowLossOptions& o) {
  const auto cpu = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor s = at::sigmoid(o.logit_mean + o.logit_std * at::randn({x0.size(0)}, gen, cpu)).to(x0.device());
  const at::Tensor eps = at::randn(x0.sizes(), gen, cpu).to(x0.options());
  return flow_matching_loss_at(velocity, x0, s, eps);
}

at::Tensor caption_dropout(const at::Tensor& embeds, const at::Tensor& null_embedding, double p, at::Generator& gen) {
  if (p <= 0) return embeds;
  const at::Tensor drop = (at::rand({embeds.size(0)}, gen, at::TensorOptions().dtype(at::kFloat)) < p)
                              .to(embeds.device())
                              .view({-1, 1, 1});
  return at::where(drop, null_embedding.unsqueeze(0).to(embeds.scalar_type()), embeds);
}

}  // namespace sana
