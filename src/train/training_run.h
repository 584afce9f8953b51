#pragma once
// The run state every training loop shares (docs/ARCHITECTURE.md, "Training"): where its state lives
// (<out>/training/), the data-parallel group and this process's rows, resume or fresh start, and the cadence of the
// JSONL log, the progress line, the checkpoints, the sample grids and the snapshots. A loop reads:
//
//   TrainingRun run("train", options, shape);
//   run.track("model.", params); run.track("optim.", optim); ...
//   for (int64_t step = run.begin(params); step < options.steps; ++step) { ...; run.end_step(step, logged, shown); }
//   if (run.finish()) export...
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "sana/train/distributed.h"
#include "sana/train/trainer.h"
#include "train/batches.h"
#include "train/ema.h"
#include "train/gradients.h"
#include "train/run_log.h"

namespace sana::detail {

class TrainingRun {
 public:
  // `command` names the run in messages; `shape` holds the command's own options that shape the run (the shared
  // ones are added here). Both are recorded in every checkpoint, and a resume that changes any is refused.
  // `inputs` ({flag, folder}) may not be the output folder (docs/RELIABILITY.md: the output rule).
  TrainingRun(std::string command, const TrainOptions& options, nlohmann::json shape,
              const std::vector<std::pair<std::string, std::string>>& inputs = {});
  ~TrainingRun();

  // What each checkpoint saves and a resume restores, under a prefix.
  void track(const std::string& prefix, const NamedTensors& tensors);
  void track(const std::string& prefix, Optimizer& optim);
  void track(const std::string& prefix, EMA& ema);

  // The optimiser of `params` (the run's --optimizer, --lr, --weight-decay) and, with --ema, their EMA, each tracked
  // with the parameters as "model.", "optim.", "ema.": the state every single-model trainer checkpoints.
  struct Optimization {
    std::unique_ptr<Optimizer> optim;
    std::unique_ptr<EMA> ema;  // null without --ema
  };
  Optimization optimize(const NamedTensors& params);

  // Once everything is tracked: on --resume restores the checkpoint and returns its step; otherwise returns 0 after
  // copying rank 0's `shared` tensors to the other processes, so that all start equal.
  int64_t begin(const NamedTensors& shared);

  // The grid writer (rank 0 only), called with the grid's path.
  void on_sample(std::function<void(const std::string& path)> sample) { sample_ = std::move(sample); }
  // The snapshot writer (rank 0 only): writes what the run would export now into the (fresh) folder it is given. It
  // is called with the tracked EMA's averages in the parameters (when there is one), as the final export is.
  void on_snapshot(std::function<void(const std::string& dir)> snapshot) { snapshot_ = std::move(snapshot); }

  // After step `step` (0-based): the log line, then on their cadence the progress line (`shown`), the checkpoint,
  // the sample grid and the snapshot.
  void end_step(int64_t step, const Values& logged, const Values& shown, const Labels& labels = {});

  // After the last step: an Error if the run trained nothing (every step skipped) or the weights to export (the
  // tracked "model." tensors, the EMA's averages swapped in) are not finite; then the final sample grid (unless
  // --sample-every < 0). True on the process that exports.
  bool finish();

  bool main_rank() const { return env_.rank == 0; }
  int world_size() const { return env_.world_size; }
  DataParallel* data_parallel() const { return dp_.get(); }
  const Slice& slice() const { return slice_; }
  const at::Device& device() const { return device_; }
  at::TensorOptions tensor_options() const { return at::TensorOptions().dtype(dtype_).device(device_); }
  // "[sana-sprint] msg" on rank 0.
  void note(const std::string& msg) const;

 private:
  struct Tracked {
    std::string prefix;
    std::function<NamedTensors()> get;
    std::function<void(const std::string& path)> restore;
  };
  void check_resume_options(const std::string& recorded) const;
  void save(int64_t step) const;
  void snapshot(int64_t step) const;

  std::string command_;
  TrainOptions o_;
  nlohmann::json shape_;
  DistEnv env_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
  Slice slice_;
  std::unique_ptr<DataParallel> dp_;
  std::vector<Tracked> tracked_;
  std::function<void(const std::string&)> sample_;
  std::function<void(const std::string&)> snapshot_;
  const EMA* ema_ = nullptr;  // the tracked EMA, swapped in for snapshots
  std::unique_ptr<JsonlLog> log_;
  std::unique_ptr<Progress> progress_;
  std::string dir_;  // <out>/training
  void check_exportable() const;
  int skipped_in_a_row_ = 0;
  int64_t steps_run_ = 0, steps_skipped_ = 0;  // by this process (a resumed run counts from its resume)
  static constexpr int kMaxSkippedInARow = 20;
};

}  // namespace sana::detail
