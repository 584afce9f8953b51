// Flow scheduler configs and the common sampler driver (flow_scheduler.h). The two schedulers are in
// flow_match_euler.cpp and dpm_solver.cpp.
#include "sana/diffusion/flow_scheduler.h"

#include <nlohmann/json.hpp>
#include <regex>

#include "sana/error.h"
#include "sana/io/config.h"

namespace sana {

std::unique_ptr<FlowScheduler> make_flow_match_euler(const FlowSchedulerConfig& config);
std::unique_ptr<FlowScheduler> make_dpm_solver(const FlowSchedulerConfig& config);

namespace {

// diffusers writes Python floats with json.dumps, which spells the infinities and NaN the JavaScript way; the real
// SANA configs carry "lambda_min_clipped": -Infinity. Such values become null (none of them is read here).
std::string without_js_constants(const std::string& text) {
  static const std::regex js(R"((:\s*)(-?Infinity|NaN)(\s*[,}\]]))");
  return std::regex_replace(text, js, "$1null$3");
}

template <typename T>
void read(const nlohmann::json& j, const char* key, T& value, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return;
  try {
    value = j[key].get<T>();
  } catch (const std::exception&) {
    throw Error(source + ": '" + key + "' has the wrong type (" + j[key].dump() + ")");
  }
}

// A key whose value must be `expected` (or absent) for the sampler to be diffusers' as implemented here.
template <typename T>
void require(const nlohmann::json& j, const char* key, const T& expected, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return;
  T value = expected;
  read(j, key, value, source);
  if (value != expected)
    throw Error(source + ": '" + key + "' is " + j[key].dump() + "; only " + nlohmann::json(expected).dump() +
                " is implemented");
}

}  // namespace

FlowSchedulerConfig parse_flow_scheduler_config(const std::string& text, const std::string& source) {
  const auto j = nlohmann::json::parse(without_js_constants(text), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) throw Error(source + ": not a JSON object");
  FlowSchedulerConfig c;
  read(j, "_class_name", c.class_name, source);
  read(j, "num_train_timesteps", c.num_train_timesteps, source);
  if (c.num_train_timesteps < 2) throw Error(source + ": 'num_train_timesteps' must be at least 2");
  if (c.class_name == "FlowMatchEulerDiscreteScheduler") {
    read(j, "shift", c.shift, source);
    for (const char* key : {"use_dynamic_shifting", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                            "invert_sigmas", "stochastic_sampling"})
      require(j, key, false, source);
    if (j.contains("shift_terminal") && !j["shift_terminal"].is_null())
      throw Error(source + ": 'shift_terminal' is set; only null is implemented");
  } else if (c.class_name == "DPMSolverMultistepScheduler") {
    read(j, "flow_shift", c.shift, source);
    require(j, "use_flow_sigmas", true, source);
    if (!j.contains("use_flow_sigmas"))
      throw Error(source + ": a DPMSolverMultistepScheduler without 'use_flow_sigmas' is not a flow sampler");
    require(j, "prediction_type", std::string("flow_prediction"), source);
    require(j, "algorithm_type", std::string("dpmsolver++"), source);
    require(j, "solver_type", std::string("midpoint"), source);
    require(j, "thresholding", false, source);
    require(j, "use_dynamic_shifting", false, source);
    read(j, "solver_order", c.solver_order, source);
    read(j, "lower_order_final", c.lower_order_final, source);
    read(j, "euler_at_final", c.euler_at_final, source);
    read(j, "final_sigmas_type", c.final_sigmas_type, source);
    if (c.solver_order != 1 && c.solver_order != 2)
      throw Error(source + ": 'solver_order' " + std::to_string(c.solver_order) + " is not implemented (1 or 2)");
    if (c.final_sigmas_type != "zero")
      throw Error(source + ": 'final_sigmas_type' '" + c.final_sigmas_type + "' is not implemented (zero)");
  } else {
    throw Error(source + ": '_class_name' " + c.class_name +
                " is not a flow scheduler implemented here (FlowMatchEulerDiscreteScheduler, DPMSolverMultistepScheduler)");
  }
  if (!(c.shift > 0)) throw Error(source + ": the shift must be positive");
  return c;
}

FlowSchedulerConfig load_flow_scheduler_config(const std::string& path) {
  return parse_flow_scheduler_config(read_text_file(path), path);
}

std::unique_ptr<FlowScheduler> FlowScheduler::create(const FlowSchedulerConfig& config, const std::string& solver) {
  FlowSchedulerConfig c = config;
  if (solver == "euler") c.class_name = "FlowMatchEulerDiscreteScheduler";
  else if (solver == "dpm++2m") c.class_name = "DPMSolverMultistepScheduler";
  else if (!solver.empty()) throw Error("sampler: '" + solver + "' is not euler or dpm++2m");
  if (c.class_name == "DPMSolverMultistepScheduler") return make_dpm_solver(c);
  return make_flow_match_euler(c);
}

at::Tensor FlowScheduler::sample(const std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>& v,
                                 at::Tensor x, int steps) {
  set_timesteps(steps);
  for (int i = 0; i < num_steps(); ++i)
    x = step(v(x, sigmas_[i].expand({x.size(0)}).to(x.scalar_type())), i, x);
  return x;
}

std::vector<double> numpy_linspace(double start, double stop, int num) {
  std::vector<double> y(std::max(num, 0));
  if (num == 1) y[0] = start;
  if (num < 2) return y;
  const double step = (stop - start) / (num - 1);
  for (int i = 0; i < num; ++i) y[i] = i * step + start;
  y[num - 1] = stop;
  return y;
}

}  // namespace sana
