#include "sana/shapes/object_eval.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <sstream>

namespace sana::shapes {

void ObjectReport::add(const Scene& scene, const std::vector<Detection>& found) {
  // Generated images place objects anywhere the caption allows, so matching is by colour, not position: first every
  // object that has a detection of its colour and shape takes one, then the rest take any detection of their colour
  // (the nearest, which for a VAE round trip is the object itself).
  std::vector<int> match(scene.objects.size(), -1);
  std::vector<bool> used(found.size(), false);
  for (bool same_shape : {true, false})
    for (size_t i = 0; i < scene.objects.size(); ++i) {
      const Object& o = scene.objects[i];
      if (match[i] >= 0) continue;
      double best_d = std::numeric_limits<double>::infinity();
      for (size_t k = 0; k < found.size(); ++k) {
        const double d = std::hypot(found[k].cx - o.cx, found[k].cy - o.cy);
        if (!used[k] && found[k].color == o.color && (!same_shape || found[k].shape == o.shape) && d < best_d)
          best_d = d, match[i] = static_cast<int>(k);
      }
      if (match[i] >= 0) used[match[i]] = true;
    }
  for (size_t i = 0; i < scene.objects.size(); ++i) {
    const Object& o = scene.objects[i];
    read_as[name(o.size) + " " + name(o.shape)][match[i] >= 0 ? name(found[match[i]].shape) : "missed"] += 1;
  }
  for (bool u : used) extra += !u;
}

double ObjectReport::recognised(const std::string& object) const {
  auto it = read_as.find(object);
  if (it == read_as.end()) return 0;
  int total = 0;
  for (const auto& [_, n] : it->second) total += n;
  const std::string shape = object.substr(object.find(' ') + 1);
  auto right = it->second.find(shape);
  return total == 0 || right == it->second.end() ? 0.0 : static_cast<double>(right->second) / total;
}

namespace {
std::vector<std::string> columns() {
  std::vector<std::string> c;
  for (Shape s : known_shapes()) c.push_back(name(s));
  c.push_back("missed");
  return c;
}
}  // namespace

std::string ObjectReport::to_markdown() const {
  std::ostringstream s;
  s << "| object \\ read as |";
  for (const auto& c : columns()) s << " " << c << " |";
  s << " recognised |\n|---|";
  for (size_t i = 0; i <= columns().size(); ++i) s << "---|";
  s << "\n";
  for (const auto& [object, row] : read_as) {
    s << "| " << object << " |";
    for (const auto& c : columns()) {
      auto it = row.find(c);
      s << " " << (it == row.end() ? 0 : it->second) << " |";
    }
    s << " " << recognised(object) << " |\n";
  }
  s << "\ndetections matching no object: " << extra << "\n";
  return s.str();
}

std::string ObjectReport::to_json() const {
  nlohmann::json j;
  for (const auto& [object, row] : read_as) {
    j["read_as"][object] = row;
    j["recognised"][object] = recognised(object);
  }
  j["extra"] = extra;
  return j.dump(2);
}

}  // namespace sana::shapes
