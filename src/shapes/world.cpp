#include "sana/shapes/world.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "sana/error.h"

namespace sana::shapes {

const std::vector<Shape>& all_shapes() {
  static const std::vector<Shape> v = {Shape::circle, Shape::square, Shape::triangle, Shape::star};
  return v;
}
const std::vector<Shape>& known_shapes() {
  static const std::vector<Shape> v = {Shape::circle, Shape::square, Shape::triangle, Shape::star, Shape::diamond};
  return v;
}
const std::vector<Color>& all_colors() {
  static const std::vector<Color> v = {Color::red, Color::green, Color::blue, Color::yellow, Color::purple, Color::cyan};
  return v;
}
const std::vector<Category>& all_categories() {
  static const std::vector<Category> v = {Category::single_object, Category::two_objects, Category::counting,
                                          Category::colors, Category::position, Category::color_attribution};
  return v;
}

std::string name(Shape s) {
  switch (s) {
    case Shape::circle: return "circle";
    case Shape::square: return "square";
    case Shape::triangle: return "triangle";
    case Shape::star: return "star";
    case Shape::diamond: return "diamond";
  }
  return "?";
}
std::string name(Color c) {
  switch (c) {
    case Color::red: return "red";
    case Color::green: return "green";
    case Color::blue: return "blue";
    case Color::yellow: return "yellow";
    case Color::purple: return "purple";
    case Color::cyan: return "cyan";
  }
  return "?";
}
std::string name(Size s) { return s == Size::small ? "small" : "large"; }
std::string name(Category c) {
  switch (c) {
    case Category::single_object: return "single_object";
    case Category::two_objects: return "two_objects";
    case Category::counting: return "counting";
    case Category::colors: return "colors";
    case Category::position: return "position";
    case Category::color_attribution: return "color_attribution";
  }
  return "?";
}
std::string name(Relation r) {
  switch (r) {
    case Relation::none: return "none";
    case Relation::left_of: return "left of";
    case Relation::right_of: return "right of";
    case Relation::above: return "above";
    case Relation::below: return "below";
  }
  return "?";
}

// Well separated in RGB (pairwise distance >= 150) and far from the background.
std::array<uint8_t, 3> rgb(Color c) {
  switch (c) {
    case Color::red: return {230, 20, 20};
    case Color::green: return {20, 180, 20};
    case Color::blue: return {20, 40, 230};
    case Color::yellow: return {240, 220, 0};
    case Color::purple: return {190, 20, 200};
    case Color::cyan: return {0, 200, 220};
  }
  return {0, 0, 0};
}
std::array<uint8_t, 3> background_rgb() { return {245, 245, 240}; }

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
double Rng::uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
int Rng::below(int n) { return static_cast<int>(uniform() * n); }

namespace {

const char* const kNumbers[] = {"zero", "one", "two", "three", "four"};

double radius_of(Size s) { return s == Size::small ? 0.11 : 0.18; }

// Places objects at random without overlap (and inside the frame); returns false if it gave up.
bool place(std::vector<Object>& objs, Rng& rng) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    bool ok = true;
    for (size_t i = 0; i < objs.size() && ok; ++i) {
      Object& o = objs[i];
      o.cx = o.radius + 0.02 + rng.uniform() * (1 - 2 * (o.radius + 0.02));
      o.cy = o.radius + 0.02 + rng.uniform() * (1 - 2 * (o.radius + 0.02));
      for (size_t j = 0; j < i && ok; ++j)
        ok = std::hypot(o.cx - objs[j].cx, o.cy - objs[j].cy) > o.radius + objs[j].radius + 0.04;
    }
    if (ok) return true;
  }
  return false;
}

Object make(Shape s, Color c, Size z) { return {s, c, z, 0, 0, radius_of(z)}; }

std::string describe(const Object& o, bool with_size) {
  return (with_size ? name(o.size) + " " : std::string()) + name(o.color) + " " + name(o.shape);
}

std::string article(const std::string& word) {
  return std::string("aeiou").find(word[0]) != std::string::npos ? "an " : "a ";
}

}  // namespace

std::vector<Category> categories_for(const std::vector<Shape>& shapes) {
  if (shapes.empty()) throw Error("shapes: a shape palette needs at least one shape");
  const bool one_shape = std::all_of(shapes.begin(), shapes.end(), [&](Shape s) { return s == shapes[0]; });
  std::vector<Category> v;
  for (Category c : all_categories())
    if (!(one_shape && (c == Category::two_objects || c == Category::color_attribution))) v.push_back(c);
  return v;
}

Scene random_scene(Category category, Rng& rng, const std::vector<Shape>& shapes) {
  const std::vector<Category> possible = categories_for(shapes);
  if (std::find(possible.begin(), possible.end(), category) == possible.end())
    throw Error("shapes: a '" + name(category) + "' scene needs two different shapes in the palette");
  auto shape = [&] { return shapes[rng.below(static_cast<int>(shapes.size()))]; };
  auto color = [&] { return all_colors()[rng.below(6)]; };
  auto size = [&] { return rng.below(2) ? Size::large : Size::small; };
  Scene s;
  s.category = category;
  for (int attempt = 0;; ++attempt) {
    s.objects.clear();
    s.relation = Relation::none;
    switch (category) {
      case Category::single_object:
      case Category::colors: {
        s.objects.push_back(make(shape(), color(), size()));
        const std::string d = describe(s.objects[0], category == Category::single_object);
        s.caption = article(d) + d;
        break;
      }
      case Category::two_objects:
      case Category::color_attribution: {
        // Two different shapes (and, for colour attribution, two different colours bound to them).
        const Shape a = shape();
        Shape b = shape();
        while (b == a) b = shape();
        const Color ca = color();
        Color cb = color();
        while (category == Category::color_attribution && cb == ca) cb = color();
        s.objects = {make(a, ca, Size::large), make(b, cb, Size::small)};
        const std::string da = describe(s.objects[0], false), db = describe(s.objects[1], false);
        s.caption = article(da) + da + " and " + article(db) + db;
        break;
      }
      case Category::counting: {
        const int n = 2 + rng.below(3);
        const Shape a = shape();
        const Color c = color();
        for (int i = 0; i < n; ++i) s.objects.push_back(make(a, c, Size::small));
        s.caption = std::string(kNumbers[n]) + " " + name(c) + " " + name(a) + "s";
        break;
      }
      case Category::position: {
        const Shape a = shape();
        Shape b = shape();
        const Color ca = color();
        Color cb = color();
        while (b == a && cb == ca) cb = color();
        s.objects = {make(a, ca, Size::small), make(b, cb, Size::small)};
        break;
      }
    }
    if (!place(s.objects, rng)) {
      if (attempt > 20) throw Error("shapes: could not place the objects of a scene");
      continue;
    }
    if (category == Category::position) {
      // The caption states the dominant axis of the displacement; scenes where it is ambiguous are redrawn.
      const double dx = s.objects[0].cx - s.objects[1].cx, dy = s.objects[0].cy - s.objects[1].cy;
      if (std::abs(std::abs(dx) - std::abs(dy)) < 0.15) continue;
      s.relation = std::abs(dx) > std::abs(dy) ? (dx < 0 ? Relation::left_of : Relation::right_of)
                                                : (dy < 0 ? Relation::above : Relation::below);
      const std::string da = describe(s.objects[0], false), db = describe(s.objects[1], false);
      s.caption = article(da) + da + " " + name(s.relation) + " " + article(db) + db;
    }
    return s;
  }
}

Scene scene_for(uint64_t seed, int64_t index, const std::vector<Shape>& shapes) {
  Rng rng(seed * 0x100000001B3ull + static_cast<uint64_t>(index));
  const std::vector<Category> categories = categories_for(shapes);
  return random_scene(categories[index % categories.size()], rng, shapes);
}

std::vector<Shape> parse_shapes(const std::string& names) {
  if (names.empty()) return all_shapes();
  std::vector<Shape> shapes;
  size_t start = 0;
  while (start <= names.size()) {
    const size_t end = std::min(names.find(',', start), names.size());
    const std::string word = names.substr(start, end - start);
    auto it = std::find_if(known_shapes().begin(), known_shapes().end(), [&](Shape s) { return name(s) == word; });
    if (it == known_shapes().end()) {
      std::string known;
      for (Shape s : known_shapes()) known += (known.empty() ? "" : ", ") + name(s);
      throw Error("--shapes: unknown shape '" + word + "' (known: " + known + ")");
    }
    shapes.push_back(*it);
    start = end + 1;
  }
  return shapes;
}

namespace {

// Signed inside test in object-local coordinates (units of the radius).
bool inside(Shape shape, double x, double y) {
  switch (shape) {
    case Shape::circle: return x * x + y * y <= 1.0;
    case Shape::square: return std::abs(x) <= 0.75 && std::abs(y) <= 0.75;
    case Shape::diamond: return std::abs(x) + std::abs(y) <= 1.0;  // corners on the circumscribed circle
    case Shape::triangle: {  // upward, vertices at angle -90, 30, 150 degrees on the unit circle
      const double h = 0.5;  // base at y = 0.5, apex at y = -1
      if (y > h || y < -1) return false;
      const double half_width = (y + 1) / 1.5 * 0.8660254 * 1.0;
      return std::abs(x) <= half_width;
    }
    case Shape::star: {  // 5 points, inner radius 0.45
      const double r = std::hypot(x, y);
      if (r > 1) return false;
      double a = std::atan2(x, -y);  // 0 at the top point
      const double sector = 2 * M_PI / 5;
      a = std::fmod(std::fmod(a, sector) + sector, sector);
      const double t = std::abs(a - sector / 2) / (sector / 2);  // 1 at a point, 0 between points
      const double inner = 0.45, outer = 1.0;
      // Boundary radius along the straight edge between an inner and an outer vertex.
      const double phi = (1 - t) * sector / 2;  // angle from the point direction
      const double ax = outer, ay = 0, bx = inner * std::cos(sector / 2), by = inner * std::sin(sector / 2);
      const double dx = std::cos(phi), dy = std::sin(phi);
      // Intersect the ray (dx, dy) with segment a-b.
      const double ex = bx - ax, ey = by - ay;
      const double denom = dx * ey - dy * ex;
      const double s = (ax * ey - ay * ex) / denom;
      return r <= s;
    }
  }
  return false;
}

}  // namespace

at::Tensor object_masks(const Scene& scene, int size) {
  if (size < 8) throw Error("shapes: image size must be at least 8 pixels");
  at::Tensor masks = at::zeros({static_cast<int64_t>(scene.objects.size()), size, size}, at::kBool);
  auto m = masks.accessor<bool, 3>();
  for (int py = 0; py < size; ++py)
    for (int px = 0; px < size; ++px) {
      const double x = (px + 0.5) / size, y = (py + 0.5) / size;
      for (size_t i = scene.objects.size(); i-- > 0;) {  // the last drawn object is on top
        const Object& o = scene.objects[i];
        if (inside(o.shape, (x - o.cx) / o.radius, (y - o.cy) / o.radius)) {
          m[i][py][px] = true;
          break;
        }
      }
    }
  return masks;
}

at::Tensor render_scribble(const Scene& scene, int size, double thickness) {
  if (size < 8) throw Error("shapes: image size must be at least 8 pixels");
  if (!(thickness > 0)) throw Error("shapes: scribble thickness must be positive");
  at::Tensor img = at::empty({3, size, size}, at::kFloat);
  auto acc = img.accessor<float, 3>();
  constexpr int kSub = 4, kDirections = 12;
  const double reach = thickness / 2 / size;  // half the stroke, in [0, 1] units
  for (int py = 0; py < size; ++py)
    for (int px = 0; px < size; ++px) {
      int on = 0;
      for (int sy = 0; sy < kSub; ++sy)
        for (int sx = 0; sx < kSub; ++sx) {
          const double x = (px + (sx + 0.5) / kSub) / size, y = (py + (sy + 0.5) / kSub) / size;
          // On the stroke when a point within `reach` lies on the other side of some object's boundary.
          bool stroke = false;
          for (const Object& o : scene.objects) {
            const bool in = inside(o.shape, (x - o.cx) / o.radius, (y - o.cy) / o.radius);
            for (int d = 0; d < kDirections && !stroke; ++d) {
              const double a = 2 * M_PI * d / kDirections;
              const double qx = x + reach * std::cos(a), qy = y + reach * std::sin(a);
              stroke = inside(o.shape, (qx - o.cx) / o.radius, (qy - o.cy) / o.radius) != in;
            }
            if (stroke) break;
          }
          on += stroke;
        }
      const float v = static_cast<float>(on) / (kSub * kSub);
      for (int k = 0; k < 3; ++k) acc[k][py][px] = v;
    }
  return img;
}

at::Tensor render(const Scene& scene, int size) {
  if (size < 8) throw Error("shapes: image size must be at least 8 pixels");
  const auto bg = background_rgb();
  at::Tensor img = at::empty({3, size, size}, at::kFloat);
  auto acc = img.accessor<float, 3>();
  constexpr int kSub = 4;
  for (int py = 0; py < size; ++py)
    for (int px = 0; px < size; ++px) {
      double sum[3] = {0, 0, 0};
      for (int sy = 0; sy < kSub; ++sy)
        for (int sx = 0; sx < kSub; ++sx) {
          const double x = (px + (sx + 0.5) / kSub) / size, y = (py + (sy + 0.5) / kSub) / size;
          std::array<uint8_t, 3> c = bg;
          for (const Object& o : scene.objects)
            if (inside(o.shape, (x - o.cx) / o.radius, (y - o.cy) / o.radius)) c = rgb(o.color);
          for (int k = 0; k < 3; ++k) sum[k] += c[k];
        }
      for (int k = 0; k < 3; ++k) acc[k][py][px] = static_cast<float>(sum[k] / (kSub * kSub) / 255.0);
    }
  return img;
}

namespace {
template <class E>
E parse_enum(const std::string& text, const std::vector<E>& all, const char* what) {
  for (E e : all)
    if (name(e) == text) return e;
  throw Error(std::string("shapes description: unknown ") + what + " '" + text + "'");
}
}  // namespace

Scene Scene::from_json(const std::string& text) {
  Scene s;
  try {
    const auto j = nlohmann::json::parse(text);
    s.category = parse_enum(j.at("category").get<std::string>(), all_categories(), "category");
    s.caption = j.at("caption").get<std::string>();
    s.relation = parse_enum<Relation>(j.at("relation").get<std::string>(),
                            {Relation::none, Relation::left_of, Relation::right_of, Relation::above, Relation::below},
                            "relation");
    for (const auto& o : j.at("objects"))
      s.objects.push_back({parse_enum(o.at("shape").get<std::string>(), known_shapes(), "shape"),
                           parse_enum(o.at("color").get<std::string>(), all_colors(), "colour"),
                           parse_enum<Size>(o.at("size").get<std::string>(), {Size::small, Size::large}, "size"),
                           o.at("cx").get<double>(), o.at("cy").get<double>(), o.at("radius").get<double>()});
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("shapes description: ") + e.what());
  }
  // What each category's check reads must be there: one object, two, 2-4 alike, and for a position a group of 1-3
  // alike objects with a relation to the last one ("two red circles above a blue square").
  const size_t n = s.objects.size();
  const bool two = s.category == Category::two_objects || s.category == Category::color_attribution;
  if (n < 1 || n > 4) throw Error("shapes description: " + std::to_string(n) + " objects (1 to 4)");
  if ((s.category == Category::single_object || s.category == Category::colors) && n != 1)
    throw Error("shapes description: a '" + name(s.category) + "' scene has one object, not " + std::to_string(n));
  if (two && n != 2)
    throw Error("shapes description: a '" + name(s.category) + "' scene has two objects, not " + std::to_string(n));
  if (s.category == Category::counting && n < 2)
    throw Error("shapes description: a 'counting' scene has 2 to 4 objects, not " + std::to_string(n));
  if (s.category == Category::position && n < 2)
    throw Error("shapes description: a 'position' scene has 2 to 4 objects, not " + std::to_string(n));
  if (s.category == Category::position && s.relation == Relation::none)
    throw Error("shapes description: a 'position' scene needs a relation");
  for (size_t i = 1; s.category == Category::position && i + 1 < n; ++i)
    if (s.objects[i].shape != s.objects[0].shape || s.objects[i].color != s.objects[0].color)
      throw Error("shapes description: a 'position' scene's objects before the last are alike (one group)");
  for (const Object& o : s.objects)
    if (!(std::isfinite(o.cx) && std::isfinite(o.cy) && std::isfinite(o.radius) && o.radius > 0 && o.radius < 1))
      throw Error("shapes description: object coordinates must be finite, radius in (0, 1)");
  return s;
}

std::string Scene::to_json() const {
  nlohmann::json j;
  j["category"] = name(category);
  j["caption"] = caption;
  j["relation"] = name(relation);
  for (const Object& o : objects)
    j["objects"].push_back({{"shape", name(o.shape)}, {"color", name(o.color)}, {"size", name(o.size)},
                            {"cx", o.cx}, {"cy", o.cy}, {"radius", o.radius}});
  return j.dump();
}

}  // namespace sana::shapes
