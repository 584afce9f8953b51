#include "sana/train/distributed.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
// A CUDA PyTorch wheel defines USE_C10D_GLOO but ships no gloo/ headers: Gloo only where they are there.
#if defined(USE_C10D_GLOO) && __has_include(<gloo/algorithm.h>)
#define SANA_HAS_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <functional>

#include "sana/error.h"

namespace sana {

namespace {
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0) throw Error(std::string("environment variable ") + name + "='" + v + "' is not a non-negative integer");
  return static_cast<int>(x);
}
}  // namespace

DistEnv dist_env_from_environment() {
  DistEnv e;
  e.rank = env_int("RANK", 0);
  e.world_size = env_int("WORLD_SIZE", 1);
  e.local_rank = env_int("LOCAL_RANK", e.rank);
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  e.master_port = env_int("MASTER_PORT", 29500);
  if (e.world_size < 1 || e.rank >= e.world_size)
    throw Error("RANK=" + std::to_string(e.rank) + " must be below WORLD_SIZE=" + std::to_string(e.world_size));
  return e;
}

// The collectives bound to the concrete process group: LibTorch 1.13 derives ProcessGroupGloo/NCCL from
// ProcessGroup, LibTorch 2.x from Backend; binding the concrete type builds against both.
struct DataParallel::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  std::function<void(std::vector<at::Tensor>&)> allreduce, broadcast;
  std::function<void()> barrier;
  at::Device device = at::kCPU;

  template <class PG>
  void bind(c10::intrusive_ptr<PG> pg) {
    allreduce = [pg](std::vector<at::Tensor>& t) { pg->allreduce(t)->wait(); };
    broadcast = [pg](std::vector<at::Tensor>& t) { pg->broadcast(t)->wait(); };
    barrier = [pg] { pg->barrier()->wait(); };
  }
};

DataParallel::DataParallel(const DistEnv& env, const std::string& backend_in, const at::Device& device)
    : impl_(std::make_unique<Impl>()), env_(env) {
  impl_->device = device;
  if (!env.distributed()) return;
  const std::string backend = backend_in == "auto" ? (device.is_cuda() ? "nccl" : "gloo") : backend_in;
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  so.isServer = env.rank == 0;
  so.numWorkers = env.world_size;
  so.waitWorkers = true;
  impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  if (backend == "gloo") {
#if defined(SANA_HAS_GLOO)
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(env.master_addr));
    impl_->bind(c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, opts));
#else
    throw Error("--backend gloo: this build has no Gloo support (configure with -DSANA_WITH_GLOO=ON)");
#endif
  } else if (backend == "nccl") {
#if defined(USE_C10D_NCCL)
    impl_->bind(c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.world_size));
#else
    throw Error("--backend nccl: this build has no NCCL support (needs a CUDA LibTorch)");
#endif
  } else {
    throw Error("--backend: '" + backend_in + "' is not gloo, nccl or auto");
  }
}

DataParallel::~DataParallel() = default;

void DataParallel::average_gradients(const std::vector<at::Tensor>& params) {
  if (!env_.distributed()) return;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : params) grads.push_back(p.grad().defined() ? p.grad().flatten() : at::zeros({p.numel()}, p.options()));
  std::vector<at::Tensor> flat = {at::cat(grads)};
  impl_->allreduce(flat);
  flat[0].div_(env_.world_size);
  int64_t offset = 0;
  for (const auto& p : params) {
    const at::Tensor slice = flat[0].narrow(0, offset, p.numel()).view_as(p);
    if (p.grad().defined()) p.grad().copy_(slice);
    else const_cast<at::Tensor&>(p).mutable_grad() = slice.clone();
    offset += p.numel();
  }
}

void DataParallel::broadcast_parameters(const std::vector<at::Tensor>& params) {
  if (!env_.distributed()) return;
  at::NoGradGuard no_grad;
  for (const auto& p : params) {
    std::vector<at::Tensor> t = {p.detach()};
    impl_->broadcast(t);
  }
}

double DataParallel::all_reduce_sum(double value) {
  if (!env_.distributed()) return value;
  std::vector<at::Tensor> t = {at::full({1}, value, at::TensorOptions().dtype(at::kDouble).device(impl_->device))};
  impl_->allreduce(t);
  return t[0].item<double>();
}

void DataParallel::barrier() {
  if (env_.distributed()) impl_->barrier();
}

}  // namespace sana
