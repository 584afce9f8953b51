// `sana-sprint shapes make-dataset`: the shapes world's image-caption folders.
#include <filesystem>
#include <memory>

#include "commands.h"
#include "sana/error.h"
#include "sana/io/atomic_file.h"
#include "sana/io/image.h"
#include "sana/io/output_folder.h"
#include "sana/shapes/world.h"

namespace fs = std::filesystem;

namespace sana::cli {
namespace {

struct MakeDataset {
  std::string out;
  int64_t count = 1000;
  int size = 64;
  uint64_t seed = 0;
  std::string shapes;  // the shape palette, empty = the base world's four shapes
  bool control = false;
  bool overwrite = false;
};

// The scribble of scene `index`: outline thickness drawn from [1, 3] pixels at 64 px (scaled with the size), from
// its own seeded stream so that the scenes are the same with or without --control.
at::Tensor scribble_for(const shapes::Scene& scene, uint64_t seed, int64_t index, int size) {
  shapes::Rng rng((seed ^ 0x5c81bb1e5ull) * 0x100000001B3ull + static_cast<uint64_t>(index));
  return shapes::render_scribble(scene, size, (1 + 2 * rng.uniform()) * size / 64.0);
}

int run_make_dataset(const MakeDataset& m) {
  if (m.count < 1) throw Error("--count must be at least 1");
  if (m.size < 8 || m.size > 4096) throw Error("--size must be between 8 and 4096 pixels");
  if (m.count > 100'000'000) throw Error("--count: at most 100000000 images");
  OutputFolderRule rule;
  rule.overwrite = m.overwrite;
  const auto palette = shapes::parse_shapes(m.shapes);
  check_output_folder(m.out, {}, rule);
  fs::create_directories(m.out);
  const double t0 = now();
  for (int64_t i = 0; i < m.count; ++i) {
    const auto scene = shapes::scene_for(m.seed, i, palette);
    char stem[32];
    std::snprintf(stem, sizeof(stem), "%07lld", static_cast<long long>(i));
    const std::string base = (fs::path(m.out) / stem).string();
    // Caption and description first, image last: an image in the folder always has its text beside it.
    write_file_atomic(base + ".txt", scene.caption + "\n");
    write_file_atomic(base + ".json", scene.to_json() + "\n");
    if (m.control) save_png(base + ".control.png", scribble_for(scene, m.seed, i, m.size));
    save_png(base + ".png", shapes::render(scene, m.size));
    if ((i + 1) % 1000 == 0 || i + 1 == m.count)
      note("wrote " + std::to_string(i + 1) + "/" + std::to_string(m.count) + " images (" + seconds(now() - t0) + ")");
  }
  return 0;
}

}  // namespace

Subcommand add_shapes(CLI::App& app) {
  auto* shapes = app.add_subcommand("shapes", "the shapes world: synthetic training data");
  shapes->require_subcommand(1);
  auto* make = shapes->add_subcommand("make-dataset", "write N rendered scenes with captions (image-caption folder)");
  auto m = std::make_shared<MakeDataset>();
  make->add_option("-o,--out", m->out, "output folder (NNNNNNN.png, .txt caption, .json description)")->required();
  make->add_option("-n,--count", m->count, "number of images")->capture_default_str();
  make->add_option("--size", m->size, "image size in pixels")->capture_default_str();
  make->add_option("-s,--seed", m->seed, "seed of the scene stream")->capture_default_str();
  make->add_option("--shapes", m->shapes,
                   "the shapes to draw from, comma-separated (default: the base four; 'diamond' is a concept shape the "
                   "shipped models never saw; a shape listed twice is drawn twice as often)");
  make->add_flag("--control", m->control,
                 "also write each scene's scribble NNNNNNN.control.png (white outlines on black, 1-3 px at 64 px)");
  make->add_flag("--overwrite", m->overwrite, "write into a folder that holds other files (replacing same-named ones)");
  return {shapes, [m] { return run_make_dataset(*m); }};
}

}  // namespace sana::cli
