#pragma once
// Pieces the training commands share (trainer.cpp): progress line, JSONL log, checkpoints, EMA, sample grids,
// data-parallel slicing, output-folder helpers. Not part of the public API.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sana/train/distributed.h"
#include "sana/train/optim.h"
#include "sana/train/trainer.h"

namespace sana::detail {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

double now();
// "[sana-sprint] msg" on stderr (rank 0 only where the caller says so).
void note(const std::string& msg);

// One progress line per call: step/total, rates, ETA and the given losses.
class Progress {
 public:
  Progress(std::string what, int64_t total, int64_t start);
  void update(int64_t step, const std::vector<std::pair<std::string, double>>& values);

 private:
  std::string what_;
  int64_t total_, start_;
  double t0_;
};

// Appends one JSON object per step to <path>. On resume, lines with "step" >= start are dropped first, so the log
// reads as one uninterrupted run.
class JsonlLog {
 public:
  JsonlLog(const std::string& path, int64_t start);
  void write(int64_t step, const std::vector<std::pair<std::string, double>>& values,
             const std::vector<std::pair<std::string, std::string>>& labels = {});

 private:
  std::ofstream out_;
};

// Exponential moving average of parameters (kept in fp32).
class EMA {
 public:
  EMA(const NamedTensors& params, double decay);
  void update();
  const NamedTensors& averages() const { return avg_; }
  NamedTensors state(const std::string& prefix) const;
  // Copies the averages into the parameters (for export).
  void copy_to_params() const;

 private:
  NamedTensors params_, avg_;
  double decay_;
};

// Training-state checkpoint: tensors under prefixes ("model.", "optim.", "ema.", ...) and the step, written
// atomically. `restore` copies every named tensor back (Error naming the missing one).
void save_checkpoint(const std::string& path, int64_t step, const NamedTensors& tensors);
int64_t load_checkpoint_step(const std::string& path);
void restore_tensors(const std::string& path, const std::string& prefix, const NamedTensors& targets);
NamedTensors load_prefixed(const std::string& path, const std::string& prefix);

// The state of a one-model run: "model.", "optim." and (if any) "ema." tensors; restore returns the step.
NamedTensors model_state(const NamedTensors& params, const Optimizer& optim, const EMA* ema);
int64_t restore_model_state(const std::string& path, const NamedTensors& params, Optimizer& optim, EMA* ema);

// Writes a diffusers pipeline folder: model_index.json (`pipeline_class`, the five components), transformer/
// (config text + the module's weights), scheduler/scheduler_config.json, tokenizer/ text_encoder/ vae/ copied from
// `components_from`, and generation_defaults.json.
void export_pipeline(const std::string& out, const std::string& pipeline_class, const std::string& scheduler_class,
                     const std::string& scheduler_config_json, const torch::nn::Module& transformer,
                     const std::string& transformer_config_json, const std::string& components_from,
                     const LatentCache& cache, int steps, double guidance);

// Parameters of a module that require grad, with names.
NamedTensors trainable(const torch::nn::Module& module, const std::string& prefix = "");
std::vector<at::Tensor> tensors_of(const NamedTensors& named);

// Linear warm-up: lr * min(1, (step + 1) / warmup).
double warmup_lr(double lr, int warmup, int64_t step);

// After loss.backward(): averages the gradients over the processes (so they, and their norm, are equal on every
// process), clips them to `clip`, and unless the norm is non-finite sets the warmed-up learning rate for `lr_step`,
// steps and updates the EMA. Returns {gradient norm before clipping, whether the step was taken}.
std::pair<double, bool> apply_gradients(Optimizer& optim, const NamedTensors& params, double lr, int warmup_steps,
                                        int64_t lr_step, double clip, DataParallel* dp, EMA* ema);

// [N, 3, H, W] in [0, 1] -> one PNG grid with `cols` columns.
void save_grid(const std::string& path, const at::Tensor& images, int cols);

// Writes text to path atomically.
void write_text(const std::string& path, const std::string& text);
// Copies a component folder (tokenizer/, text_encoder/, vae/) from one pipeline folder to another.
void copy_component(const std::string& from_dir, const std::string& to_dir, const std::string& name);

// The rank's rows of a global batch.
struct Slice {
  int rank = 0, world = 1;
  int64_t global = 0;
  int64_t begin() const { return global * rank / world; }
  int64_t size() const { return global * (rank + 1) / world - begin(); }
  at::Tensor operator()(const at::Tensor& t) const { return t.narrow(0, begin(), size()); }
};

// Creates <out>/training/ and returns the path of its checkpoint.
std::string checkpoint_path(const std::string& out);

// The c10d group for WORLD_SIZE > 1 (null for one process), and this process's rows of the global batch.
std::unique_ptr<DataParallel> data_parallel(const DistEnv& env, const TrainOptions& o, const at::Device& device,
                                            Slice& slice);

// Rows of the cache for step k (the global batch), on `device`.
struct Batch {
  at::Tensor latents, embeds, mask;
  std::vector<int64_t> indices;
};
Batch cache_batch(const LatentCache& cache, uint64_t seed, int64_t step, int64_t batch_size, const Slice& slice,
                  const at::Device& device, at::ScalarType dtype);

// Writes <dir>/generation_defaults.json: the settings `sana-sprint generate` uses when a flag is not given.
void write_generation_defaults(const std::string& dir, const LatentCache& cache, int steps, double guidance);

}  // namespace sana::detail
