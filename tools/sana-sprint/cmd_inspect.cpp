// `sana-sprint inspect`: validate a safetensors checkpoint and list its tensors.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "commands.h"
#include "sana/io/safetensors.h"

namespace fs = std::filesystem;

namespace sana::cli {
namespace {

// Names and metadata come from the file: control characters (terminal escapes) are shown as \xNN, not sent.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

int run_inspect(const std::string& path) {
  auto open = [&]() {
    if (!fs::is_directory(path)) return Checkpoint::open(path);
    for (const char* base : {"diffusion_pytorch_model", "model"})
      if (fs::exists(fs::path(path) / (std::string(base) + ".safetensors")) ||
          fs::exists(fs::path(path) / (std::string(base) + ".safetensors.index.json")))
        return Checkpoint::open_in_directory(path, base);
    return Checkpoint::open_in_directory(path, "diffusion_pytorch_model");
  };
  const Checkpoint ckpt = open();
  int64_t total = 0;
  for (const auto& name : ckpt.names()) {
    const auto& info = ckpt.info(name);
    int64_t numel = 1;
    for (auto d : info.shape) numel *= d;
    total += numel;
    std::cout << printable(name) << "  " << safetensors_dtype_name(info.dtype) << "  "
              << c10::str(at::IntArrayRef(info.shape)) << "\n";
  }
  for (const auto& [k, v] : ckpt.metadata()) std::cout << "metadata " << printable(k) << " = " << printable(v) << "\n";
  std::cout << ckpt.names().size() << " tensors, " << total << " elements\n";
  return 0;
}

}  // namespace

Subcommand add_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "validate a safetensors checkpoint and list its tensors");
  auto path = std::make_shared<std::string>();
  cmd->add_option("path", *path, "a .safetensors file, a .safetensors.index.json, or a component folder")->required();
  return {cmd, [path] { return run_inspect(*path); }};
}

}  // namespace sana::cli
