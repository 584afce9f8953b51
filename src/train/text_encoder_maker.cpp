// `sana-sprint text-encoder`: the shapes world's tokenizer and frozen random Gemma-2 (sana/train/trainer.h).
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sana/error.h"
#include "sana/io/atomic_file.h"
#include "sana/io/config.h"
#include "sana/io/output_folder.h"
#include "sana/models/gemma2.h"
#include "sana/nn/module_io.h"
#include "sana/text/prompt.h"
#include "sana/text/tokenizer.h"
#include "sana/train/trainer.h"
#include "train/run_log.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {

void make_text_encoder(const std::string& data, const std::string& config, int vocab_size, uint64_t seed,
                       const std::string& out, bool overwrite, const LmPretrainOptions& pretrain) {
  OutputFolderRule rule;
  rule.overwrite = overwrite;
  rule.written_parts = {"tokenizer", "text_encoder"};  // added into a model folder beside what is there
  check_output_folder(out, {{"--data", data}}, rule);
  const ImageCaptionFolder folder = ImageCaptionFolder::open(data);
  const fs::path tok_dir = fs::path(out) / "tokenizer", te_dir = fs::path(out) / "text_encoder";
  fs::create_directories(tok_dir);
  fs::create_directories(te_dir);
  // The pipeline lower-cases and strips prompts before tokenising: train on what the tokenizer will see.
  std::ostringstream text;
  for (const auto& c : folder.captions) text << lower_strip(c) << "\n";
  const std::string captions = (tok_dir / "spm_training_captions.txt").string();
  write_file_atomic(captions, text.str());
  train_sentencepiece({"--input=" + captions, "--model_prefix=" + (tok_dir / "tokenizer").string(),
                       "--vocab_size=" + std::to_string(vocab_size), "--model_type=bpe", "--byte_fallback=true",
                       "--character_coverage=1.0", "--pad_id=0", "--eos_id=1", "--bos_id=2", "--unk_id=3",
                       "--pad_piece=<pad>", "--eos_piece=<eos>", "--bos_piece=<bos>", "--unk_piece=<unk>",
                       "--normalization_rule_name=identity", "--add_dummy_prefix=false",
                       "--remove_extra_whitespaces=false", "--split_digits=true",
                       "--allow_whitespace_only_pieces=true", "--num_threads=1", "--shuffle_input_sentence=false",
                       "--minloglevel=2"});
  fs::remove(tok_dir / "tokenizer.vocab");
  const auto tokenizer = GemmaTokenizer::from_pretrained(tok_dir.string());

  json cfg = json::parse(read_text_file(config), nullptr, false);
  if (!cfg.is_object()) throw Error("--config: " + config + " is not a JSON object");
  cfg["vocab_size"] = tokenizer.vocab_size();
  cfg["model_type"] = "gemma2";
  cfg["architectures"] = {"Gemma2Model"};
  const std::string cfg_path = (te_dir / "config.json").string();
  write_file_atomic(cfg_path, cfg.dump(2) + "\n");
  Gemma2Model model(load_gemma2_config(cfg_path), at::TensorOptions().dtype(at::kFloat));
  nn::init_random(model, seed);
  std::string how = "random";
  if (pretrain.steps > 0) {
    LmPretrainOptions o = pretrain;
    fs::create_directories(te_dir / "training");
    o.log_path = (te_dir / "training" / "log.jsonl").string();
    const LmPretrainReport r = pretrain_language_model(model, tokenizer, folder.captions, o);
    how = "pretrained on " + std::to_string(r.train_captions) + " captions: held-out loss " +
          c10::str(r.heldout_loss_before) + " -> " + c10::str(r.heldout_loss_after) + " nats/token";
  }
  nn::save_state_dict(model, (te_dir / "model.safetensors").string(), {{"format", "pt"}});
  detail::note("tokenizer: " + std::to_string(tokenizer.vocab_size()) + " pieces; text encoder: " +
               std::to_string(nn::count_parameters(model)) + " parameters (" + how + "; frozen from here) in " + out);
}

}  // namespace sana
