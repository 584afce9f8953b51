// Image-caption folders and the deterministic sample order (sana/train/data.h).
#include "sana/train/data.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <filesystem>
#include <tuple>

#include "sana/error.h"
#include "sana/io/config.h"

namespace fs = std::filesystem;

namespace sana {
namespace {

uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

ImageCaptionFolder ImageCaptionFolder::open(const std::string& dir) {
  if (!fs::is_directory(dir)) throw Error("--data: " + dir + " is not a directory");
  std::vector<fs::path> pngs;
  const auto is_control = [](const fs::path& p) { return p.stem().extension() == ".control"; };
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".png" && !is_control(e.path())) pngs.push_back(e.path());
  std::sort(pngs.begin(), pngs.end());
  if (pngs.empty()) throw Error("--data: no .png images in " + dir);
  ImageCaptionFolder f;
  for (const auto& p : pngs) {
    fs::path txt = p;
    txt.replace_extension(".txt");
    if (!fs::exists(txt)) throw Error("--data: " + p.string() + " has no caption file " + txt.string());
    std::string caption = read_text_file(txt.string());
    while (!caption.empty() && (caption.back() == '\n' || caption.back() == '\r')) caption.pop_back();
    f.images.push_back(p.string());
    f.captions.push_back(caption);
    fs::path control = p;
    control.replace_extension(".control.png");
    if (fs::exists(control)) f.controls.push_back(control.string());
  }
  if (!f.controls.empty() && f.controls.size() != f.images.size())
    throw Error("--data: " + dir + " has control images (NAME.control.png) for " + std::to_string(f.controls.size()) +
                " of " + std::to_string(f.images.size()) + " images; give one for every image or none");
  return f;
}

at::Generator step_generator(uint64_t seed, int64_t step, uint64_t stream) {
  return at::make_generator<at::CPUGeneratorImpl>(
      splitmix(splitmix(splitmix(seed) ^ static_cast<uint64_t>(step)) ^ stream));
}

int64_t sample_index(uint64_t seed, int64_t step, int64_t batch_size, int64_t j, int64_t n) {
  // One permutation per epoch, memoised (batches of a step usually share it).
  thread_local std::tuple<uint64_t, int64_t, int64_t> key{~0ull, -1, -1};
  thread_local at::Tensor perm;
  const int64_t pos = step * batch_size + j, epoch = pos / n;
  if (key != std::make_tuple(seed, n, epoch)) {
    at::Generator gen = step_generator(seed, epoch, streams::kDataOrder);
    perm = at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
    key = {seed, n, epoch};
  }
  return perm[pos % n].item<int64_t>();
}

}  // namespace sana
