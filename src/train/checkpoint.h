#pragma once
// Training-state checkpoints: named tensors under prefixes ("model.", "optim.", "ema.", ...), with the step and the
// options that shape the run in the metadata, written atomically (a crash leaves the previous checkpoint whole).
#include <cstdint>
#include <string>

#include "train/gradients.h"

namespace sana::detail {

void save_checkpoint(const std::string& path, int64_t step, const std::string& options_json,
                     const NamedTensors& tensors);

struct CheckpointInfo {
  int64_t step = 0;
  std::string options_json;  // "" for checkpoints written before options were recorded
};
// Errors name the file: missing, unreadable, no step, a step that is not a non-negative integer.
CheckpointInfo read_checkpoint_info(const std::string& path);

// Copies every target from the tensor <prefix><name> (Error naming a missing or misshapen one).
void restore_tensors(const std::string& path, const std::string& prefix, const NamedTensors& targets);
// Every tensor under `prefix`, the prefix removed.
NamedTensors load_prefixed(const std::string& path, const std::string& prefix);

}  // namespace sana::detail
