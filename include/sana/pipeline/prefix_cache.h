#pragma once
// The text encoder's work on the complex human instruction, done once per process (docs/ARCHITECTURE.md, "Text
// encoder": the prefix cache). Every prompt starts with the same instruction tokens and Gemma-2 is causal, so the
// keys, values and hidden states of those positions are the same for every prompt: they are computed on first use
// and each prompt then runs only its own tokens. Shared by all calls of a pipeline (the server's included).
#include <list>
#include <memory>
#include <mutex>
#include <vector>

#include "sana/models/gemma2.h"

namespace sana {

class TextEncoderPrefixCache {
 public:
  // The state of `ids` under `text_encoder`, computed now if it is not held. A few prefixes are kept (a teacher
  // alternates the instruction and the negative prompt's bare <bos>), the least recently used is dropped.
  std::shared_ptr<const Gemma2PrefixState> get(const Gemma2Model& text_encoder, const std::vector<int64_t>& ids);

 private:
  static constexpr size_t kEntries = 4;
  struct Entry {
    const Gemma2Model* model;
    std::shared_ptr<const Gemma2PrefixState> state;
  };
  std::mutex mutex_;
  std::list<Entry> entries_;  // most recently used first
};

}  // namespace sana
