// sana-sprint: command line front end. Subcommands are thin layers over the library.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/io/safetensors.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/runtime.h"

namespace fs = std::filesystem;

namespace {

// Lists a checkpoint's tensors (a .safetensors file, an index, or a diffusers component folder) after validating it.
int run_inspect(const std::string& path) {
  sana::Checkpoint ckpt = fs::is_directory(path) ? [&] {
    for (const char* base : {"diffusion_pytorch_model", "model"})
      if (fs::exists(fs::path(path) / (std::string(base) + ".safetensors")) ||
          fs::exists(fs::path(path) / (std::string(base) + ".safetensors.index.json")))
        return sana::Checkpoint::open_in_directory(path, base);
    return sana::Checkpoint::open_in_directory(path, "diffusion_pytorch_model");
  }()
                                                 : sana::Checkpoint::open(path);
  int64_t total = 0;
  for (const auto& name : ckpt.names()) {
    const auto& info = ckpt.info(name);
    int64_t numel = 1;
    for (auto d : info.shape) numel *= d;
    total += numel;
    std::cout << name << "  " << sana::safetensors_dtype_name(info.dtype) << "  " << c10::str(at::IntArrayRef(info.shape))
              << "\n";
  }
  for (const auto& [k, v] : ckpt.metadata()) std::cout << "metadata " << k << " = " << v << "\n";
  std::cout << ckpt.names().size() << " tensors, " << total << " elements\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sana-sprint: SANA-Sprint one-step text-to-image in C++ (LibTorch)"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("-t,--threads", threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);

  auto* inspect = app.add_subcommand("inspect", "validate a safetensors checkpoint and list its tensors");
  std::string inspect_path;
  inspect->add_option("path", inspect_path, "a .safetensors file, a .safetensors.index.json, or a component folder")
      ->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    sana::configure_runtime(threads);
    if (*inspect) return run_inspect(inspect_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sana-sprint: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
