#pragma once
// The shapes world (README, docs/RESULTS.md): seeded, deterministic scenes of 1-4 flat objects (4 shapes, 6 colours, 2 sizes) on a
// plain background, rendered anti-aliased at any size, with a caption from a grammar covering GenEval's categories
// and the structured description an evaluator checks the image against.
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sana::shapes {

enum class Shape { circle, square, triangle, star };
enum class Color { red, green, blue, yellow, purple, cyan };
enum class Size { small, large };
enum class Category { single_object, two_objects, counting, colors, position, color_attribution };
enum class Relation { none, left_of, right_of, above, below };

const std::vector<Shape>& all_shapes();
const std::vector<Color>& all_colors();
const std::vector<Category>& all_categories();
std::string name(Shape s);
std::string name(Color c);
std::string name(Size s);
std::string name(Category c);
std::string name(Relation r);
// RGB in [0, 255] of each colour and of the background.
std::array<uint8_t, 3> rgb(Color c);
std::array<uint8_t, 3> background_rgb();

struct Object {
  Shape shape;
  Color color;
  Size size;
  double cx, cy;  // centre in [0, 1] image coordinates (x right, y down)
  double radius;  // circumscribed radius in [0, 1] units
};

struct Scene {
  Category category;
  std::vector<Object> objects;
  Relation relation = Relation::none;  // position: objects[0] <relation> objects[1]
  std::string caption;
  std::string to_json() const;  // the structured description
  static Scene from_json(const std::string& text);  // inverse of to_json; Error on a malformed description
};

// Deterministic 64-bit generator (splitmix64): the same numbers on every platform and standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform();             // [0, 1)
  int below(int n);             // 0 .. n-1
 private:
  uint64_t state_;
};

// A random scene of the given category (objects placed without overlap), its caption included.
Scene random_scene(Category category, Rng& rng);
// Scene number `index` of a seeded stream that cycles through the categories.
Scene scene_for(uint64_t seed, int64_t index);

// [3, size, size] float in [0, 1], 4x4 supersampled edges.
at::Tensor render(const Scene& scene, int size);

// The scene as a ControlNet's scribble: the outline of every object, white on black, `thickness` pixels wide
// (4x4 supersampled), [3, size, size] in [0, 1].
at::Tensor render_scribble(const Scene& scene, int size, double thickness);

// Which pixel (centre) each object covers, the later object on top: [objects, size, size] bool.
at::Tensor object_masks(const Scene& scene, int size);

}  // namespace sana::shapes
