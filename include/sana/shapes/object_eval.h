#pragma once
// Where a ShapesEval score goes: each true object of a scene is matched to a detection of its colour (one of its
// shape if there is one; positions only break ties, since a generated image may place objects anywhere the caption
// allows); the table counts what each object was read as (its true shape, another shape, or missed: no detection of
// its colour left), per true size and shape, and the detections that match no object (extra). A VAE that rounds
// corners shows up as small triangles read as squares; a model that drops or adds objects as missed and extra.
#include <map>
#include <string>
#include <vector>

#include "sana/shapes/eval.h"
#include "sana/shapes/world.h"

namespace sana::shapes {

struct ObjectReport {
  // "small triangle" -> ("triangle" | "square" | ... | "missed") -> count
  std::map<std::string, std::map<std::string, int>> read_as;
  int extra = 0;  // detections matched to no object
  void add(const Scene& scene, const std::vector<Detection>& found);
  double recognised(const std::string& object) const;  // fraction of that object read as its true shape
  std::string to_markdown() const;
  std::string to_json() const;
};

}  // namespace sana::shapes
