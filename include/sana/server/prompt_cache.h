#pragma once
// Prompt embeddings by prompt (and prompt options), least recently used first out: a live session sends the same
// prompt with every frame, and the text encoder is most of the cost of a small model's frame.
#include <ATen/ATen.h>

#include <list>
#include <map>
#include <string>
#include <utility>

#include "sana/pipeline/pipeline.h"

namespace sana::server {

class PromptCache {
 public:
  explicit PromptCache(size_t capacity) : capacity_(capacity) {}
  // {embeds [1, L, C], mask [1, L]} of `prompt`, computed by `pipe` on a miss. Not thread-safe: the worker owns it.
  std::pair<at::Tensor, at::Tensor> get(const Pipeline& pipe, const std::string& prompt, const PromptOptions& options);
  size_t hits() const { return hits_; }
  size_t misses() const { return misses_; }

 private:
  using Entry = std::pair<std::string, std::pair<at::Tensor, at::Tensor>>;
  size_t capacity_, hits_ = 0, misses_ = 0;
  std::list<Entry> order_;  // most recent first
  std::map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace sana::server
