// The shapes world: deterministic scenes and renders, captions that agree with the scene, colours where the objects
// are, no overlaps, well-separated palette.
#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

#include "sana/shapes/world.h"
#include "test_util.h"

using namespace sana::shapes;

TEST(Shapes, DeterministicForASeed) {
  for (int i = 0; i < 12; ++i) {
    const Scene a = scene_for(7, i), b = scene_for(7, i);
    EXPECT_EQ(a.to_json(), b.to_json());
    EXPECT_TRUE(at::equal(render(a, 32), render(b, 32)));
  }
  EXPECT_NE(scene_for(7, 0).to_json(), scene_for(8, 0).to_json());
}

TEST(Shapes, CategoriesCaptionsAndGeometryAgree) {
  std::set<std::string> categories;
  for (int i = 0; i < 600; ++i) {
    const Scene s = scene_for(1, i);
    categories.insert(name(s.category));
    ASSERT_FALSE(s.caption.empty());
    for (const Object& o : s.objects) {
      EXPECT_NE(s.caption.find(name(o.color)), std::string::npos) << s.caption;
      EXPECT_NE(s.caption.find(name(o.shape)), std::string::npos) << s.caption;
      EXPECT_GE(o.cx - o.radius, 0.0);
      EXPECT_LE(o.cx + o.radius, 1.0);
    }
    for (size_t a = 0; a < s.objects.size(); ++a)
      for (size_t b = 0; b < a; ++b)
        EXPECT_GT(std::hypot(s.objects[a].cx - s.objects[b].cx, s.objects[a].cy - s.objects[b].cy),
                  s.objects[a].radius + s.objects[b].radius);
    if (s.category == Category::counting) {
      EXPECT_GE(s.objects.size(), 2u);
      EXPECT_LE(s.objects.size(), 4u);
    }
    if (s.category == Category::position) {
      const double dx = s.objects[0].cx - s.objects[1].cx, dy = s.objects[0].cy - s.objects[1].cy;
      switch (s.relation) {
        case Relation::left_of: EXPECT_TRUE(dx < 0 && std::abs(dx) > std::abs(dy)); break;
        case Relation::right_of: EXPECT_TRUE(dx > 0 && std::abs(dx) > std::abs(dy)); break;
        case Relation::above: EXPECT_TRUE(dy < 0 && std::abs(dy) > std::abs(dx)); break;
        case Relation::below: EXPECT_TRUE(dy > 0 && std::abs(dy) > std::abs(dx)); break;
        default: ADD_FAILURE() << "position scene without relation";
      }
      EXPECT_NE(s.caption.find(name(s.relation)), std::string::npos) << s.caption;
    }
    if (s.category == Category::color_attribution) EXPECT_NE(s.objects[0].color, s.objects[1].color);
    EXPECT_EQ(nlohmann::json::parse(s.to_json())["objects"].size(), s.objects.size());
  }
  EXPECT_EQ(categories.size(), 6u);
}

TEST(Shapes, ObjectColoursAtTheirCentres) {
  const int size = 64;
  for (int i = 0; i < 60; ++i) {
    const Scene s = scene_for(3, i);
    const at::Tensor img = render(s, size);
    ASSERT_EQ(img.sizes(), (std::vector<int64_t>{3, size, size}));
    for (const Object& o : s.objects) {
      const int px = static_cast<int>(o.cx * size), py = static_cast<int>(o.cy * size);
      const auto c = rgb(o.color);
      for (int k = 0; k < 3; ++k) EXPECT_NEAR(img[k][py][px].item<float>() * 255, c[k], 0.5) << s.caption;
    }
    // Corners are background (objects keep a margin from the frame).
    EXPECT_NEAR(img[0][0][0].item<float>() * 255, background_rgb()[0], 0.5);
  }
}

TEST(Shapes, PaletteIsWellSeparated) {
  std::vector<std::array<uint8_t, 3>> palette;
  for (Color c : all_colors()) palette.push_back(rgb(c));
  palette.push_back(background_rgb());
  for (size_t a = 0; a < palette.size(); ++a)
    for (size_t b = 0; b < a; ++b) {
      double d = 0;
      for (int k = 0; k < 3; ++k) d += std::pow(double(palette[a][k]) - palette[b][k], 2);
      EXPECT_GE(std::sqrt(d), 150.0) << a << " vs " << b;
    }
}
