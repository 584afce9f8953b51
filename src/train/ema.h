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

 private:
  NamedTensors params_, avg_;
  double decay_;
};

}  // namespace sana::detail
