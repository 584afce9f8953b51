// Hostile input through the command line, one test per class of failure (docs/RELIABILITY.md): every case ends within
// a time limit (no hang), by exit status 1 (no signal), with one error line that names the file, field or flag, and
// leaves the user's files as they were.
#include <sys/stat.h>

#include <array>
#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sana/io/config.h"
#include "sana/io/safetensors.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using sana::test::CliRun;
using sana::test::TempDir;
using sana::test::run_cli;

namespace {

const std::string kStudent = std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes";
const std::string kTeacher = std::string(SANA_MODELS_DIR) + "/sana-shapes-teacher";

// Exit status 1 (2: a flag the parser could not read) and exactly one error line (progress lines "[sana-sprint] ..." aside) that contains `expect`.
void expect_one_line_error(const CliRun& r, const std::string& expect) {
  EXPECT_TRUE(r.rc == 1 || r.rc == 2) << r.rc << ": " << r.err;
  std::istringstream lines(r.err);
  int errors = 0, others = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("sana-sprint: error: ", 0) == 0)
      ++errors;
    else if (line.rfind("[sana-sprint]", 0) != 0)
      ++others;
  }
  EXPECT_EQ(errors, 1) << r.err;
  EXPECT_EQ(others, 0) << r.err;
  EXPECT_NE(r.err.find(expect), std::string::npos) << "'" << expect << "' not in: " << r.err;
}

json read_json(const fs::path& p) { return json::parse(sana::read_text_file(p.string())); }
void write_json(const fs::path& p, const json& j) { std::ofstream(p) << j.dump(2); }

// A private copy of a shipped model folder that a case may damage.
std::string copy_model(const TempDir& dir, const std::string& from, const std::string& name = "model") {
  const fs::path to = dir.path() / name;
  fs::remove_all(to);
  fs::copy(from, to, fs::copy_options::recursive);
  return to.string();
}

// Sets one float of `tensor` in a safetensors file to NaN, in place.
void poison(const std::string& file, const std::string& tensor) {
  uint64_t offset;
  {
    const auto f = sana::SafetensorsFile::open(file);
    std::ifstream in(file, std::ios::binary);
    uint64_t header_len = 0;
    in.read(reinterpret_cast<char*>(&header_len), 8);
    ASSERT_EQ(f->info(tensor).dtype, at::kFloat);
    offset = 8 + header_len + f->info(tensor).begin;
  }
  std::fstream io(file, std::ios::binary | std::ios::in | std::ios::out);
  io.seekp(static_cast<std::streamoff>(offset));
  const float nan = std::nanf("");
  io.write(reinterpret_cast<const char*>(&nan), sizeof nan);
}

std::string generate(const std::string& model, const std::string& out) {
  return "generate -m " + model + " -p 'a red circle' -o " + out;
}

}  // namespace

// Configs with zero, tiny, wrapped, fractional, boolean or huge values: an error naming the file and key, never a
// SIGFPE, a wrap-around or an allocation of the size asked for.
TEST(Reliability, ConfigValuesAreRangeChecked) {
  TempDir dir;
  struct Case {
    std::string file, key;
    json value;
    std::string expect;
  } cases[] = {
      {"transformer/config.json", "mlp_ratio", 0, "'mlp_ratio'"},
      {"transformer/config.json", "mlp_ratio", 0.001, "'mlp_ratio'"},
      {"transformer/config.json", "num_layers", 4294967302ULL, "'num_layers'"},
      {"transformer/config.json", "num_layers", 64.7, "'num_layers' must be an integer"},
      {"transformer/config.json", "num_layers", true, "'num_layers' must be an integer"},
      {"transformer/config.json", "num_layers", 1000000, "more than the limit"},
      {"transformer/config.json", "num_layers", -3, "'num_layers' must be positive"},
      {"transformer/config.json", "attention_head_dim", 0, "'attention_head_dim'"},
      {"transformer/config.json", "norm_eps", -1, "'norm_eps'"},
      {"vae/config.json", "attention_head_dim", 0, "'attention_head_dim'"},
      {"vae/config.json", "latent_channels", 0, "'latent_channels'"},
      {"vae/config.json", "decoder_block_out_channels", {16, 0, 64, 64}, "'decoder_block_out_channels'"},
      {"vae/config.json", "scaling_factor", 1e-300, "'scaling_factor'"},
      {"scheduler/scheduler_config.json", "sigma_data", 1e300, "'sigma_data'"},
      {"text_encoder/config.json", "rope_theta", 0, "'rope_theta'"},
      {"text_encoder/config.json", "num_hidden_layers", 1e6, "'num_hidden_layers'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file + " " + c.key + " = " + c.value.dump());
    const std::string model = copy_model(dir, kStudent);
    json cfg = read_json(fs::path(model) / c.file);
    cfg[c.key] = c.value;
    write_json(fs::path(model) / c.file, cfg);
    const CliRun r = run_cli(generate(model, dir.file("o.png")));
    expect_one_line_error(r, c.expect);
    EXPECT_NE(r.err.find(c.file), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir.file("o.png")));
  }
  // 0 or 40 decoder stages: the spatial factor would be a shift by a negative or too large amount.
  for (const int stages : {0, 40}) {
    SCOPED_TRACE(stages);
    const std::string model = copy_model(dir, kStudent);
    json cfg = read_json(fs::path(model) / "vae/config.json");
    for (const char* key : {"decoder_block_out_channels", "decoder_layers_per_block"})
      cfg[key] = std::vector<int>(stages, 16);
    cfg["decoder_block_types"] = std::vector<std::string>(stages, "ResBlock");
    cfg["decoder_qkv_multiscales"] = std::vector<std::vector<int>>(stages);
    write_json(fs::path(model) / "vae/config.json", cfg);
    expect_one_line_error(run_cli(generate(model, dir.file("o.png"))), "vae/config.json");
  }
}

// A named pipe where a file is expected is refused at once instead of blocking the reader forever.
TEST(Reliability, NamedPipesAreRefusedNotWaitedFor) {
  TempDir dir;
  for (const std::string file : {"transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
                                 "tokenizer/tokenizer.model", "model_index.json"}) {
    SCOPED_TRACE(file);
    const std::string model = copy_model(dir, kStudent);
    const fs::path p = fs::path(model) / file;
    fs::remove(p);
    ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
    expect_one_line_error(run_cli(generate(model, dir.file("o.png"))), file);
  }
  const std::string fifo = dir.file("canvas.png");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_one_line_error(run_cli(generate(kStudent, dir.file("o.png")) + " --control-image " + fifo),
                        "--control-image");
}

// NaN in any component stops generation at the stage where the values broke, with no image written.
TEST(Reliability, NonFiniteValuesStopAtTheirStage) {
  TempDir dir;
  struct Case {
    std::string file, tensor, stage;
  } cases[] = {
      {"text_encoder/model.safetensors", "norm.weight", "text encoder"},
      {"transformer/diffusion_pytorch_model.safetensors", "proj_out.weight", "step 1/1"},
      {"vae/diffusion_pytorch_model.safetensors", "decoder.conv_out.weight", "vae decode"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.tensor);
    const std::string model = copy_model(dir, kStudent);
    poison((fs::path(model) / c.file).string(), c.tensor);
    const CliRun r = run_cli(generate(model, dir.file("o.png")) + " --steps 1");
    expect_one_line_error(r, c.stage + ": the values became NaN or infinite");
    EXPECT_FALSE(fs::exists(dir.file("o.png")));
  }
}

// Settings that would allocate without bound, wrap, or mean nothing are refused before any work, naming the limit.
TEST(Reliability, GenerationSettingsAreBounded) {
  TempDir dir;
  const std::string g = generate(kStudent, dir.file("o.png"));
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"-t 999 " + g, "-t/--threads: 999"},
      {g + " --guidance nan", "--guidance"},
      {g + " --guidance inf", "--guidance"},
      {g + " --guidance 1e30", "--guidance"},
      {g + " --max-sequence-length 20000", "--max-sequence-length"},
      {g + " -b 4096", "-b/--batch-count"},
      {g + " -W 100000 -H 100000", "-W/--width"},
      {g + " -H 4294967360", "--height"},
      {g + " --steps 2147483647", "--steps"},
      {g + " --dtype fp16", "fp16 runs on CUDA only"},
      {g + " --steps 1 --timesteps 1.5,0.5", "--timesteps: must end in 0"},
      {"generate -m " + kTeacher + " -p x --steps 1 --timesteps 1.5,0 -o " + dir.file("o.png"),
       "a flow teacher follows its scheduler_config.json"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    expect_one_line_error(run_cli(c.args), c.expect);
  }
  // A small PNG that declares 20000 x 20000 pixels: refused from its header, before the pixel buffer is allocated.
  const std::string png = dir.file("huge.png");
  {
    std::ofstream out(png, std::ios::binary);
    const unsigned char header[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                    0, 0, 0x4e, 0x20, 0, 0, 0x4e, 0x20, 8, 2, 0, 0, 0, 0x6c, 0x12, 0xd1, 0x6e,
                                    0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xaf, 0x06, 0x1e};
    out.write(reinterpret_cast<const char*>(header), sizeof header);
  }
  expect_one_line_error(run_cli(g + " --control-image " + png), "20000x20000, more than the limit");
}

// `inspect` prints names and metadata from the file: control characters are escaped, not sent to the terminal.
TEST(Reliability, InspectEscapesControlCharacters) {
  TempDir dir;
  const std::string path = dir.file("esc.safetensors");
  {
    const std::string header =
        "{\"w\\u001b[31m\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"__metadata__\":{\"k\\u0007\":\"v\\u001b]0;title\\u0007\"}}";
    std::ofstream out(path, std::ios::binary);
    const uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header << std::string(4, '\0');
  }
  const std::string out_file = dir.file("out.txt");
  ASSERT_EQ(std::system((std::string(SANA_CLI) + " inspect " + path + " >" + out_file).c_str()), 0);
  const std::string out = sana::read_text_file(out_file);
  for (const char c : out) EXPECT_TRUE(c == '\n' || static_cast<unsigned char>(c) >= 0x20) << int(c);
  EXPECT_NE(out.find("w\\x1b[31m"), std::string::npos) << out;
}

namespace {

// A small image-caption folder with scribbles and its latent cache, shared by the training cases.
class TrainingInputs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    ASSERT_EQ(run_cli("shapes make-dataset -n 8 --control -o " + path("data")).rc, 0);
    ASSERT_EQ(run_cli("cache --max-sequence-length 16 --data " + path("data") + " --base " + kStudent + " -o " +
                      path("cache"))
                  .rc,
              0);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string path(const std::string& name) { return (dir_->path() / name).string(); }
  static std::string train(const std::string& out, const std::string& extra = "", std::string cache = "") {
    if (cache.empty()) cache = path("cache");
    return "train --cache " + cache + " --base " + kStudent + " --config " + kTeacher +
           "/transformer/config.json -b 2 --sample-every -1 -o " + out + " " + extra;
  }
  static TempDir* dir_;
};
TempDir* TrainingInputs::dir_ = nullptr;

}  // namespace

// Non-finite, out-of-range or meaningless training settings and environments are refused before any step.
TEST_F(TrainingInputs, SettingsAreChecked) {
  TempDir dir;
  const std::string vae = "train-vae --data " + path("data") + " --config " + kStudent + "/vae/config.json -b 2 -o " +
                          dir.file("vae");
  const std::string distill = "distill --teacher " + kTeacher + " --cache " + path("cache") + " -b 2 --steps 1 -o " +
                              dir.file("student");
  const std::string controlnet = "train-controlnet --base " + kTeacher + " --cache " + path("cache") + " -b 2 -o " +
                                 dir.file("cn");
  struct Case {
    std::string args, expect, env = "";
  } cases[] = {
      {vae + " --lr nan", "--lr"},
      {vae + " --ema 1.5", "--ema"},
      {vae + " --steps 0", "--steps must be at least 1"},
      {train(dir.file("t"), "--steps -5"), "--steps"},
      {train(dir.file("t"), "--steps 0"), "--steps must be at least 1"},
      {train(dir.file("t"), "--steps 1 --dtype fp16"), "fp16 runs on CUDA only"},
      {train(dir.file("t"), "--steps 1 --caption-dropout 1.5"), "--caption-dropout"},
      {distill + " --cfg-scales nan", "--cfg-scales"},
      {distill + " --p-std 0", "--p-std"},
      {distill + " --largest-timestep-prob 1.5", "--largest-timestep-prob"},
      {train(dir.file("t"), "--steps 1"), "WORLD_SIZE='x'", "WORLD_SIZE=x RANK=0"},
      {train(dir.file("t"), "--steps 1"), "RANK=5 must be below WORLD_SIZE=2", "WORLD_SIZE=2 RANK=5"},
      {vae + " --steps 1", "WORLD_SIZE='two'", "WORLD_SIZE=two RANK=0"},
      {"cache -b 0 --data " + path("data") + " --base " + kStudent + " -o " + dir.file("c"), "--batch-size"},
      // Sizes are bounded before anything is allocated.
      {"cache -b 100000 --data " + path("data") + " --base " + kStudent + " -o " + dir.file("c"),
       "--batch-size must be between 1 and 1024"},
      {"cache --max-sequence-length 1000000 --data " + path("data") + " --base " + kStudent + " -o " + dir.file("c"),
       "--max-sequence-length must be between 1 and 2048"},
      {"train --cache " + path("cache") + " --base " + kStudent + " --config " + kTeacher +
           "/transformer/config.json -b 100000 --steps 1 -o " + dir.file("t"),
       "--batch-size must be between 1 and 4096"},
      // train-controlnet: a run of no steps exports nothing; a negative block count is not the default.
      {controlnet + " --steps 0", "--steps must be at least 1"},
      {controlnet + " --steps 1 --num-layers -1", "--num-layers must be between 1 and the teacher's"},
      {controlnet + " --steps 1 --num-layers 1000", "--num-layers must be between 1 and the teacher's"},
      {"shapes make-dataset --size 100000 -o " + dir.file("d"), "--size"},
      {"shapes make-dataset --shapes circle,hexagon -o " + dir.file("d"),
       "--shapes: unknown shape 'hexagon' (known: circle, square, triangle, star, diamond)"},
      {"eval -m " + kStudent + " --shapes circle, -o " + dir.file("e"), "--shapes: unknown shape ''"},
      // A run that diverges stops instead of exporting a broken model.
      {train(dir.file("diverged"), "--steps 60 --lr 1e30"), "20 steps in a row with a non-finite loss"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.env + " " + c.args);
    expect_one_line_error(run_cli(c.args, c.env), c.expect);
  }
  EXPECT_FALSE(fs::exists(dir.file("t")));
  EXPECT_FALSE(fs::exists(dir.file("student")));
  EXPECT_FALSE(fs::exists(dir.file("cn")));
  EXPECT_FALSE(fs::exists(dir.file("c")));
  EXPECT_FALSE(fs::exists(dir.file("diverged") + "/transformer"));
}

// A run that trained nothing exports nothing: every step skipped (a cache of NaN latents, fewer steps than the
// divergence limit), or non-finite weights to export (a --resume checkpoint holding a NaN).
TEST_F(TrainingInputs, NothingTrainedNothingExported) {
  TempDir dir;
  const fs::path cache = dir.path() / "nan-cache";
  fs::copy(path("cache"), cache, fs::copy_options::recursive);
  const json config = read_json(cache / "cache_config.json");
  ASSERT_FALSE(config["shards"].empty());
  for (const auto& shard : config["shards"]) {
    const std::string file = (cache / shard.get<std::string>()).string();
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    {
      const auto f = sana::SafetensorsFile::open(file);
      for (const auto& [name, info] : f->tensors()) {
        at::Tensor t = f->get(name).clone();
        if (name == "latents") t.fill_(std::nan(""));
        tensors.emplace_back(name, t);
      }
    }
    sana::save_safetensors(file, tensors);
  }
  expect_one_line_error(run_cli(train(dir.file("nan-data"), "--steps 3", cache.string())),
                        "all 3 steps were skipped");
  EXPECT_FALSE(fs::exists(dir.file("nan-data") + "/transformer"));

  const std::string run = dir.file("run");
  ASSERT_EQ(run_cli(train(run, "--steps 1")).rc, 0);
  const std::string exported = sana::read_text_file(run + "/transformer/diffusion_pytorch_model.safetensors");
  const std::string checkpoint = run + "/training/checkpoint.safetensors";
  std::string weight;
  {
    const auto file = sana::SafetensorsFile::open(checkpoint);
    for (const auto& [name, info] : file->tensors())
      if (weight.empty() && name.rfind("model.", 0) == 0 && info.dtype == at::kFloat) weight = name;
  }
  ASSERT_FALSE(weight.empty());
  poison(checkpoint, weight);
  expect_one_line_error(run_cli(train(run, "--steps 1 --resume")), "hold NaN or Inf values (" + weight.substr(6));
  EXPECT_EQ(sana::read_text_file(run + "/transformer/diffusion_pytorch_model.safetensors"), exported);
}

// No command replaces or deletes what it did not create unless told to (--overwrite), and none writes over its inputs.
TEST_F(TrainingInputs, OutputsNeverReplaceInputsOrUserFiles) {
  TempDir dir;
  // A folder holding a user's file, and copies of the models that the commands read.
  const fs::path user = dir.path() / "mine";
  fs::create_directories(user / "vae");
  std::ofstream(user / "vae" / "notes.txt") << "mine";
  const std::string teacher = copy_model(dir, kTeacher, "teacher");
  const std::string base = copy_model(dir, kStudent, "base");
  const std::string tokenizer_before = sana::read_text_file(base + "/tokenizer/tokenizer.model");

  struct Case {
    std::string args, expect;
  } cases[] = {
      {train(user.string(), "--steps 1"), "is not empty"},
      {"train --cache " + path("cache") + " --base " + base + " --config " + kTeacher +
           "/transformer/config.json -b 2 --steps 1 -o " + base, "also the input of --base"},
      {train(path("cache"), "--steps 1"), "also the input of --cache"},
      // An output inside an input, or holding one, is refused even with --overwrite.
      {"train-controlnet --base " + teacher + " --cache " + path("cache") + " -b 2 --steps 1 --overwrite -o " +
           teacher + "/transformer", "is inside " + teacher},
      {train(dir_->path().string(), "--steps 1 --overwrite"), "holds " + path("cache")},
      {"distill --teacher " + teacher + " --cache " + path("cache") + " -b 2 --steps 1 -o " + teacher,
       "also the input of --teacher"},
      {"text-encoder --data " + path("data") + " --config " + base + "/text_encoder/config.json -o " + base,
       "tokenizer exists"},
      {"shapes make-dataset -n 2 -o " + path("data"), "is not empty"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    expect_one_line_error(run_cli(c.args), c.expect);
  }
  EXPECT_EQ(sana::read_text_file((user / "vae" / "notes.txt").string()), "mine");
  EXPECT_EQ(sana::read_text_file(base + "/tokenizer/tokenizer.model"), tokenizer_before);
  EXPECT_TRUE(fs::exists(teacher + "/transformer/diffusion_pytorch_model.safetensors"));

  // A finished run is not started over by accident; --overwrite says so on purpose.
  const std::string run = dir.file("run");
  ASSERT_EQ(run_cli(train(run, "--steps 1")).rc, 0);
  const std::string checkpoint = sana::read_text_file(run + "/training/checkpoint.safetensors");
  expect_one_line_error(run_cli(train(run, "--steps 1")), "--resume to continue");
  EXPECT_EQ(sana::read_text_file(run + "/training/checkpoint.safetensors"), checkpoint);
  EXPECT_EQ(run_cli(train(run, "--steps 1 --overwrite")).rc, 0);
}

// A damaged cache is one line naming the file: shards whose tensors hold different sample counts or shapes.
TEST_F(TrainingInputs, DamagedCachesAreNamed) {
  TempDir dir;
  const fs::path cache = dir.path() / "cache";
  fs::copy(path("cache"), cache, fs::copy_options::recursive);
  const std::string shard = (cache / read_json(cache / "cache_config.json")["shards"][0].get<std::string>()).string();
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  {
    const auto f = sana::SafetensorsFile::open(shard);
    for (const auto& [name, info] : f->tensors()) {
      at::Tensor t = f->get(name).clone();
      if (name == "latents") t = t.narrow(0, 0, t.size(0) - 1).contiguous();
      tensors.emplace_back(name, t);
    }
  }
  sana::save_safetensors(shard, tensors);
  expect_one_line_error(run_cli(train(dir.file("t"), "--steps 1", cache.string())), "different numbers of samples");
}

namespace {

// (step, loss name) -> value, for every loss* field of a run's training/log.jsonl (the G and D lines of distill).
std::map<std::pair<int64_t, std::string>, double> losses_of(const std::string& run) {
  std::map<std::pair<int64_t, std::string>, double> out;
  std::istringstream lines(sana::read_text_file(run + "/training/log.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("step")) continue;
    for (const auto& [key, value] : j.items())
      if (key.rfind("loss", 0) == 0) out[{j["step"].get<int64_t>(), key}] = value.get<double>();
  }
  return out;
}

// The last checkpoint of a run, if there is one, opens and names a step.
void expect_checkpoint_loads(const std::string& run) {
  const std::string path = run + "/training/checkpoint.safetensors";
  if (!fs::exists(path)) return;
  const auto ckpt = sana::SafetensorsFile::open(path);
  EXPECT_NO_THROW(std::stoll(ckpt->metadata().at("step")));
}

}  // namespace

// kill -9 at any moment of `train` and `distill`, including between writing a checkpoint and renaming it into place:
// the last checkpoint always loads, and resuming until done logs the uninterrupted run's losses, step for step.
TEST_F(TrainingInputs, KillNineAnywhereThenResumeEqualsTheUninterruptedRun) {
  TempDir dir;
  const int steps = 12;
  const std::string common = " --checkpoint-every 2 --log-every 1 -s 3 --steps " + std::to_string(steps);
  const std::map<std::string, std::string> commands = {
      {"train", train("OUT", common)},
      {"distill", "distill --teacher " + kTeacher + " --cache " + path("cache") +
                      " -b 2 --sample-every -1 --tangent-warmup 2" + common + " -o OUT"},
  };
  for (const auto& entry : commands) {
    const std::string& name = entry.first;
    const std::string& command = entry.second;  // (a structured binding could not be captured below in C++17)
    SCOPED_TRACE(name);
    const auto with_out = [&](const std::string& out) {
      std::string c = command;
      return c.replace(c.find("OUT"), 3, out);
    };
    const std::string full = dir.file(name + "-full"), cut = dir.file(name + "-cut");
    const auto start = std::chrono::steady_clock::now();
    ASSERT_EQ(run_cli(with_out(full), "", 1800).rc, 0);
    const double full_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto expected = losses_of(full);
    ASSERT_GE(expected.rbegin()->first.first, steps - 1) << "the log must reach the last step";

    // Killed with the second checkpoint written to its temp file but not yet renamed: the first one stays.
    EXPECT_EQ(run_cli(with_out(cut), "SANA_TEST_KILL_BEFORE_RENAME=checkpoint.safetensors:2", 1800).rc, -1);
    expect_checkpoint_loads(cut);
    EXPECT_EQ(sana::SafetensorsFile::open(cut + "/training/checkpoint.safetensors")->metadata().at("step"), "2");
    // Then each resume killed after a growing fraction of the whole run's time (start-up, a step, a checkpoint
    // write: wherever it falls on this machine), and a last resume that finishes.
    int kills = 0;
    bool finished = false;
    for (const double fraction : {0.2, 0.35, 0.5, 0.65, 0.8}) {
      const CliRun r = run_cli(with_out(cut) + " --resume", "", fraction * full_seconds);
      if ((finished = r.rc == 0)) break;
      EXPECT_EQ(r.rc, -1) << r.err;
      ++kills;
      expect_checkpoint_loads(cut);
    }
    if (!finished) ASSERT_EQ(run_cli(with_out(cut) + " --resume", "", 1800).rc, 0);
    std::cout << name << ": killed " << kills << " times during resumed runs (whole run " << full_seconds << " s)\n";
    EXPECT_EQ(losses_of(cut), expected);
  }
}
