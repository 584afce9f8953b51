#pragma once
// The flow-matching teachers' samplers, as diffusers' schedulers compute them (docs/ARCHITECTURE.md, "TrigFlow"):
// x_s = (1 - s) x0 + s eps, the model predicts v = eps - x0, and a sampler walks the flow times ("sigmas") from
// about 1 down to 0 while handing the model diffusers' timesteps (sigma * num_train_timesteps).
//
//  * FlowMatchEulerDiscreteScheduler: x' = x + (s' - s) v over diffusers' shifted linspace schedule;
//  * DPMSolverMultistepScheduler (use_flow_sigmas, dpmsolver++, midpoint): data prediction x0 = x - s v with
//    alpha = 1 - s, sigma = s, first order on the first and the last step, second order between.
//
// Both reproduce diffusers' float32 arithmetic (the schedule in float64 then float32, the step coefficients as
// float32 scalars), so a teacher folder samples exactly as diffusers samples it.
#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sana {

// The parts of scheduler/scheduler_config.json the samplers follow.
struct FlowSchedulerConfig {
  std::string class_name = "FlowMatchEulerDiscreteScheduler";  // or "DPMSolverMultistepScheduler"
  int num_train_timesteps = 1000;
  double shift = 1.0;  // "shift" (Euler) or "flow_shift" (DPM-Solver)
  // DPM-Solver only.
  int solver_order = 2;
  bool lower_order_final = true;
  bool euler_at_final = false;
  std::string final_sigmas_type = "zero";
};

// Reads a scheduler config as diffusers writes it (JavaScript's -Infinity, Infinity and NaN allowed as values).
// Settings this project does not implement (dynamic shifting, Karras sigmas, SDE solvers, ...) are errors naming the
// file and the key.
FlowSchedulerConfig parse_flow_scheduler_config(const std::string& json_text, const std::string& source);
FlowSchedulerConfig load_flow_scheduler_config(const std::string& path);

class FlowScheduler {
 public:
  // The config's scheduler, or the one `solver` names ("euler" | "dpm++2m") with the config's shift.
  static std::unique_ptr<FlowScheduler> create(const FlowSchedulerConfig& config, const std::string& solver = "");
  virtual ~FlowScheduler() = default;

  // Builds the schedule for `steps` steps and resets the solver's history.
  virtual void set_timesteps(int steps) = 0;
  // x at sigmas[i + 1] from x at sigmas[i] and the model's velocity there (float32).
  virtual at::Tensor step(const at::Tensor& v, int i, const at::Tensor& x) = 0;
  virtual std::string solver() const = 0;  // "euler" | "dpm++2m"

  const at::Tensor& timesteps() const { return timesteps_; }  // [steps]: what the model is given (before scaling)
  const at::Tensor& sigmas() const { return sigmas_; }        // [steps + 1] float32, the flow times, last 0
  int num_steps() const { return static_cast<int>(timesteps_.size(0)); }

  // The whole ODE for a velocity field v(x, s) that takes the flow time s [B] (for closed-form checks).
  at::Tensor sample(const std::function<at::Tensor(const at::Tensor& x, const at::Tensor& s)>& v, at::Tensor x,
                    int steps);

 protected:
  at::Tensor timesteps_, sigmas_;
};

// numpy.linspace in float64: start + i * (stop - start) / (num - 1), the last value exactly `stop`.
std::vector<double> numpy_linspace(double start, double stop, int num);

}  // namespace sana
