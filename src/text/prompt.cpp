#include "sana/text/prompt.h"

#include <locale.h>
#include <wctype.h>

#include "sana/error.h"

namespace sana {

const std::string& default_complex_human_instruction() {
  static const std::string text =
      "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable for "
      "image generation. Evaluate the level of detail in the user prompt:\n"
      "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial "
      "relationships to create vivid and concrete scenes.\n"
      "- If the prompt is already detailed, refine and enhance the existing details slightly without "
      "overcomplicating.\n"
      "Here are examples of how to transform or refine prompts:\n"
      "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping "
      "peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.\n"
      "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street "
      "lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass "
      "skyscrapers.\n"
      "Please generate only the enhanced description for the prompt below and avoid including any additional "
      "commentary or evaluations:\n"
      "User Prompt: ";
  return text;
}

namespace {

// UTF-8 <-> code points; invalid bytes pass through unchanged as single units.
void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

bool is_space(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

}  // namespace

std::string lower_strip(const std::string& text) {
  // A private C.UTF-8 locale for towlower_l: the process locale stays untouched.
  static locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
  std::vector<char32_t> cps;
  for (size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > text.size()) {
      cps.push_back(b);  // not UTF-8: keep the byte
      ++i;
      continue;
    }
    char32_t c = len == 1 ? b : (b & (0x7F >> len));
    for (int k = 1; k < len; ++k) c = (c << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    cps.push_back(c);
    i += len;
  }
  size_t begin = 0, end = cps.size();
  while (begin < end && is_space(cps[begin])) ++begin;
  while (end > begin && is_space(cps[end - 1])) --end;
  std::string out;
  for (size_t i = begin; i < end; ++i)
    append_utf8(out, utf8 ? static_cast<char32_t>(towlower_l(static_cast<wint_t>(cps[i]), utf8)) : cps[i]);
  return out;
}

TokenizedPrompts tokenize_prompts(const GemmaTokenizer& tokenizer, const std::vector<std::string>& prompts,
                                  const PromptOptions& o) {
  if (prompts.empty()) throw Error("no prompt given");
  if (o.max_sequence_length < 2) throw Error("max_sequence_length must be at least 2");
  const bool chi = o.use_complex_human_instruction && !o.complex_human_instruction.empty();
  TokenizedPrompts out;
  out.prefix_ids = tokenizer.encode(chi ? o.complex_human_instruction : std::string());
  const int64_t max_len =
      chi ? static_cast<int64_t>(out.prefix_ids.size()) + o.max_sequence_length - 2 : o.max_sequence_length;
  const int64_t B = prompts.size();
  out.input_ids = at::full({B, max_len}, tokenizer.pad_id(), at::kLong);
  out.attention_mask = at::zeros({B, max_len}, at::kLong);
  auto ids_acc = out.input_ids.accessor<int64_t, 2>();
  auto mask_acc = out.attention_mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const std::string text = (chi ? o.complex_human_instruction : std::string()) + lower_strip(prompts[b]);
    std::vector<int> ids = tokenizer.encode(text);
    if (static_cast<int64_t>(ids.size()) > max_len) ids.resize(max_len);  // truncation keeps <bos> and the head
    for (size_t i = 0; i < ids.size(); ++i) {
      ids_acc[b][i] = ids[i];
      mask_acc[b][i] = 1;
    }
  }
  // Keep <bos> and the last max_sequence_length - 1 positions (the end of the CHI, the prompt, the padding).
  const int64_t keep = o.max_sequence_length - 1;
  out.select_index = at::cat({at::zeros({1}, at::kLong), at::arange(max_len - keep, max_len, at::kLong)});
  return out;
}

}  // namespace sana
