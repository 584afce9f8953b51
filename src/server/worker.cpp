// The model worker (worker.h).
#include "sana/server/worker.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "sana/error.h"
#include "sana/runtime.h"

namespace sana::server {
namespace {

// Thrown from the progress callback to stop a job between steps.
struct Cancelled {};

}  // namespace

std::string state_name(Job::State s) {
  switch (s) {
    case Job::State::queued: return "queued";
    case Job::State::running: return "running";
    case Job::State::done: return "done";
    case Job::State::failed: return "failed";
    case Job::State::cancelled: return "cancelled";
    case Job::State::superseded: return "superseded";
  }
  return "unknown";
}

// 128 bits from the system's random source: an id is the only key to a job's images, so it must not be guessable
// (a seeded mt19937_64's later outputs follow from a few hundred earlier ones).
std::string new_job_id() {
  static std::mutex m;
  static std::random_device source;
  std::lock_guard<std::mutex> lock(m);
  uint64_t halves[2];
  for (uint64_t& h : halves) h = (static_cast<uint64_t>(source()) << 32) | source();
  char buf[48];
  std::snprintf(buf, sizeof(buf), "job-%016llx%016llx", static_cast<unsigned long long>(halves[0]),
                static_cast<unsigned long long>(halves[1]));
  return buf;
}

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Worker::Worker(std::unique_ptr<Pipeline> pipeline, Options options)
    : pipeline_(std::move(pipeline)), options_(options), prompts_(options.prompt_cache_size),
      applied_loras_(options.base_loras) {
  // The worker and the HTTP threads share two malloc arenas (runtime.h says why), and the worker hands what finished
  // jobs freed back to the system whenever it goes idle (run()): a long-running server's RSS stays at its warm level.
  limit_malloc_arenas(2);
  thread_ = std::thread([this] { run(); });
}

Worker::~Worker() { shutdown(); }

Worker::Admission Worker::submit(const std::shared_ptr<Job>& job) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return Admission::shutting_down;
  job->created = wall_seconds();
  const bool live = !job->live_session.empty();
  // A live frame meets its session's waiting frame: the newer of the two stays, the other is superseded.
  if (live)
    for (auto& waiting : live_)
      if (waiting->live_session == job->live_session) {
        std::shared_ptr<Job> loser = job;
        if (job->live_frame > waiting->live_frame) std::swap(loser, waiting);  // the new frame takes the place
        jobs_[job->id] = job;
        loser->state = Job::State::superseded;
        loser->finished = wall_seconds();
        release_inputs(*loser);
        jobs_.erase(loser->id);
        done_.notify_all();
        return Admission::accepted;
      }
  // Live frames have their own lane: they neither count against the queue of other work nor wait behind it.
  std::deque<std::shared_ptr<Job>>& lane = live ? live_ : queue_;
  if (lane.size() >= (live ? options_.live_limit : options_.queue_limit)) return Admission::queue_full;
  job->state = Job::State::queued;
  jobs_[job->id] = job;
  lane.push_back(job);
  forget_old_jobs();
  wake_.notify_one();
  return Admission::accepted;
}

void Worker::wait(const std::shared_ptr<Job>& job) {
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return job->state != Job::State::queued && job->state != Job::State::running; });
}

std::shared_ptr<Job> Worker::find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second;
}

bool Worker::cancel(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = jobs_.find(id);
  if (it == jobs_.end()) return false;
  const auto& job = it->second;
  if (job->state == Job::State::queued) {
    for (auto* lane : {&queue_, &live_})
      for (auto q = lane->begin(); q != lane->end(); ++q)
        if (*q == job) {
          lane->erase(q);
          break;
        }
    job->state = Job::State::cancelled;
    job->finished = wall_seconds();
    release_inputs(*job);
    done_.notify_all();
    return true;
  }
  if (job->state == Job::State::running) {
    job->cancel_requested = true;
    return true;
  }
  return false;
}

void Worker::interrupt() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (running_) running_->cancel_requested = true;
}

void Worker::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    for (auto* lane : {&queue_, &live_}) {
      for (const auto& job : *lane) {
        job->state = Job::State::cancelled;
        job->error = "the server is shutting down";
        job->finished = wall_seconds();
        release_inputs(*job);
      }
      lane->clear();
    }
    done_.notify_all();
    wake_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

Worker::Status Worker::status() {
  std::lock_guard<std::mutex> lock(mutex_);
  return {queue_.size(), live_.size(), running_, done_count_, failed_count_};
}

size_t Worker::queue_position(const Job& job) const {
  for (size_t i = 0; i < queue_.size(); ++i)
    if (queue_[i].get() == &job) return i + 1;
  return 0;
}

void Worker::run() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !live_.empty(); });
      auto& lane = live_.empty() ? queue_ : live_;  // live frames first
      if (lane.empty()) return;  // stopping and nothing left
      job = lane.front();
      lane.pop_front();
      job->state = Job::State::running;
      job->started = wall_seconds();
      running_ = job;
    }
    run_job(job);
    bool idle;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      idle = queue_.empty() && live_.empty();
    }
    // Not between queued jobs: they would only take it again. Without it the RSS stayed at the high-water mark of the
    // largest requests ever run (configure_runtime keeps freed blocks below 32 MiB in the heap).
    if (idle) release_free_memory();
  }
}

void Worker::run_job(const std::shared_ptr<Job>& job) {
  Job::State final_state = Job::State::done;
  try {
    execute(*job);
  } catch (const Cancelled&) {
    final_state = Job::State::cancelled;
  } catch (const std::bad_alloc&) {
    final_state = Job::State::failed;
    job->error = "out of memory";
  } catch (const std::exception& e) {
    final_state = Job::State::failed;
    job->error = first_line(e.what());
  }
  finish(job, final_state);
}

// Called at the pause points of a running job that is not a live frame: the waiting live frames run now, inside the
// job, so a frame waits for at most one step of it. The job's own state is untouched (its tensors are its own; the
// live frames share only the weights). A frame that needs other LoRAs than the job runs with waits for the job's end:
// switching them mid-job would change the job's image.
void Worker::run_live_frames() {
  for (;;) {
    std::shared_ptr<Job> frame;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (live_.empty() || stopping_) return;
      if (wanted_loras(*live_.front()) != applied_loras_) return;
      frame = live_.front();
      live_.pop_front();
      frame->state = Job::State::running;
      frame->started = wall_seconds();
    }
    run_job(frame);
  }
}

std::vector<LoraSpec> Worker::wanted_loras(const Job& job) const {
  std::vector<LoraSpec> want = options_.base_loras;
  want.insert(want.end(), job.loras.begin(), job.loras.end());
  return want;
}

// Runs the pipeline: cached prompt embeddings, progress per step, cancellation between steps.
void Worker::switch_loras(Job& job) {
  const std::vector<LoraSpec> want = wanted_loras(job);
  if (want == applied_loras_) return;
  PipelineComponents& c = pipeline_->components;
  // Fused in the same order as `generate --lora ... --lora ...` fuses them, so the images are the same.
  c.remove_loras();
  applied_loras_.clear();
  try {
    for (const LoraSpec& lora : want) {
      c.apply_lora(lora);
      applied_loras_.push_back(lora);
    }
  } catch (const std::exception&) {
    c.remove_loras();  // back to the server's own LoRAs: the next request must not see this one's
    for (const LoraSpec& lora : options_.base_loras) c.apply_lora(lora);
    applied_loras_ = options_.base_loras;
    job.client_error = true;
    throw;
  }
}

void Worker::execute(Job& job) {
  switch_loras(job);
  c10::InferenceMode inference;
  GenerateOptions o = job.options;
  // The pipeline's own rule for which texts it needs (a teacher's negative prompt), through the embedding cache.
  pipeline_->embed_text(o, [&](const std::string& text, const PromptOptions& po) {
    return prompts_.get(*pipeline_, text, po);
  });
  job.steps = o.steps;
  if (job.live_session.empty())
    o.pause_point = [&] {
      if (job.cancel_requested) throw Cancelled{};
      run_live_frames();
    };
  const GenerateResult r = pipeline_->generate(o, [&](const std::string& stage, double) {
    if (job.cancel_requested) throw Cancelled{};
    if (stage.rfind("step", 0) == 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      ++job.step;
    }
  });
  std::lock_guard<std::mutex> lock(mutex_);
  for (int64_t i = 0; i < r.images.size(0); ++i) job.images.push_back(r.images[i]);
  job.timesteps = r.timesteps;
  job.sampler = pipeline_->sampler_name(o);
}

void Worker::finish(const std::shared_ptr<Job>& job, Job::State state) {
  std::lock_guard<std::mutex> lock(mutex_);
  job->state = state;
  job->finished = wall_seconds();
  if (running_ == job) running_.reset();  // a live frame run inside a job leaves the job running
  release_inputs(*job);
  if (!job->live_session.empty() || !job->keep_for_polling) jobs_.erase(job->id);  // answered, never polled
  (state == Job::State::done ? done_count_ : failed_count_) += state == Job::State::cancelled ? 0 : 1;
  forget_old_jobs();
  done_.notify_all();
}

// A finished job keeps its results, not its inputs (a live canvas is megabytes once decoded). The image sources
// become a mark that they were there, which is all the PNG parameters text needs.
void Worker::release_inputs(Job& job) {
  job.options = GenerateOptions{};
  for (std::string* source : {&job.params.control_image, &job.params.init_image})
    if (!source->empty()) *source = "(inline image)";
}

// Finished jobs are kept for polling up to a count, an age and a total size of their images; the oldest go first.
void Worker::forget_old_jobs() {
  const double now = wall_seconds();
  std::vector<std::shared_ptr<Job>> finished;
  size_t bytes = 0;
  for (const auto& [id, job] : jobs_)
    if (job->finished > 0) {
      finished.push_back(job);
      bytes += result_bytes(*job);
    }
  std::sort(finished.begin(), finished.end(), [](const auto& a, const auto& b) { return a->finished < b->finished; });
  size_t kept = finished.size();
  for (const auto& job : finished) {
    const bool over = now - job->finished > options_.history_seconds || kept > options_.history_limit ||
                      bytes > options_.history_bytes;
    if (!over) break;
    bytes -= result_bytes(*job);
    --kept;
    jobs_.erase(job->id);
  }
}

size_t Worker::result_bytes(const Job& job) {
  size_t n = 0;
  for (const at::Tensor& image : job.images) n += image.nbytes();
  return n;
}

}  // namespace sana::server
