#pragma once
// The server's model worker (docs/SERVER.md): the one thread that runs the pipeline. HTTP threads prepare a
// request (parse, validate, decode images) and hand it over as a Job; the worker takes jobs from a bounded queue and
// runs them one at a time; live frames have their own lane and run between the steps of a job in hand. Job states:
// queued -> running -> done | failed | cancelled.
//
// Live sessions: a session has at most one frame waiting. A newer frame of the same session replaces a waiting one,
// which then ends as `superseded` without running (the client is answered 409): latest wins, nothing queues up.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sana/frontend/generation_params.h"
#include "sana/pipeline/pipeline.h"
#include "sana/server/prompt_cache.h"

namespace sana::server {

struct Job {
  enum class State { queued, running, done, failed, cancelled, superseded };

  std::string id;
  GenerationParams params;   // validated, seed resolved
  GenerateOptions options;   // images already decoded
  std::vector<LoraSpec> loras;  // the request's LoRAs (resolved files), on top of the server's own
  std::string live_session;  // non-empty for a live frame
  int64_t live_frame = 0;
  // An async job is kept after it finishes, for polling by its id (history_limit, history_seconds); a synchronous
  // request's job (OpenAI, A1111) is answered by the thread that waits on it and forgotten when it finishes, so its
  // images live only until the answer is sent.
  bool keep_for_polling = true;

  // Written by the worker, read under the worker's lock (or after wait()).
  State state = State::queued;
  std::vector<at::Tensor> images;  // [3, H, W] in [0, 1], one per image
  at::Tensor timesteps;
  std::string sampler, error;
  bool client_error = false;  // failed because of what the request asked for (a LoRA that does not fit): a 400
  double created = 0, started = 0, finished = 0;  // seconds since the epoch
  int step = 0, steps = 0;                         // progress
  std::atomic<bool> cancel_requested{false};
};

std::string state_name(Job::State s);

class Worker {
 public:
  struct Options {
    size_t queue_limit = 64;      // queued jobs (live frames not included) before submit() refuses
    size_t live_limit = 64;       // waiting live frames (one per session) before submit() refuses
    size_t history_limit = 256;   // finished jobs kept for polling
    double history_seconds = 600; // and for at most this long
    size_t history_bytes = size_t{1} << 30;  // and while their images take at most this much memory
    size_t prompt_cache_size = 64;
    std::vector<LoraSpec> base_loras;  // fused at load (serve --lora); every job runs with them
  };
  Worker(std::unique_ptr<Pipeline> pipeline, Options options);
  ~Worker();

  // Queues a job. Live frames have a lane of their own: they run before queued work and, while a job runs, at its
  // next pause point (before each step and before the decode) unless they need other LoRAs; a live frame replaces
  // its session's waiting frame. Refused when the job's lane is full or the worker is shutting down (the caller
  // answers 429 / 503).
  enum class Admission { accepted, queue_full, shutting_down };
  Admission submit(const std::shared_ptr<Job>& job);
  // Blocks until the job is finished (any final state).
  void wait(const std::shared_ptr<Job>& job);
  std::shared_ptr<Job> find(const std::string& id);
  // Queued: cancelled at once; running: stops at the next step. False if unknown or already finished.
  bool cancel(const std::string& id);
  // Cancels the running job (A1111's interrupt).
  void interrupt();

  // Refuses new jobs, cancels the queued ones, lets the running one finish, joins the thread.
  void shutdown();
  bool shutting_down() const { return stopping_; }

  struct Status {
    size_t queued = 0, live_waiting = 0;
    std::shared_ptr<Job> running;  // the job in hand (a live frame run inside it does not replace it)  // null when idle
    int64_t done = 0, failed = 0;
  };
  Status status();
  // A queued job's place in the queue (1: next to run); 0 when it is not queued. Call with lock() held.
  size_t queue_position(const Job& job) const;
  // The queued jobs in order (not the live frames). Call with lock() held.
  const std::deque<std::shared_ptr<Job>>& queued() const { return queue_; }

  const Pipeline& pipeline() const { return *pipeline_; }
  // Locks the mutex the worker holds while it changes a job (for consistent reads of a job's fields).
  std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mutex_); }

 private:
  void run();
  void run_job(const std::shared_ptr<Job>& job);  // execute + finish, errors to the job's state
  void run_live_frames();                         // at a running job's pause points
  void execute(Job& job);
  void finish(const std::shared_ptr<Job>& job, Job::State state);
  static void release_inputs(Job& job);
  void forget_old_jobs();
  static size_t result_bytes(const Job& job);
  std::vector<LoraSpec> wanted_loras(const Job& job) const;  // base_loras + the job's

  // Makes the model's LoRAs base_loras + job.loras (fused; exactly undone first when they differ).
  void switch_loras(Job& job);
  std::unique_ptr<Pipeline> pipeline_;
  Options options_;
  PromptCache prompts_;
  std::vector<LoraSpec> applied_loras_;  // worker thread only
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::deque<std::shared_ptr<Job>> queue_, live_;  // other work; live frames
  std::map<std::string, std::shared_ptr<Job>> jobs_;  // every known job by id
  std::shared_ptr<Job> running_;
  int64_t done_count_ = 0, failed_count_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// A random job id ("job-" + 32 hex digits: 128 unguessable bits).
std::string new_job_id();
double wall_seconds();

}  // namespace sana::server
