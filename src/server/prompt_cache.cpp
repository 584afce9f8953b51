// LRU cache of prompt embeddings (prompt_cache.h).
#include "sana/server/prompt_cache.h"

namespace sana::server {

std::pair<at::Tensor, at::Tensor> PromptCache::get(const Pipeline& pipe, const std::string& prompt,
                                                   const PromptOptions& o) {
  const std::string key = std::to_string(o.use_complex_human_instruction) + "|" + std::to_string(o.max_sequence_length) +
                          "|" + (o.use_complex_human_instruction ? o.complex_human_instruction : "") + "|" + prompt;
  if (const auto it = index_.find(key); it != index_.end()) {
    order_.splice(order_.begin(), order_, it->second);
    ++hits_;
    return it->second->second;
  }
  ++misses_;
  auto value = pipe.encode_prompt({prompt}, o);
  order_.emplace_front(key, value);
  index_[key] = order_.begin();
  if (order_.size() > capacity_) {
    index_.erase(order_.back().first);
    order_.pop_back();
  }
  return value;
}

}  // namespace sana::server
