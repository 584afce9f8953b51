// Data-parallel training over c10d Gloo: two processes on loopback, each with half of the batch, average their
// gradients and end with parameters identical to each other and to one process trained on the whole batch.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "sana/nn/layers.h"
#include "sana/nn/module_io.h"
#include "sana/train/distributed.h"
#include "sana/train/optim.h"
#include "test_util.h"

namespace {

// A few AdamW steps of a linear model on `rows` of a fixed batch; returns the final weights.
at::Tensor train(sana::DataParallel* dp, int64_t first_row, int64_t rows) {
  at::manual_seed(0);
  const at::Tensor X = at::randn({8, 5}, at::kDouble), Y = at::randn({8, 3}, at::kDouble);
  sana::nn::Linear model(5, 3, true, at::kDouble);
  sana::nn::init_random(model, 1);
  for (auto& p : model.parameters()) p.requires_grad_(true);
  sana::AdamW opt(sana::nn::state_dict(model), {0.05, 0.9, 0.999, 1e-8, 0.01});
  if (dp) dp->broadcast_parameters(model.parameters());
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    const at::Tensor x = X.narrow(0, first_row, rows), y = Y.narrow(0, first_row, rows);
    (model.forward(x) - y).pow(2).mean().backward();
    if (dp) dp->average_gradients(model.parameters());
    opt.step();
  }
  return at::cat({model.weight.detach().flatten(), model.bias.detach()});
}

}  // namespace

TEST(DataParallel, TwoGlooProcessesEqualOneProcessOnTheWholeBatch) {
  sana::test::TempDir dir;
  const int port = 29000 + (getpid() % 1000);
  pid_t child = fork();
  if (child == 0) {  // rank 1: rows 4..7
    int rc = 1;
    try {
      sana::DataParallel dp({1, 2, 1, "127.0.0.1", port}, "gloo");
      sana::save_safetensors(dir.file("rank1.safetensors"), {{"w", train(&dp, 4, 4)}});
      rc = 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "rank 1: %s\n", e.what());
    }
    _exit(rc);
  }
  at::Tensor rank0;
  {
    sana::DataParallel dp({0, 2, 0, "127.0.0.1", port}, "gloo");
    rank0 = train(&dp, 0, 4);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const at::Tensor rank1 = sana::SafetensorsFile::open(dir.file("rank1.safetensors"))->get("w");
  EXPECT_TRUE(at::equal(rank0, rank1)) << "ranks diverged";
  EXPECT_CLOSE(rank0, train(nullptr, 0, 8), 1e-12);  // one process, the whole batch
}

TEST(DataParallel, EnvironmentVariables) {
  setenv("RANK", "1", 1);
  setenv("WORLD_SIZE", "4", 1);
  setenv("MASTER_PORT", "1234", 1);
  unsetenv("LOCAL_RANK");
  const auto e = sana::dist_env_from_environment();
  EXPECT_EQ(e.rank, 1);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_port, 1234);
  setenv("WORLD_SIZE", "x", 1);
  EXPECT_ANY_THROW(sana::dist_env_from_environment());
  setenv("WORLD_SIZE", "1", 1);
  EXPECT_ANY_THROW(sana::dist_env_from_environment());  // rank 1 of 1
  unsetenv("RANK");
  unsetenv("WORLD_SIZE");
  unsetenv("MASTER_PORT");
}
