#pragma once
// Exponential moving average of parameters, kept in fp32; the trainers export the averages when --ema is on.
#include "train/gradients.h"

namespace sana::detail {

class EMA {
 public:
  EMA(const NamedTensors& params, double decay);
  void update();
  const NamedTensors& averages() const { return avg_; }
  // Copies the averages into the parameters (for export).
  void copy_to_params() const;
  const NamedTensors& params() const { return params_; }

 private:
  NamedTensors params_, avg_;
  double decay_;
};

// While alive, the parameters hold the averages (what an export writes: a snapshot mid-run); their training values
// come back when it goes. With no EMA (null) the parameters stay as they are.
class AveragesInParams {
 public:
  explicit AveragesInParams(const EMA* ema);
  ~AveragesInParams();
  AveragesInParams(const AveragesInParams&) = delete;
  AveragesInParams& operator=(const AveragesInParams&) = delete;

 private:
  const EMA* ema_;
  std::vector<at::Tensor> saved_;
};

}  // namespace sana::detail
