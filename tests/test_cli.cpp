// `sana-sprint generate` end to end: the reference pipeline's images reproduced through the CLI from the fixture
// directory on disk (uint8 within 1/255), the PNG's parameters chunk, and one-line errors for bad input.
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>

#include "sana/io/atomic_file.h"
#include "sana/io/config.h"
#include "sana/io/image.h"
#include "sana/shapes/world.h"
#include "test_util.h"

using sana::test::CliRun;
using sana::test::fixture;
using sana::test::run_cli;

namespace {

std::string quoted(const std::string& s) { return "'" + s + "'"; }

}  // namespace

TEST(Cli, GenerateReproducesPipelineFixture) {
  auto ref = sana::SafetensorsFile::open(fixture("pipeline_sprint_tiny/expected.safetensors"));
  sana::test::TempDir dir;
  int checked = 0;
  for (const auto& [name, text] : ref->metadata()) {
    if (name == "format") continue;
    const auto j = nlohmann::json::parse(text);
    const auto prompts = j["prompt"].get<std::vector<std::string>>();
    if (prompts.size() != 1) continue;  // the CLI takes one prompt
    SCOPED_TRACE(name);
    const std::string out = dir.file(name + ".png");
    const int hw = j["hw"].get<int>();
    const CliRun r = run_cli("generate -m " + fixture("pipeline_sprint_tiny") + " -p " + quoted(prompts[0]) +
                          " -s " + std::to_string(j["seed"].get<int>()) + " --steps " +
                          std::to_string(j["steps"].get<int>()) + " -W " + std::to_string(hw) + " -H " +
                          std::to_string(hw) + " --no-resolution-binning -o " + out);
    ASSERT_EQ(r.rc, 0) << r.err;
    std::map<std::string, std::string> chunks;
    const at::Tensor png = sana::load_png(out, &chunks);
    const at::Tensor expected = ref->get(name + ".image")[0];
    const at::Tensor diff = (at::round(png * 255) - at::round(expected * 255)).abs();
    EXPECT_LE(diff.max().item<float>(), 1.0f);
    EXPECT_NE(chunks["parameters"].find("Seed: " + std::to_string(j["seed"].get<int>())), std::string::npos);
    EXPECT_NE(chunks["parameters"].find(prompts[0]), std::string::npos);
    ++checked;
  }
  EXPECT_GE(checked, 1);  // every one-prompt case of the fixture; at least one must exist
}

// The teacher (both schedulers), ControlNet and img2img fixtures through `generate`, from the folders on disk, with
// the flags a user would type for each recorded call.
TEST(Cli, GenerateReproducesTheOtherReferencePipelines) {
  sana::test::TempDir dir;
  int checked = 0;
  for (const std::string folder : {"pipeline_sana_tiny", "pipeline_sana_euler_tiny", "pipeline_sana_controlnet_tiny",
                                   "pipeline_sprint_img2img_tiny"}) {
    auto ref = sana::SafetensorsFile::open(fixture(folder + "/expected.safetensors"));
    for (const auto& [name, text] : ref->metadata()) {
      if (name == "format") continue;
      const auto j = nlohmann::json::parse(text);
      const auto prompts = j["prompt"].get<std::vector<std::string>>();
      if (prompts.size() != 1) continue;
      SCOPED_TRACE(folder + " " + name);
      const std::string out = dir.file(name + ".png"), hw = std::to_string(j["hw"].get<int>());
      std::string args = "generate -m " + fixture(folder) + " -p " + quoted(prompts[0]) + " -s " +
                         std::to_string(j["seed"].get<int>()) + " --steps " + std::to_string(j["steps"].get<int>()) +
                         " -W " + hw + " -H " + hw + " --no-resolution-binning -o " + out;
      if (j.contains("guidance")) args += " --guidance " + j["guidance"].dump();
      if (j.contains("negative")) args += " --negative-prompt " + quoted(j["negative"].get<std::string>());
      if (j.contains("control"))
        args += " --control-image " + fixture(folder + "/" + j["control"].get<std::string>()) + " --control-scale " +
                j["scale"].dump();
      if (j.contains("init")) {
        // diffusers skips int(n - n * strength) steps: at 2 steps, 0.4 skips the one step 0.5 skips (the front end
        // once refused 0.4 there), so the recorded image is diffusers' for 0.4 too.
        const bool alike = j["steps"].get<int>() == 2 && j["strength"].get<double>() == 0.5;
        args += " --init-image " + fixture(folder + "/" + j["init"].get<std::string>()) + " --strength " +
                (alike ? std::string("0.4") : j["strength"].dump());
      }
      const CliRun r = run_cli(args);
      ASSERT_EQ(r.rc, 0) << r.err;
      const at::Tensor png = sana::load_png(out);
      const at::Tensor expected = ref->get(name + ".image")[0];
      EXPECT_LE((at::round(png * 255) - at::round(expected * 255)).abs().max().item<float>(), 1.0f);
      ++checked;
    }
  }
  EXPECT_GE(checked, 4);  // at least one case from each folder
}

TEST(Cli, ClearOneLineErrors) {
  const std::string m = " -m " + fixture("pipeline_sprint_tiny");
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"generate -m /no/such/dir -p x", "/no/such/dir does not exist"},
      {"generate" + m + " -p x -W 30 --no-resolution-binning", "must be a multiple of the VAE factor"},
      {"generate" + m + " -p x --steps 0", "--steps: must be at least 1"},
      {"generate" + m + " -p x --steps two", "--steps"},
      {"generate" + m + " -p x --dtype int8", "--dtype"},
      {"generate" + m + " -p x -o out.jpg", ".png"},
      {"generate" + m + " -p x --steps 2 --timesteps 1.5,0", "--timesteps"},
      {"generate -m " + fixture("transformer_sprint_tiny") + " -p x", "model_index.json"},
      {"train --cache /no/such/cache --base /b --config /c -o /tmp/x", "cache_config.json"},
      {"distill --teacher /t --cache /c -o /tmp/x --loss gan", "--loss must be scm, ladd or hybrid"},
      {"train-vae --data /no/such/data --config /c -o /tmp/x", "/no/such/data is not a directory"},
      {"cache --data /no/such/data --base /b -o /tmp/x", "/no/such/data is not a directory"},
      {"eval", "give --images DIR or -m MODEL"},
      {"eval -m /no/such/model -o /tmp/x", "/no/such/model does not exist"},
      {"generate" + m + " -p x --control-image /no/such.png", "--control-image: /no/such.png is not a readable file"},
      {"generate" + m + " -p x --control-image " + fixture("pipeline_sprint_tiny/model_index.json"),
       "--control-image: is not a PNG image"},
      {"generate" + m + " -p x --control-image " + fixture("pipeline_sana_controlnet_tiny/control0.png"),
       "has no ControlNet"},
      {"generate" + m + " -p x --controlnet " + fixture("controlnet_tiny/controlnet"), "made for another model"},
      {"generate" + m + " -p x --controlnet /no/such/cn", "/no/such/cn is not a directory"},
      {"generate" + m + " -p x --vae /no/such/vae", "vae: /no/such/vae is not a directory"},
      {"generate" + m + " -p x --quantize int4", "--quantize: int4 not in {"},
      {"quantize" + m + " -o " + fixture("pipeline_sprint_tiny"), "is also the input of -m/--model"},
      {"quantize" + m + " -o /tmp/x --type q8", "--type: q8 not in {int8,q4}"},
      {"generate" + m + " -p x --vae " + fixture("dcae_lite_tiny"), "(another latent space)"},
      {"generate" + m + " -p x --init-image " + fixture("pipeline_sprint_img2img_tiny/init0.png") +
           " --steps 2 --strength 0", "--strength: 0 with 2 steps leaves no step"},
      {"generate" + m + " -p x --control-preprocess blur", "--control-preprocess"},
      // Numbers are read whole, in base 10 and in range (CLI11 alone clamped 2^63 and read "" as 0, "010" as 8).
      {"generate" + m + " -p x -s 9223372036854775808", "--seed: '9223372036854775808' is out of range"},
      {"generate" + m + " -p x -s 18446744073709551615", "--seed: '18446744073709551615' is out of range"},
      {"generate" + m + " -p x --control-scale ''", "--control-scale: expected a number, got an empty value"},
      {"generate" + m + " -p x --steps ''", "--steps: expected a 64-bit integer, got an empty value"},
      {"generate" + m + " -p x --steps 1e3", "--steps: expected a 64-bit integer, got '1e3'"},
      {"train-controlnet --base /b --cache /c -o /tmp/x --steps ''", "--steps: expected"},
      {"train-lora --objective distill --base /b --cache /c -o /tmp/x --steps 1", "--objective distill needs --teacher"},
      {"train-lora --objective sprint --base /b --cache /c -o /tmp/x --steps 1", "--objective must be flow or distill"},
      // serve's limits, refused before the model loads (they were replaced silently).
      {"serve --port 65536", "--port"},
      {"serve --port ''", "--port: expected a 64-bit integer, got an empty value"},
      {"serve --http-threads 0", "--http-threads"},
      {"serve --http-threads 100000", "--http-threads"},
      {"serve --max-images 0", "--max-images"},
      {"serve --max-side 100000", "--max-side"},
      {"serve --host ''", "--host: must not be empty"},
      {"generate -m " + fixture("pipeline_sana_tiny") + " -p x --init-image " +
           fixture("pipeline_sprint_img2img_tiny/init0.png"), "img2img is implemented for SANA-Sprint"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    const CliRun r = run_cli(c.args);
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.err.find("sana-sprint: error:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
  }
}

// A leading zero is a decimal digit, as users mean it (CLI11 alone read -s 010 as octal, seed 8).
TEST(Cli, NumbersAreReadInBaseTen) {
  sana::test::TempDir dir;
  const std::string out = dir.file("out.png");
  const CliRun r = run_cli("generate -m " + fixture("pipeline_sprint_tiny") + " -p x -s 010 -o " + out);
  ASSERT_EQ(r.rc, 0) << r.err;
  std::map<std::string, std::string> chunks;
  sana::load_png(out, &chunks);
  EXPECT_NE(chunks["parameters"].find("Seed: 10,"), std::string::npos) << chunks["parameters"];
}

// -o replaces an existing PNG, but never the call's own init or control image, however the path is spelled.
TEST(Cli, OutputNeverReplacesAnInputImage) {
  sana::test::TempDir dir;
  const std::string init = dir.file("in.png"), control = dir.file("c.png");
  std::filesystem::copy_file(fixture("pipeline_sprint_img2img_tiny/init0.png"), init);
  std::filesystem::copy_file(fixture("pipeline_sana_controlnet_tiny/control0.png"), control);
  const std::string before = sana::read_text_file(init);
  const std::string m = " -m " + fixture("pipeline_sprint_img2img_tiny") + " -p x --steps 2 --strength 0.5";
  struct Case {
    std::string args, expect;
  } cases[] = {
      {m + " --init-image " + init + " -o " + init, "is the --init-image"},
      {m + " --init-image " + init + " -o " + dir.path().string() + "/./in.png", "is the --init-image"},
      // -b 2 writes out_1.png and out_2.png: the first is the control image.
      {" -m " + fixture("pipeline_sana_controlnet_tiny") + " -p x --control-image " + dir.file("out_1.png") +
           " -b 2 -o " + dir.file("out.png"),
       "out_1.png is the --control-image"},
  };
  std::filesystem::copy_file(control, dir.file("out_1.png"));
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    const CliRun r = run_cli("generate" + c.args);
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
  }
  EXPECT_EQ(sana::read_text_file(init), before);
  EXPECT_EQ(sana::read_text_file(dir.file("out_1.png")), sana::read_text_file(control));
}

// eval -m writes NNNNNNN.png/.json into -o: into a folder that holds anything only with --overwrite.
TEST(Cli, EvalKeepsANonEmptyFolderUnlessToldToOverwrite) {
  sana::test::TempDir dir;
  std::filesystem::create_directories(dir.file("out"));
  sana::write_file_atomic(dir.file("out/0000000.png"), "mine");
  const std::string args = "eval -m " + std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes --prompts 2 -o " + dir.file("out");
  const CliRun refused = run_cli(args);
  EXPECT_NE(refused.rc, 0);
  EXPECT_NE(refused.err.find("is not empty; give --overwrite"), std::string::npos) << refused.err;
  EXPECT_EQ(sana::read_text_file(dir.file("out/0000000.png")), "mine");
  const CliRun replaced = run_cli(args + " --overwrite");
  EXPECT_EQ(replaced.rc, 0) << replaced.err;
  EXPECT_EQ(sana::load_png(dir.file("out/0000000.png")).size(1), 64);
}

// The README's main command: no -m, the shipped student with its generation defaults (64x64, 1 step).
TEST(Cli, DefaultModelGeneratesTheReadmeCommand) {
  sana::test::TempDir dir;
  const std::string out = dir.file("out.png");
  const CliRun r = run_cli("generate -p " + quoted("two red circles above a blue square") + " -o " + out);
  ASSERT_EQ(r.rc, 0) << r.err;
  std::map<std::string, std::string> chunks;
  const at::Tensor img = sana::load_png(out, &chunks);
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{3, 64, 64}));
  EXPECT_NE(chunks["parameters"].find("Steps: 1,"), std::string::npos) << chunks["parameters"];
  EXPECT_NE(r.err.find("sana-sprint-shapes"), std::string::npos) << r.err;
  // The teacher folder runs through the same command (flow sampler + CFG).
  const CliRun t = run_cli("generate -m " + std::string(SANA_MODELS_DIR) + "/sana-shapes-teacher -p " +
                           quoted("a red square") + " --steps 4 -o " + out);
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_NE(t.err.find("step 4/4"), std::string::npos) << t.err;
}

// The shipped models' ControlNets from the command line: a scribble moves the objects, scale 0 is the image without
// control, the teacher's ControlNet runs with its 20 steps and CFG, and over a small prompt set the student's images
// follow the scribbles (ControlEval's IoU) far better with the control than without.
TEST(Cli, ShippedControlNetsFollowTheScribble) {
  sana::test::TempDir dir;
  const std::string scribble = dir.file("scribble.png");
  const auto scene = sana::shapes::scene_for(20260101, 4);
  sana::save_png(scribble, sana::shapes::render_scribble(scene, 64, 2.0));
  const std::string p = " -p " + quoted(scene.caption) + " -s 3";
  ASSERT_EQ(run_cli("generate" + p + " -o " + dir.file("plain.png")).rc, 0);
  const CliRun c = run_cli("generate" + p + " --control-image " + scribble + " -o " + dir.file("control.png"));
  ASSERT_EQ(c.rc, 0) << c.err;
  EXPECT_NE(c.err.find("with a ControlNet"), std::string::npos) << c.err;
  ASSERT_EQ(run_cli("generate" + p + " --control-image " + scribble + " --control-scale 0 -o " + dir.file("zero.png")).rc, 0);
  const at::Tensor plain = sana::load_png(dir.file("plain.png")), control = sana::load_png(dir.file("control.png"));
  EXPECT_TRUE(at::equal(sana::load_png(dir.file("zero.png")), plain));
  EXPECT_GT((control - plain).abs().mean().item<double>(), 0.01);
  const CliRun t = run_cli("generate -m " + std::string(SANA_MODELS_DIR) + "/sana-shapes-teacher" + p +
                           " --control-image " + scribble + " --steps 4 -o " + dir.file("teacher.png"));
  EXPECT_EQ(t.rc, 0) << t.err;

  const auto iou = [&](const std::string& extra, const std::string& name) {
    const std::string json_out = dir.file(name + ".json");
    const CliRun r = run_cli("eval -m " + std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes --prompts 24 -o " +
                             dir.file(name) + " --json " + json_out + extra);
    EXPECT_EQ(r.rc, 0) << r.err;
    return nlohmann::json::parse(sana::read_text_file(json_out))["control_iou"].get<double>();
  };
  const double with = iou(" --control", "with"), without = iou("", "without");
  EXPECT_GT(with, without + 0.2) << "ControlEval IoU with the scribble " << with << ", without " << without;
}

// The shipped diamond LoRAs (recipes/shapes/lora.sh; models/loras/): on the concept's prompt set (eval --shapes
// diamond) the student with its distilled LoRA draws the diamonds that the student without it does not.
TEST(Cli, ShippedLoraTeachesTheStudentTheDiamond) {
  sana::test::TempDir dir;
  const auto overall = [&](const std::string& extra, const std::string& name) {
    const std::string json_out = dir.file(name + ".json");
    const CliRun r = run_cli("eval -m " + std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes --shapes diamond " +
                             "--prompts 40 -o " + dir.file(name) + " --json " + json_out + extra);
    EXPECT_EQ(r.rc, 0) << r.err;
    return nlohmann::json::parse(sana::read_text_file(json_out))["overall"].get<double>();
  };
  const double with = overall(" --lora " + std::string(SANA_MODELS_DIR) + "/loras/sana-sprint-shapes-diamond.safetensors",
                              "with");
  const double without = overall("", "without");
  EXPECT_GT(with, without + 0.15) << "ShapesEval on diamond prompts with the LoRA " << with << ", without " << without;
}
