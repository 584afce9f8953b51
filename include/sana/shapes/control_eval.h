#pragma once
// ControlEval: how well an image follows its control scribble. The regions the scribble outlines are the scene's
// objects (their true masks); the analyser's segmentation (ShapesEval's colour labels) gives what the image drew.
//   IoU            = |drawn foreground ∩ outlined regions| / |drawn foreground ∪ outlined regions|, per image;
//   colour accuracy = objects whose outlined region is mostly (> half its pixels) the prompt's colour.
#include <ATen/ATen.h>

#include <string>

#include "sana/shapes/world.h"

namespace sana::shapes {

struct ControlScore {
  double iou = 0;
  int colors_right = 0, objects = 0;
};

// The score of `image` [3, H, W] in [0, 1] against `scene` (rendered at the image's size).
ControlScore control_score(const Scene& scene, const at::Tensor& image);

struct ControlReport {
  double iou_sum = 0;
  int images = 0, colors_right = 0, objects = 0;
  void add(const ControlScore& s);
  double iou() const { return images ? iou_sum / images : 0; }
  double color_accuracy() const { return objects ? static_cast<double>(colors_right) / objects : 0; }
  std::string to_markdown() const;
};

}  // namespace sana::shapes
