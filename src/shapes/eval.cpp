#include "sana/shapes/eval.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "sana/error.h"

namespace sana::shapes {
namespace {

constexpr double kMaxColorDistance = 90;  // in 0..255 RGB units; palette colours are >= 150 apart
constexpr double kMinAreaFraction = 0.002;

// Shape from two scale-free measures of the pixel set:
//  solidity    = area / convex-hull area: 1 for the convex shapes, ~0.55 for the star;
//  compactness = area / (pi r_max^2), r_max the largest centroid distance (+ half a pixel for the pixel grid):
//                1 for a circle, 2/pi = 0.64 for a square or a diamond, 0.41 for the equilateral triangle;
//  fill        = area / bounding-box area: tells the square (1) from the diamond (1/2), which have the same
//                compactness and solidity.
Shape classify(double solidity, double compactness, double fill, bool diamonds) {
  if (solidity < 0.78) return Shape::star;
  if (compactness > 0.82) return Shape::circle;
  if (compactness > 0.53) return diamonds && fill <= 0.75 ? Shape::diamond : Shape::square;
  return Shape::triangle;
}

double cross(const std::pair<double, double>& o, const std::pair<double, double>& a, const std::pair<double, double>& b) {
  return (a.first - o.first) * (b.second - o.second) - (a.second - o.second) * (b.first - o.first);
}

// Area of the convex hull of pixel squares (their corners), by the monotone chain.
double hull_area(std::vector<std::pair<double, double>> pts) {
  std::sort(pts.begin(), pts.end());
  pts.erase(std::unique(pts.begin(), pts.end()), pts.end());
  if (pts.size() < 3) return 0;
  std::vector<std::pair<double, double>> h(2 * pts.size());
  size_t k = 0;
  for (size_t i = 0; i < pts.size(); ++i) {
    while (k >= 2 && cross(h[k - 2], h[k - 1], pts[i]) <= 0) --k;
    h[k++] = pts[i];
  }
  for (size_t i = pts.size() - 1, t = k + 1; i-- > 0;) {
    while (k >= t && cross(h[k - 2], h[k - 1], pts[i]) <= 0) --k;
    h[k++] = pts[i];
  }
  h.resize(k - 1);
  double area = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    const auto& a = h[i];
    const auto& b = h[(i + 1) % h.size()];
    area += a.first * b.second - b.first * a.second;
  }
  return std::abs(area) / 2;
}

}  // namespace

std::vector<int> color_labels(const at::Tensor& image) {
  if (image.dim() != 3 || image.size(0) != 3) throw Error("shapes eval: image must be [3, H, W]");
  const int H = image.size(1), W = image.size(2);
  const at::Tensor img = (image.to(at::kFloat).clamp(0, 1) * 255).contiguous();
  auto a = img.accessor<float, 3>();
  std::vector<int> label(static_cast<size_t>(H) * W, -1);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      int best = -1;
      double best_d = kMaxColorDistance;
      for (size_t c = 0; c < all_colors().size(); ++c) {
        const auto p = rgb(all_colors()[c]);
        const double d = std::sqrt(std::pow(a[0][y][x] - p[0], 2) + std::pow(a[1][y][x] - p[1], 2) +
                                   std::pow(a[2][y][x] - p[2], 2));
        if (d < best_d) best_d = d, best = static_cast<int>(c);
      }
      label[static_cast<size_t>(y) * W + x] = best;
    }
  return label;
}

std::vector<Shape> readable_shapes(const std::vector<Shape>& palette) {
  std::vector<Shape> v = all_shapes();
  for (Shape s : palette)
    if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
  return v;
}

std::vector<Detection> detect(const at::Tensor& image, const std::vector<Shape>& readable) {
  const bool diamonds = std::find(readable.begin(), readable.end(), Shape::diamond) != readable.end();
  const std::vector<int> label = color_labels(image);
  const int H = image.size(1), W = image.size(2);
  // 4-connected components per colour.
  std::vector<int> comp(label.size(), -1);
  std::vector<Detection> out;
  const int64_t min_area = std::max<int64_t>(4, static_cast<int64_t>(kMinAreaFraction * H * W));
  std::vector<int> stack;
  for (int start = 0; start < H * W; ++start) {
    if (label[start] < 0 || comp[start] >= 0) continue;
    const int color = label[start];
    int64_t area = 0;
    double sx = 0, sy = 0;
    int x0 = W, x1 = -1, y0 = H, y1 = -1;
    std::vector<int> pixels;
    stack.assign(1, start);
    comp[start] = start;
    while (!stack.empty()) {
      const int p = stack.back();
      stack.pop_back();
      const int x = p % W, y = p / W;
      pixels.push_back(p);
      ++area;
      sx += x + 0.5;
      sy += y + 0.5;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      const int nb[4][2] = {{x - 1, y}, {x + 1, y}, {x, y - 1}, {x, y + 1}};
      for (const auto& n : nb) {
        if (n[0] < 0 || n[0] >= W || n[1] < 0 || n[1] >= H) continue;
        const int q = n[1] * W + n[0];
        if (label[q] == color && comp[q] < 0) {
          comp[q] = start;
          stack.push_back(q);
        }
      }
    }
    if (area < min_area) continue;
    const double fill = static_cast<double>(area) / ((x1 - x0 + 1) * (y1 - y0 + 1));
    const double cx = sx / area, cy = sy / area;
    double r_max = 0;
    std::vector<std::pair<double, double>> corners;
    for (int p : pixels) {
      const int x = p % W, y = p / W;
      r_max = std::max(r_max, std::hypot(x + 0.5 - cx, y + 0.5 - cy));
      for (int dy = 0; dy < 2; ++dy)
        for (int dx = 0; dx < 2; ++dx) corners.emplace_back(x + dx, y + dy);
    }
    const double solidity = area / std::max(1.0, hull_area(corners));
    const double compactness = area / (M_PI * (r_max + 0.5) * (r_max + 0.5));
    out.push_back({classify(solidity, compactness, fill, diamonds), all_colors()[color], cx / W, cy / H, area, fill});
  }
  return out;
}

bool check(const Scene& s, const std::vector<Detection>& found) {
  auto count = [&](Shape shape, Color color) {
    int n = 0;
    for (const auto& d : found) n += d.shape == shape && d.color == color;
    return n;
  };
  auto find = [&](const Object& o) -> const Detection* {
    for (const auto& d : found)
      if (d.shape == o.shape && d.color == o.color) return &d;
    return nullptr;
  };
  switch (s.category) {
    case Category::single_object:
    case Category::colors:
      return found.size() == 1 && find(s.objects[0]) != nullptr;
    case Category::two_objects:
    case Category::color_attribution:
      return found.size() == 2 && find(s.objects[0]) && find(s.objects[1]);
    case Category::counting:
      return static_cast<size_t>(count(s.objects[0].shape, s.objects[0].color)) == s.objects.size() &&
             found.size() == s.objects.size();
    case Category::position: {
      // Every object of the group (all but the last) stands in the relation to the last one.
      const Object& ref = s.objects.back();
      const Detection* b = find(ref);
      const size_t group = s.objects.size() - 1;
      if (found.size() != s.objects.size() || !b) return false;
      if (ref.shape == s.objects[0].shape && ref.color == s.objects[0].color) return false;  // not told apart
      if (static_cast<size_t>(count(s.objects[0].shape, s.objects[0].color)) != group) return false;
      for (const auto& a : found) {
        if (a.shape != s.objects[0].shape || a.color != s.objects[0].color) continue;
        const double dx = a.cx - b->cx, dy = a.cy - b->cy;
        bool ok = false;
        switch (s.relation) {
          case Relation::left_of: ok = dx < 0 && std::abs(dx) > std::abs(dy); break;
          case Relation::right_of: ok = dx > 0 && std::abs(dx) > std::abs(dy); break;
          case Relation::above: ok = dy < 0 && std::abs(dy) > std::abs(dx); break;
          case Relation::below: ok = dy > 0 && std::abs(dy) > std::abs(dx); break;
          default: break;
        }
        if (!ok) return false;
      }
      return true;
    }
  }
  return false;
}

void add_result(EvalReport& r, const Scene& s, bool correct) {
  auto& [ok, total] = r.per_category[name(s.category)];
  ok += correct;
  total += 1;
}

double EvalReport::category_score(const std::string& c) const {
  auto it = per_category.find(c);
  return it == per_category.end() || it->second.second == 0 ? 0.0
                                                            : static_cast<double>(it->second.first) / it->second.second;
}

double EvalReport::overall() const {
  if (per_category.empty()) return 0.0;
  double sum = 0;
  for (const auto& [c, _] : per_category) sum += category_score(c);
  return sum / per_category.size();
}

std::string EvalReport::to_json() const {
  nlohmann::json j;
  for (const auto& [c, v] : per_category) j["categories"][c] = {{"correct", v.first}, {"total", v.second}, {"score", category_score(c)}};
  j["overall"] = overall();
  return j.dump(2);
}

std::string EvalReport::to_markdown() const {
  std::ostringstream s;
  s << "| category | correct | total | score |\n|---|---|---|---|\n";
  for (const auto& [c, v] : per_category)
    s << "| " << c << " | " << v.first << " | " << v.second << " | " << category_score(c) << " |\n";
  s << "| **overall** (mean of categories) | | | " << overall() << " |\n";
  return s.str();
}

}  // namespace sana::shapes
