#pragma once
// The shapes world (README, docs/RESULTS.md): seeded, deterministic scenes of 1-4 flat objects (4 shapes, 6 colours, 2 sizes) on a
// plain background (plus a shape the shipped models never saw, for teaching a new concept: the diamond), rendered anti-aliased at any size, with a caption from a grammar covering GenEval's categories
// and the structured description an evaluator checks the image against.
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sana::shapes {

enum class Shape { circle, square, triangle, star, diamond };
enum class Color { red, green, blue, yellow, purple, cyan };
enum class Size { small, large };
enum class Category { single_object, two_objects, counting, colors, position, color_attribution };
enum class Relation { none, left_of, right_of, above, below };

// The base world's four shapes: the training data and the fixed prompt sets of the shipped models.
const std::vector<Shape>& all_shapes();
// Every shape the renderer draws and ShapesEval reads: the base four, then the concept shape (the diamond, a square
// standing on a corner) that a LoRA teaches (docs/LORA.md).
const std::vector<Shape>& known_shapes();
// A shape palette from names ("diamond,circle,diamond"): a shape listed twice is drawn twice as often; "" is the base
// world's four. Error on an unknown name.
std::vector<Shape> parse_shapes(const std::string& names);
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

// A random scene of the given category (objects placed without overlap), its caption included, its shapes drawn
// from `shapes` (all_shapes() gives the base world).
Scene random_scene(Category category, Rng& rng, const std::vector<Shape>& shapes = all_shapes());
// The categories a shape palette can caption: all of them, less the two that need two different shapes (two
// objects, colour attribution) when it has a single shape.
std::vector<Category> categories_for(const std::vector<Shape>& shapes);
// Scene number `index` of a seeded stream that cycles through the palette's categories.
Scene scene_for(uint64_t seed, int64_t index, const std::vector<Shape>& shapes = all_shapes());

// [3, size, size] float in [0, 1], 4x4 supersampled edges.
at::Tensor render(const Scene& scene, int size);

// The scene as a ControlNet's scribble: the outline of every object, white on black, `thickness` pixels wide
// (4x4 supersampled), [3, size, size] in [0, 1].
at::Tensor render_scribble(const Scene& scene, int size, double thickness);

// Which pixel (centre) each object covers, the later object on top: [objects, size, size] bool.
at::Tensor object_masks(const Scene& scene, int size);

}  // namespace sana::shapes
