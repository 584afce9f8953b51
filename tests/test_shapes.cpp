// The shapes world: deterministic scenes and renders, captions that agree with the scene, colours where the objects
// are, no overlaps, well-separated palette.
#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

#include "sana/error.h"
#include "sana/shapes/control_eval.h"
#include "sana/shapes/eval.h"
#include "sana/shapes/object_eval.h"
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

// ShapesEval: ground-truth renders score >= 0.99 in every category; deliberately wrong images score as wrong.
TEST(ShapesEval, GroundTruthRendersScoreAtLeast099) {
  for (int size : {64, 128}) {
    EvalReport report;
    for (int i = 0; i < 300; ++i) {
      const Scene s = scene_for(11, i);
      add_result(report, s, check(s, detect(render(s, size))));
    }
    SCOPED_TRACE("size " + std::to_string(size) + "\n" + report.to_markdown());
    for (const auto& [c, v] : report.per_category) EXPECT_GE(report.category_score(c), 0.99) << c;
    EXPECT_GE(report.overall(), 0.99);
  }
}

// The concept shape (the diamond): absent from the base world's stream, the only shape of a one-shape palette's
// stream (which then has no two-object categories), and read by ShapesEval.
TEST(Shapes, ConceptShapePalette) {
  for (int i = 0; i < 600; ++i)
    for (const Object& o : scene_for(1, i).objects) ASSERT_NE(o.shape, Shape::diamond);
  const std::vector<Shape> diamond = parse_shapes("diamond");
  std::set<std::string> categories;
  EvalReport report;
  ObjectReport objects;
  for (int i = 0; i < 200; ++i) {
    const Scene s = scene_for(11, i, diamond);
    categories.insert(name(s.category));
    for (const Object& o : s.objects) EXPECT_EQ(o.shape, Shape::diamond);
    EXPECT_NE(s.caption.find("diamond"), std::string::npos) << s.caption;
    EXPECT_EQ(Scene::from_json(s.to_json()).to_json(), s.to_json());
    const auto found = detect(render(s, 64), readable_shapes(diamond));
    add_result(report, s, check(s, found));
    objects.add(s, found);
    // The base world's reader has no diamonds: it reads one as a square, as it did before the concept existed.
    for (const Detection& d : detect(render(s, 64))) EXPECT_EQ(d.shape, Shape::square);
  }
  EXPECT_EQ(categories, (std::set<std::string>{"single_object", "colors", "counting", "position"}));
  SCOPED_TRACE(report.to_markdown() + objects.to_markdown());
  for (const auto& [c, v] : report.per_category) EXPECT_GE(report.category_score(c), 0.99) << c;
  // The centre of a diamond is covered, the corners of its bounding square are not.
  const Scene one = scene_for(11, 0, diamond);
  const at::Tensor masks = object_masks(one, 64);
  const Object& o = one.objects[0];
  EXPECT_TRUE(masks[0][int(o.cy * 64)][int(o.cx * 64)].item<bool>());
  EXPECT_FALSE(masks[0][int((o.cy - 0.8 * o.radius) * 64)][int((o.cx - 0.8 * o.radius) * 64)].item<bool>());
  // A listed-twice shape is drawn about twice as often (circle, diamond, diamond), counted on one-object scenes
  // (two-object scenes take two different shapes): 400 draws, standard deviation 0.024.
  int diamonds = 0, total = 0;
  for (int i = 0; i < 1200; ++i) {
    const Scene s = scene_for(3, i, parse_shapes("circle,diamond,diamond"));
    if (s.objects.size() == 1) diamonds += s.objects[0].shape == Shape::diamond, ++total;
  }
  EXPECT_EQ(total, 400);
  EXPECT_NEAR(static_cast<double>(diamonds) / total, 2.0 / 3, 0.08);
  EXPECT_EQ(sana::test::error_of([] { parse_shapes("circle,hexagon"); }),
            "--shapes: unknown shape 'hexagon' (known: circle, square, triangle, star, diamond)");
  Rng rng(1);
  EXPECT_THROW(random_scene(Category::two_objects, rng, diamond), sana::Error);
  // With diamonds readable, base scenes still read right (no square or circle taken for a diamond), and a square
  // drawn for a diamond prompt is wrong.
  EvalReport base;
  for (int i = 0; i < 300; ++i) {
    const Scene s = scene_for(11, i);
    add_result(base, s, check(s, detect(render(s, 64), known_shapes())));
  }
  EXPECT_GE(base.overall(), 0.99) << base.to_markdown();
  Scene square = one;
  square.objects[0].shape = Shape::square;
  EXPECT_FALSE(check(one, detect(render(square, 64), known_shapes())));
}

// A position scene with a group before its reference object: the README's "two red circles above a blue square".
TEST(ShapesEval, GroupPositionScenes) {
  Scene s{Category::position,
          {{Shape::circle, Color::red, Size::small, 0.3, 0.25, 0.11},
           {Shape::circle, Color::red, Size::small, 0.7, 0.25, 0.11},
           {Shape::square, Color::blue, Size::small, 0.5, 0.75, 0.11}},
          Relation::above,
          "two red circles above a blue square"};
  EXPECT_EQ(Scene::from_json(s.to_json()).to_json(), s.to_json());
  EXPECT_TRUE(check(s, detect(render(s, 64))));
  Scene one_beside = s;  // one circle beside the square, not above it
  one_beside.objects[1].cx = 0.85, one_beside.objects[1].cy = 0.75;
  EXPECT_FALSE(check(s, detect(render(one_beside, 64))));
  Scene one_circle = s;
  one_circle.objects.erase(one_circle.objects.begin());
  EXPECT_FALSE(check(s, detect(render(one_circle, 64))));
  Scene below = s;
  below.relation = Relation::below;
  EXPECT_FALSE(check(below, detect(render(s, 64))));
  Scene mixed = s;  // the group must be alike
  mixed.objects[1].color = Color::green;
  EXPECT_EQ(sana::test::error_of([&] { Scene::from_json(mixed.to_json()); }),
            "shapes description: a 'position' scene's objects before the last are alike (one group)");
}

TEST(ShapesEval, WrongImagesScoreAsWrong) {
  // Find one scene per category and break it four ways.
  int checked = 0;
  for (int i = 0; i < 60; ++i) {
    const Scene s = scene_for(13, i);
    ASSERT_TRUE(check(s, detect(render(s, 64)))) << s.caption;
    Scene wrong_color = s, wrong_shape = s, wrong_count = s;
    wrong_color.objects[0].color = s.objects[0].color == Color::red ? Color::blue : Color::red;
    wrong_shape.objects[0].shape = s.objects[0].shape == Shape::circle ? Shape::square : Shape::circle;
    EXPECT_FALSE(check(s, detect(render(wrong_color, 64)))) << "wrong colour: " << s.caption;
    if (s.category != Category::counting)  // all objects share one shape there; changing one is a count error too
      EXPECT_FALSE(check(s, detect(render(wrong_shape, 64)))) << "wrong shape: " << s.caption;
    wrong_count.objects.pop_back();
    if (!wrong_count.objects.empty() || s.objects.size() > 1)
      EXPECT_FALSE(check(s, detect(render(wrong_count, 64)))) << "missing object: " << s.caption;
    if (s.category == Category::position) {
      Scene swapped = s;
      std::swap(swapped.objects[0].cx, swapped.objects[1].cx);
      std::swap(swapped.objects[0].cy, swapped.objects[1].cy);
      EXPECT_FALSE(check(s, detect(render(swapped, 64)))) << "wrong position: " << s.caption;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 60);
  // A blank image has no objects.
  EXPECT_TRUE(detect(render(Scene{Category::single_object, {}, Relation::none, ""}, 64)).empty());
}

// The object breakdown: true renders read every object as its shape with nothing extra; a scene drawn with one object's
// shape changed reads that object as the drawn shape; a blank image misses every object.
TEST(ObjectEval, ReadsEachObjectAsDrawn) {
  ObjectReport truth, changed, blank;
  int objects = 0;
  for (int i = 0; i < 120; ++i) {
    const Scene s = scene_for(17, i);
    objects += static_cast<int>(s.objects.size());
    truth.add(s, detect(render(s, 64)));
    Scene drawn = s;
    drawn.objects[0].shape = s.objects[0].shape == Shape::circle ? Shape::square : Shape::circle;
    changed.add(s, detect(render(drawn, 64)));
    blank.add(s, {});
  }
  SCOPED_TRACE(truth.to_markdown());
  EXPECT_EQ(truth.extra, 0);
  int read = 0, missed = 0, read_circle_or_square = 0;
  for (const auto& [object, row] : truth.read_as) {
    EXPECT_GE(truth.recognised(object), 0.99) << object;
    for (const auto& [as, n] : row) read += n;
  }
  EXPECT_EQ(read, objects);
  for (const auto& [object, row] : blank.read_as) missed += row.at("missed");
  EXPECT_EQ(missed, objects);
  EXPECT_EQ(blank.extra, 0);
  // The first object of each scene was drawn as a circle (or a square where it was a circle).
  for (const auto& [object, row] : changed.read_as) {
    if (object.find("circle") != std::string::npos) read_circle_or_square += row.count("square") ? row.at("square") : 0;
    else read_circle_or_square += row.count("circle") ? row.at("circle") : 0;
  }
  EXPECT_GE(read_circle_or_square, 115);  // one changed object per scene; counting scenes' others stay as they are
  EXPECT_LE(read_circle_or_square, 120);
  EXPECT_NE(nlohmann::json::parse(changed.to_json())["read_as"].size(), 0u);
}

TEST(Shapes, DescriptionRoundTrip) {
  for (int i = 0; i < 12; ++i) {
    const Scene s = scene_for(5, i);
    EXPECT_EQ(Scene::from_json(s.to_json()).to_json(), s.to_json());
  }
  EXPECT_ANY_THROW(Scene::from_json("{\"category\": \"nope\"}"));
}

// What each category's check reads must be in the description: a malformed one is an Error, never read past.
TEST(Shapes, MalformedDescriptionsAreErrors) {
  using json = nlohmann::json;
  const json one = json::parse(scene_for(5, 0).to_json())["objects"][0];
  const auto scene = [&](const std::string& category, int objects, const std::string& relation) {
    json j = {{"category", category}, {"caption", "x"}, {"relation", relation}, {"objects", json::array()}};
    for (int i = 0; i < objects; ++i) j["objects"].push_back(one);
    return j;
  };
  struct Case {
    json description;
    std::string expect;
  } cases[] = {
      {scene("two_objects", 1, "none"), "has two objects, not 1"},
      {scene("color_attribution", 3, "none"), "has two objects, not 3"},
      {scene("position", 2, "none"), "needs a relation"},
      {scene("position", 1, "above"), "a 'position' scene has 2 to 4 objects, not 1"},
      {scene("counting", 1, "none"), "2 to 4 objects"},
      {scene("single_object", 0, "none"), "0 objects"},
      {scene("counting", 5, "none"), "5 objects"},
      {scene("single_object", 2, "none"), "has one object, not 2"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.description.dump());
    try {
      Scene::from_json(c.description.dump());
      ADD_FAILURE() << "accepted";
    } catch (const sana::Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
    }
  }
  json bad = scene("single_object", 1, "none");
  bad["objects"][0]["size"] = "huge";
  EXPECT_THROW(Scene::from_json(bad.dump()), sana::Error);
  bad["objects"][0]["size"] = "small";
  bad["objects"][0]["radius"] = 0;
  EXPECT_THROW(Scene::from_json(bad.dump()), sana::Error);
  EXPECT_THROW(Scene::from_json(R"({"category":"single_object","caption":"x","relation":"none","objects":[{"shape":"circle",)"
                                R"("color":"red","size":"small","cx":1e999,"cy":0.5,"radius":0.1}]})"),
               sana::Error);
}

// The scribble outlines each object: stroke pixels lie on the boundary of the object masks (within the thickness),
// the inside of a large object and the far background carry none.
TEST(Shapes, ScribblesOutlineTheObjects) {
  for (int i = 0; i < 12; ++i) {
    const Scene s = scene_for(3, i);
    const at::Tensor scribble = sana::shapes::render_scribble(s, 64, 2.0)[0];
    const at::Tensor masks = sana::shapes::object_masks(s, 64).any(0).to(at::kFloat).view({1, 1, 64, 64});
    // The boundary band: dilation minus erosion of the union of the masks, by 3 pixels (the stroke reaches 1 pixel
    // either side of the true boundary; the masks sample pixel centres).
    const at::Tensor dilated = at::max_pool2d(masks, 7, 1, 3);
    const at::Tensor eroded = -at::max_pool2d(-masks, 7, 1, 3);
    const at::Tensor band = (dilated - eroded)[0][0];
    EXPECT_GT(scribble.sum().item<double>(), 0) << s.caption;
    EXPECT_EQ((scribble * (1 - band)).sum().item<double>(), 0) << s.caption;  // nothing off the band
  }
}

// ControlEval scores the true renders near their ceiling and a blank image at zero.
TEST(ControlEval, TrueRendersAndBlankImages) {
  sana::shapes::ControlReport truth, blank;
  for (int i = 0; i < 60; ++i) {
    const Scene s = scene_for(11, i);
    truth.add(sana::shapes::control_score(s, render(s, 64)));
    blank.add(sana::shapes::control_score(s, render(Scene{s.category, {}, Relation::none, ""}, 64)));
  }
  EXPECT_GT(truth.iou(), 0.85);
  EXPECT_EQ(truth.color_accuracy(), 1.0);
  EXPECT_EQ(blank.iou(), 0.0);
  EXPECT_EQ(blank.color_accuracy(), 0.0);
}
