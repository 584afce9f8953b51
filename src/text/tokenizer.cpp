#include "sana/text/tokenizer.h"

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <vector>

#include "sana/error.h"

namespace fs = std::filesystem;

namespace sana {

namespace {

// The sentencepiece shim (src/text/spm_shim.cpp), loaded once with deep binding; see there for why.
struct SpmApi {
  void* (*load)(const char*, char*, size_t) = nullptr;
  void (*free_model)(void*) = nullptr;
  long (*encode)(void*, const char*, size_t, int**, char*, size_t) = nullptr;
  void (*free_ids)(int*) = nullptr;
  int (*piece_to_id)(void*, const char*) = nullptr;
  int (*unk_id)(void*) = nullptr;
  int (*piece_size)(void*) = nullptr;
  char* (*decode)(void*, const int*, size_t) = nullptr;
  void (*free_text)(char*) = nullptr;
};

std::string shim_path() {
  if (const char* env = std::getenv("SANA_SPM_SHIM"); env && *env) return env;
  // Installed layouts: beside the shared library holding this code (libsana_sprint.so, the C API) or under its
  // sana-sprint/ folder; beside the executable, its parent, or its ../lib/sana-sprint (cmake --install).
  std::vector<fs::path> dirs;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&shim_path), &info) && info.dli_fname) {
    const fs::path object = fs::path(info.dli_fname).parent_path();
    dirs.insert(dirs.end(), {object, object / "sana-sprint"});
  }
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = '\0';
    const fs::path bin = fs::path(exe).parent_path();
    dirs.insert(dirs.end(), {bin, bin.parent_path(), bin.parent_path() / "lib" / "sana-sprint"});
  }
  for (const fs::path& dir : dirs)
    if (fs::exists(dir / "libsana_spm.so")) return (dir / "libsana_spm.so").string();
  return SANA_SPM_SHIM_BUILD_PATH;
}

// AddressSanitizer's dlopen refuses RTLD_DEEPBIND (a deep-bound library may pair the other allocator's malloc and
// free). The shim never lets memory cross its boundary (each side frees what it allocated), so sanitizer builds call
// libc's dlopen past the interceptor (docs/RELIABILITY.md).
void* open_shim(const std::string& path) {
  constexpr int flags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#if defined(__SANITIZE_ADDRESS__)
#define SANA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANA_ASAN 1
#endif
#endif
#ifdef SANA_ASAN
  using DlopenFn = void* (*)(const char*, int);
  static const auto libc_dlopen = reinterpret_cast<DlopenFn>(dlsym(RTLD_NEXT, "dlopen"));
  return libc_dlopen(path.c_str(), flags);
#else
  return dlopen(path.c_str(), flags);
#endif
}

const SpmApi& spm() {
  static SpmApi api;
  static std::once_flag once;
  static std::string error;
  std::call_once(once, [] {
    const std::string path = shim_path();
    void* h = open_shim(path);
    if (!h) {
      error = "cannot load the sentencepiece shim " + path + ": " + dlerror();
      return;
    }
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (!fn) error = std::string("sentencepiece shim lacks ") + name;
    };
    sym(api.load, "sana_spm_load");
    sym(api.free_model, "sana_spm_free");
    sym(api.encode, "sana_spm_encode");
    sym(api.free_ids, "sana_spm_free_ids");
    sym(api.piece_to_id, "sana_spm_piece_to_id");
    sym(api.unk_id, "sana_spm_unk_id");
    sym(api.piece_size, "sana_spm_piece_size");
    sym(api.decode, "sana_spm_decode");
    sym(api.free_text, "sana_spm_free_text");
  });
  if (!error.empty()) throw Error(error);
  return api;
}

}  // namespace

struct GemmaTokenizer::Model {
  void* handle = nullptr;
  ~Model() {
    if (handle) spm().free_model(handle);
  }
};

GemmaTokenizer GemmaTokenizer::from_pretrained(const std::string& dir) {
  const fs::path model = fs::path(dir) / "tokenizer.model";
  if (!fs::exists(model)) {
    if (fs::exists(fs::path(dir) / "tokenizer.json"))
      throw Error("tokenizer " + dir + ": only tokenizer.json (a Hugging Face fast tokenizer) is present; sana-sprint "
                  "reads the SentencePiece model tokenizer.model, which the official SANA-Sprint repositories ship");
    throw Error("tokenizer " + dir + ": no tokenizer.model");
  }
  return from_model_file(model.string());
}

GemmaTokenizer GemmaTokenizer::from_model_file(const std::string& path) {
  if (!fs::is_regular_file(path)) throw Error("tokenizer " + path + ": not a regular file");  // a pipe would block
  const SpmApi& api = spm();
  GemmaTokenizer tok;
  char err[512] = {0};
  tok.model_ = std::make_shared<Model>();
  tok.model_->handle = api.load(path.c_str(), err, sizeof(err));
  if (!tok.model_->handle) throw Error("tokenizer " + path + ": cannot load SentencePiece model: " + err);
  // Gemma's special pieces; a model without them cannot drive the SANA prompt format.
  const int unk = api.unk_id(tok.model_->handle);
  tok.bos_id_ = api.piece_to_id(tok.model_->handle, "<bos>");
  tok.pad_id_ = api.piece_to_id(tok.model_->handle, "<pad>");
  if (tok.bos_id_ == unk || tok.pad_id_ == unk)
    throw Error("tokenizer " + path + ": the model has no <bos> or <pad> piece (not a Gemma-style tokenizer)");
  return tok;
}

std::vector<int> GemmaTokenizer::encode(const std::string& text) const {
  int* ids = nullptr;
  char err[512] = {0};
  const long n = spm().encode(model_->handle, text.data(), text.size(), &ids, err, sizeof(err));
  if (n < 0) throw Error(std::string("tokenizer: cannot encode text: ") + err);
  std::vector<int> out;
  out.reserve(n + 1);
  out.push_back(bos_id_);
  out.insert(out.end(), ids, ids + n);
  spm().free_ids(ids);
  return out;
}

int GemmaTokenizer::vocab_size() const { return spm().piece_size(model_->handle); }

std::string GemmaTokenizer::decode(const std::vector<int>& ids) const {
  char* text = spm().decode(model_->handle, ids.data(), ids.size());
  std::string out(text);
  spm().free_text(text);
  return out;
}

void train_sentencepiece(const std::vector<std::string>& flags) {
  // Training runs Debian's spm_train in a child process: inside this process the trainer's logging would go through
  // the deep-bound shim, where libstdc++'s std::cerr is not the initialised one (it crashes).
  std::vector<std::string> args = {"spm_train"};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw Error("sentencepiece training: fork failed");
  if (pid == 0) {
    execvp("spm_train", argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 127)
    throw Error("sentencepiece training: cannot run spm_train (Debian package 'sentencepiece'; scripts/setup.sh "
                "installs it)");
  if (WEXITSTATUS(status) != 0)
    throw Error("sentencepiece training: spm_train exited with status " + std::to_string(WEXITSTATUS(status)));
}

}  // namespace sana
