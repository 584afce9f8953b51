// The text encoder's prefix cache (prefix_cache.h).
#include "sana/pipeline/prefix_cache.h"

#include <c10/core/InferenceMode.h>

namespace sana {

std::shared_ptr<const Gemma2PrefixState> TextEncoderPrefixCache::get(const Gemma2Model& text_encoder,
                                                                     const std::vector<int64_t>& ids) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = entries_.begin(); it != entries_.end(); ++it)
    if (it->model == &text_encoder && it->state->ids == ids) {
      entries_.splice(entries_.begin(), entries_, it);
      return it->state;
    }
  c10::InferenceMode inference;
  auto state = std::make_shared<const Gemma2PrefixState>(text_encoder.encode_prefix(ids));
  entries_.push_front({&text_encoder, state});
  if (entries_.size() > kEntries) entries_.pop_back();
  return state;
}

}  // namespace sana
