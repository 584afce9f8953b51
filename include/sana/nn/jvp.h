#pragma once
// Forward-mode automatic differentiation (LibTorch dual tensors): the Jacobian-vector product J_f(x) v in one
// forward pass, as torch.func.jvp. The sCM loss needs dF/dt along the teacher's ODE this way (docs/ARCHITECTURE.md, "Distillation").
#include <ATen/ATen.h>

#include <functional>
#include <utility>
#include <vector>

namespace sana::nn {

using TensorFn = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

// Returns {f(primals), J_f(primals) . tangents}. Parameters of modules used by f stay plain tensors (no tangent).
// Grad mode and InferenceMode: call it outside InferenceMode; it works with or without grad mode.
std::pair<at::Tensor, at::Tensor> jvp(const TensorFn& f, const std::vector<at::Tensor>& primals,
                                      const std::vector<at::Tensor>& tangents);

}  // namespace sana::nn
