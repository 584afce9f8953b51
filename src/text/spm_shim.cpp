// A C interface to libsentencepiece, built as a separate shared object that sana-sprint dlopen()s with
// RTLD_DEEPBIND | RTLD_LOCAL.
//
// Why: Debian's libsentencepiece.so.0 carries its own copy of protobuf-lite with exported symbols, and LibTorch
// links the system libprotobuf.so.32. Linked into one program the two interpose each other and the process crashes
// in protobuf's static initialisers before main(). Loaded with deep binding, sentencepiece resolves protobuf within
// itself and nothing leaks into the global symbol scope. Only plain C types cross this boundary.
#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {
void set_error(char* err, size_t len, const std::string& msg) {
  if (err && len) {
    std::strncpy(err, msg.c_str(), len - 1);
    err[len - 1] = '\0';
  }
}
}  // namespace

extern "C" {

void* sana_spm_load(const char* path, char* err, size_t err_len) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  const auto status = sp->Load(path);
  if (!status.ok()) {
    set_error(err, err_len, status.ToString());
    delete sp;
    return nullptr;
  }
  return sp;
}

void sana_spm_free(void* sp) { delete static_cast<sentencepiece::SentencePieceProcessor*>(sp); }

// Encodes `text` (length `len`) to ids; *ids is malloc'ed (free with sana_spm_free_ids). Returns the count or -1.
long sana_spm_encode(void* sp, const char* text, size_t len, int** ids, char* err, size_t err_len) {
  std::vector<int> out;
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(sp)->Encode(std::string(text, len), &out);
  if (!status.ok()) {
    set_error(err, err_len, status.ToString());
    return -1;
  }
  *ids = static_cast<int*>(std::malloc(sizeof(int) * (out.empty() ? 1 : out.size())));
  if (!out.empty()) std::memcpy(*ids, out.data(), sizeof(int) * out.size());
  return static_cast<long>(out.size());
}

void sana_spm_free_ids(int* ids) { std::free(ids); }

int sana_spm_piece_to_id(void* sp, const char* piece) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(sp)->PieceToId(piece);
}

int sana_spm_unk_id(void* sp) { return static_cast<sentencepiece::SentencePieceProcessor*>(sp)->unk_id(); }

int sana_spm_piece_size(void* sp) { return static_cast<sentencepiece::SentencePieceProcessor*>(sp)->GetPieceSize(); }

// Decodes ids to text; returns a malloc'ed NUL-terminated string (free with sana_spm_free_ids-compatible free()).
char* sana_spm_decode(void* sp, const int* ids, size_t n) {
  std::string text;
  static_cast<sentencepiece::SentencePieceProcessor*>(sp)->Decode(std::vector<int>(ids, ids + n), &text);
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  std::memcpy(out, text.c_str(), text.size() + 1);
  return out;
}

void sana_spm_free_text(char* text) { std::free(text); }

}  // extern "C"
