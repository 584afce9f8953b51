// The shapes world's scene descriptions (eval folders) on arbitrary text: parse, write back, render.
#include "fuzz_util.h"
#include "sana/shapes/world.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sana::fuzz::expect_clean_answer([&] {
    const auto scene = sana::shapes::Scene::from_json(std::string(reinterpret_cast<const char*>(data), size));
    (void)sana::shapes::Scene::from_json(scene.to_json());
    (void)sana::shapes::render(scene, 16);
  });
  return 0;
}
