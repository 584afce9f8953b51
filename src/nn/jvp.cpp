#include "sana/nn/jvp.h"

#include <torch/csrc/autograd/forward_grad.h>

#include "sana/error.h"

namespace sana::nn {

namespace {
// One forward-AD level for the duration of a call (levels nest like torch.autograd.forward_ad.dual_level).
struct DualLevel {
  uint64_t idx = torch::autograd::ForwardADLevel::get_next_idx();
  ~DualLevel() { torch::autograd::ForwardADLevel::release_idx(idx); }
};
}  // namespace

std::pair<at::Tensor, at::Tensor> jvp(const TensorFn& f, const std::vector<at::Tensor>& primals,
                                      const std::vector<at::Tensor>& tangents) {
  if (primals.size() != tangents.size()) throw Error("jvp: one tangent per primal is needed");
  at::Tensor out, tangent;
  {
    DualLevel level;
    std::vector<at::Tensor> duals;
    for (size_t i = 0; i < primals.size(); ++i) {
      if (primals[i].sizes() != tangents[i].sizes())
        throw Error("jvp: tangent " + std::to_string(i) + " has shape " + c10::str(tangents[i].sizes()) +
                    ", its primal " + c10::str(primals[i].sizes()));
      duals.push_back(at::_make_dual(primals[i], tangents[i].to(primals[i].scalar_type()), level.idx));
    }
    const at::Tensor y = f(duals);
    auto unpacked = at::_unpack_dual(y, level.idx);
    // Copies: the views must not outlive the level's bookkeeping.
    out = std::get<0>(unpacked).clone();
    tangent = std::get<1>(unpacked).defined() ? std::get<1>(unpacked).clone() : at::zeros_like(out);
  }
  return {out, tangent};
}

}  // namespace sana::nn
