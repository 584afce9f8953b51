// Prompt processing with the reference tokenizer on arbitrary text (any bytes, invalid UTF-8 included): lower/strip,
// tokenisation, padding and the kept positions; one input in four with the complex human instruction in front (its
// 2 kB of text would otherwise dominate every execution).
#include <ATen/ATen.h>

#include "fuzz_util.h"
#include "sana/text/prompt.h"
#include "sana/text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const sana::GemmaTokenizer tokenizer =
      sana::GemmaTokenizer::from_pretrained(std::string(SANA_FIXTURES) + "/pipeline_sprint_tiny/tokenizer");
  const std::string text(reinterpret_cast<const char*>(data), size);
  sana::fuzz::expect_clean_answer([&] {
    sana::PromptOptions options;
    options.max_sequence_length = 1 + static_cast<int>(size % 300);
    options.use_complex_human_instruction = size % 4 == 0;
    const auto t = sana::tokenize_prompts(tokenizer, {text, ""}, options);
    (void)t.input_ids.index_select(1, t.select_index).sum().item<int64_t>();
  });
  return 0;
}
