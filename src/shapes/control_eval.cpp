// ControlEval (control_eval.h).
#include "sana/shapes/control_eval.h"

#include <sstream>

#include "sana/error.h"
#include "sana/shapes/eval.h"

namespace sana::shapes {

ControlScore control_score(const Scene& scene, const at::Tensor& image) {
  if (image.dim() != 3 || image.size(1) != image.size(2)) throw Error("control eval: image must be square [3, H, H]");
  const int size = static_cast<int>(image.size(1));
  const std::vector<int> label = color_labels(image);
  const at::Tensor masks = object_masks(scene, size);
  const auto m = masks.accessor<bool, 3>();
  const int64_t n = masks.size(0);
  ControlScore s;
  int64_t inter = 0, uni = 0;
  std::vector<int64_t> area(n, 0), right(n, 0);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const int l = label[static_cast<size_t>(y) * size + x];
      bool outlined = false;
      for (int64_t i = 0; i < n; ++i)
        if (m[i][y][x]) {
          outlined = true;
          ++area[i];
          right[i] += l >= 0 && all_colors()[l] == scene.objects[i].color;
        }
      inter += outlined && l >= 0;
      uni += outlined || l >= 0;
    }
  s.iou = uni ? static_cast<double>(inter) / uni : 1.0;
  for (int64_t i = 0; i < n; ++i) s.colors_right += area[i] > 0 && 2 * right[i] > area[i];
  s.objects = static_cast<int>(n);
  return s;
}

void ControlReport::add(const ControlScore& s) {
  iou_sum += s.iou;
  ++images;
  colors_right += s.colors_right;
  objects += s.objects;
}

std::string ControlReport::to_markdown() const {
  std::ostringstream out;
  out << "| ControlEval | value |\n|---|---|\n| IoU with the outlined regions | " << iou()
      << " |\n| colour accuracy inside the outlines | " << color_accuracy() << " (" << colors_right << "/" << objects
      << " objects) |\n| images | " << images << " |\n";
  return out.str();
}

}  // namespace sana::shapes
