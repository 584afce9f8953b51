// Generation parameters from JSON (every server request body goes through this), then their validation.
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "sana/frontend/generation_params.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return 0;
  sana::fuzz::expect_clean_answer([&] {
    sana::GenerationParams params;
    sana::set_params_from_json(params, j);
    sana::validate(params);
  });
  return 0;
}
