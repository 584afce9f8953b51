#pragma once
// Gemma's tokenizer (SentencePiece BPE with byte fallback) as transformers' GemmaTokenizer uses it for the SANA
// pipelines: ids = [<bos>] + sentencepiece(text), right padding with <pad>, truncation. libsentencepiece is reached
// through a small shim loaded at run time (see src/text/spm_shim.cpp for why).
// Limitation: special-token literals typed into a prompt ("<bos>", "<start_of_turn>") are encoded as text, not
// split out as the Python tokenizer would.
#include <memory>
#include <string>
#include <vector>

namespace sana {

class GemmaTokenizer {
 public:
  // Loads `<dir>/tokenizer.model`. A directory with only a fast-tokenizer `tokenizer.json` is an Error saying so.
  static GemmaTokenizer from_pretrained(const std::string& dir);
  static GemmaTokenizer from_model_file(const std::string& path);

  // [<bos>] + pieces (no padding, no truncation).
  std::vector<int> encode(const std::string& text) const;
  int bos_id() const { return bos_id_; }
  int pad_id() const { return pad_id_; }
  int vocab_size() const;
  std::string decode(const std::vector<int>& ids) const;

 private:
  struct Model;
  std::shared_ptr<Model> model_;
  int bos_id_ = 2, pad_id_ = 0;
};

// Trains a SentencePiece model with Debian's spm_train; `flags` are its flags ("--input=...", "--model_prefix=...").
void train_sentencepiece(const std::vector<std::string>& flags);

}  // namespace sana
