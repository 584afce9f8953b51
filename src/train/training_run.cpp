// The shared run state of the trainers (training_run.h).
#include "train/training_run.h"

#include <cmath>
#include <filesystem>

#include "sana/error.h"
#include "sana/io/output_folder.h"
#include "sana/runtime.h"
#include "train/checkpoint.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana::detail {
namespace {

// The shared options that change what a run computes (the rest -- steps, cadences, device -- may change on resume).
json shared_shape(const TrainOptions& o) {
  return {{"batch_size", o.batch_size},   {"lr", o.lr},           {"optimizer", o.optimizer},
          {"warmup_steps", o.warmup_steps}, {"weight_decay", o.weight_decay}, {"grad_clip", o.grad_clip},
          {"ema", o.ema_decay},           {"seed", o.seed},       {"dtype", o.dtype}};
}

void check_options(const TrainOptions& o) {
  const auto require = [](bool ok, const std::string& msg) {
    if (!ok) throw Error(msg);
  };
  require(o.steps >= 0, "--steps must be at least 0, got " + std::to_string(o.steps));
  // The global batch, bounded before anything is allocated (the paper's runs use a few hundred).
  require(o.batch_size >= 1 && o.batch_size <= 4096,
          "--batch-size must be between 1 and 4096, got " + std::to_string(o.batch_size));
  require(std::isfinite(o.lr) && o.lr > 0, "--lr must be a positive number, got " + std::to_string(o.lr));
  require(o.warmup_steps >= 0, "--warmup-steps must be at least 0");
  require(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "--weight-decay must be a number >= 0");
  require(std::isfinite(o.grad_clip) && o.grad_clip > 0, "--grad-clip must be a positive number");
  require(std::isfinite(o.ema_decay) && o.ema_decay >= 0 && o.ema_decay < 1, "--ema must be in [0, 1)");
  require(o.snapshot_every >= 0, "--snapshot-every must be at least 0");
  require(o.log_every >= 1 && o.checkpoint_every >= 1, "--log-every and --checkpoint-every must be at least 1");
}

}  // namespace

TrainingRun::TrainingRun(std::string command, const TrainOptions& o, json shape,
                         const std::vector<std::pair<std::string, std::string>>& inputs)
    : command_(std::move(command)), o_(o), shape_(std::move(shape)), env_(dist_env_from_environment()) {
  check_options(o);
  if (main_rank()) {  // the other processes find rank 0's files there
    OutputFolderRule rule;
    rule.resume = o.resume;
    rule.overwrite = o.overwrite;
    check_output_folder(o.out, inputs, rule);
  }
  device_ = parse_device(o.device);
  dtype_ = parse_dtype(o.dtype);
  if (dtype_ == at::kHalf && device_.is_cpu()) throw Error("--dtype fp16 runs on CUDA only; on the CPU use fp32 or bf16");
  const json shared = shared_shape(o);
  for (const auto& [k, v] : shared.items()) shape_[k] = v;
  shape_["command"] = command_;
  slice_ = Slice{env_.rank, env_.world_size, o.batch_size};
  if (slice_.size() < 1)
    throw Error("--batch-size " + std::to_string(o.batch_size) + " is smaller than WORLD_SIZE " +
                std::to_string(env_.world_size));
  if (env_.distributed()) dp_ = std::make_unique<DataParallel>(env_, o.backend, device_);
  dir_ = (fs::path(o.out) / "training").string();  // created by begin(): a run refused before it leaves no folder
}

TrainingRun::~TrainingRun() = default;

void TrainingRun::track(const std::string& prefix, const NamedTensors& tensors) {
  tracked_.push_back({prefix, [tensors] { return tensors; },
                      [prefix, tensors](const std::string& path) { restore_tensors(path, prefix, tensors); }});
}

void TrainingRun::track(const std::string& prefix, Optimizer& optim) {
  tracked_.push_back({prefix, [&optim] { return optim.state(); },
                      [prefix, &optim](const std::string& path) { optim.load_state(load_prefixed(path, prefix)); }});
}

void TrainingRun::track(const std::string& prefix, EMA& ema) {
  track(prefix, ema.averages());
  ema_ = &ema;
}

TrainingRun::Optimization TrainingRun::optimize(const NamedTensors& params) {
  Optimization o{make_optimizer(o_.optimizer, params, o_.lr, o_.weight_decay),
                 o_.ema_decay > 0 ? std::make_unique<EMA>(params, o_.ema_decay) : nullptr};
  track("model.", params);
  track("optim.", *o.optim);
  if (o.ema) track("ema.", *o.ema);
  return o;
}

void TrainingRun::check_resume_options(const std::string& recorded) const {
  const json before = json::parse(recorded, nullptr, /*allow_exceptions=*/false);
  if (!before.is_object()) return;  // a checkpoint from before options were recorded
  std::string diffs;
  for (const auto& [k, v] : shape_.items())
    if (!before.contains(k) || before[k] != v)
      diffs += std::string(diffs.empty() ? "" : "; ") + k + " was " + (before.contains(k) ? before[k].dump() : "unset") +
               ", now " + v.dump();
  if (!diffs.empty())
    throw Error("--resume: the options that shape this run differ from the checkpoint's (" + diffs +
                "); resume with the same options or start a new run in another folder");
}

int64_t TrainingRun::begin(const NamedTensors& shared) {
  if (o_.snapshot_every > 0 && !snapshot_) throw Error("--snapshot-every: `" + command_ + "` writes no snapshots");
  fs::create_directories(dir_);
  const std::string ckpt = (fs::path(dir_) / "checkpoint.safetensors").string();
  int64_t start = 0;
  if (o_.resume) {
    const CheckpointInfo info = read_checkpoint_info(ckpt);
    check_resume_options(info.options_json);
    for (const auto& t : tracked_) t.restore(ckpt);
    start = info.step;
    note(command_ + ": resumed from " + ckpt + " at step " + std::to_string(start));
  } else if (dp_) {
    dp_->broadcast_parameters(tensors_of(shared));
  }
  if (main_rank()) log_ = std::make_unique<JsonlLog>((fs::path(dir_) / "log.jsonl").string(), start);
  progress_ = std::make_unique<Progress>(command_, o_.steps, start);
  return start;
}

void TrainingRun::save(int64_t step) const {
  if (!main_rank()) return;
  NamedTensors all;
  for (const auto& t : tracked_)
    for (const auto& [name, tensor] : t.get()) all.emplace_back(t.prefix + name, tensor);
  save_checkpoint((fs::path(dir_) / "checkpoint.safetensors").string(), step, shape_.dump(), all);
}

void TrainingRun::end_step(int64_t step, const Values& logged, const Values& shown, const Labels& labels) {
  if (log_) log_->write(step, logged, labels);
  // A non-finite loss or gradient skips its step; a run of them means the training diverged.
  ++steps_run_;
  for (const auto& [k, v] : logged)
    if (k == "skipped") {
      skipped_in_a_row_ = v > 0 ? skipped_in_a_row_ + 1 : 0;
      steps_skipped_ += v > 0;
    }
  if (skipped_in_a_row_ >= kMaxSkippedInARow)
    throw Error(command_ + ": stopped at step " + std::to_string(step + 1) + " after " +
                std::to_string(skipped_in_a_row_) + " steps in a row with a non-finite loss or gradient (diverged: "
                "lower --lr, or check the data); the last checkpoint is from before");
  const bool last = step + 1 == o_.steps;
  if (main_rank() && ((step + 1) % o_.log_every == 0 || last)) progress_->update(step + 1, shown);
  if ((step + 1) % o_.checkpoint_every == 0 || last) save(step + 1);
  if (main_rank() && sample_ && o_.sample_every > 0 && (step + 1) % o_.sample_every == 0)
    sample_((fs::path(dir_) / "samples" / ("step-" + std::to_string(step + 1) + ".png")).string());
  if (main_rank() && snapshot_ && o_.snapshot_every > 0 && (step + 1) % o_.snapshot_every == 0) snapshot(step + 1);
}

// Written beside its final place and renamed, so that a snapshot folder is either whole or absent.
void TrainingRun::snapshot(int64_t step) const {
  const fs::path dir = fs::path(dir_) / "snapshots" / ("step-" + std::to_string(step));
  const fs::path tmp = dir.string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  {
    const AveragesInParams exported(ema_);
    snapshot_(tmp.string());
  }
  fs::remove_all(dir);
  fs::rename(tmp, dir);
}

// A run whose every step was skipped, or whose weights are not finite (a --resume checkpoint or data with NaN), has
// nothing worth exporting: an error instead of a model folder that looks trained.
void TrainingRun::check_exportable() const {
  if (steps_run_ > 0 && steps_skipped_ == steps_run_)
    throw Error(command_ + ": all " + std::to_string(steps_run_) + " steps were skipped (non-finite loss or gradient); "
                "nothing exported (check the data, or lower --lr)");
  for (const auto& t : tracked_) {
    if (t.prefix != "model.") continue;
    for (const auto& [name, tensor] : t.get())
      if (!at::isfinite(tensor).all().item<bool>())
        throw Error(command_ + ": the weights to export hold NaN or Inf values (" + name + "); nothing exported " +
                    (o_.resume ? "(the --resume checkpoint's weights, or the training diverged)" : "(the training diverged)"));
  }
}

bool TrainingRun::finish() {
  if (!main_rank()) return false;
  check_exportable();
  if (sample_ && o_.sample_every >= 0)
    sample_((fs::path(dir_) / "samples" / ("step-" + std::to_string(o_.steps) + ".png")).string());
  return true;
}

void TrainingRun::note(const std::string& msg) const {
  if (main_rank()) detail::note(msg);
}

}  // namespace sana::detail
