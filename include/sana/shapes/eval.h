#pragma once
// ShapesEval: a deterministic analyser that checks an image against the structured description of its prompt.
//   colour segmentation (nearest palette colour within a distance, else background) -> connected components (with a
//   minimum area) -> shape from geometry (solidity, compactness, and the fill ratio of the bounding box: square ~1,
//   diamond ~1/2) -> per-category check, as GenEval does for its categories.
#include <ATen/ATen.h>

#include <map>
#include <string>
#include <vector>

#include "sana/shapes/world.h"

namespace sana::shapes {

struct Detection {
  Shape shape;
  Color color;
  double cx, cy;  // centroid in [0, 1]
  int64_t area;   // pixels
  double fill;    // area / bounding-box area
};

// Each pixel's palette colour (an index into all_colors()), or -1 for background, row-major: the segmentation
// every check starts from.
std::vector<int> color_labels(const at::Tensor& image);

// The shapes ShapesEval tells apart for a prompt set drawn from `palette`: the base world's four, and a concept
// shape (the diamond) only when the palette has it, so that every base-world score keeps its meaning (a blurred
// circle or square can have a diamond's fill).
std::vector<Shape> readable_shapes(const std::vector<Shape>& palette);

// Objects found in an image [3, H, W] in [0, 1], each read as one of `readable`.
std::vector<Detection> detect(const at::Tensor& image, const std::vector<Shape>& readable = all_shapes());

// True when the image shows what the scene's caption asks for (the rule of its category).
bool check(const Scene& scene, const std::vector<Detection>& found);

struct EvalReport {
  std::map<std::string, std::pair<int, int>> per_category;  // category -> (correct, total)
  double category_score(const std::string& category) const;
  double overall() const;  // mean of the category scores
  std::string to_json() const;
  std::string to_markdown() const;
};

void add_result(EvalReport& report, const Scene& scene, bool correct);

}  // namespace sana::shapes
