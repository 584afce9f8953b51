// `sana-sprint distill`: SANA-Sprint's hybrid sCM + LADD distillation of a flow teacher (docs/ARCHITECTURE.md,
// "Distillation"), as the NVlabs training loop does it:
//  * iterations alternate G (even) and D (odd), each on its own batch; the tangent warm-up counts both;
//  * G: L_G = L_sCM + lambda_adv * L_adv. L_sCM is measured against the teacher's CFG velocity (a per-sample scale
//    from {4, 4.5, 5}); L_adv is the hinge loss of the heads on the frozen teacher's features of the student's x0,
//    re-noised at the discriminator's time law, the x0 taken at a fresh time that is pi/2 with probability 0.5
//    (max-time weighting);
//  * D: hinge loss on real latents vs the student's x0 (no grad) and misaligned real pairs (latents rolled by one
//    along the batch, with the original prompts) as fakes.
// --loss scm drops the discriminator (every iteration is a G step); --loss ladd drops L_sCM.
// What trains is a TrainedPart: the whole student (plain distillation); in ControlNet mode
// (DistillOptions::teacher_controlnet) the ControlNet of a finished Sprint model, started from the teacher's, with the
// teacher running with its own ControlNet and each network seeing the batch's control latents; in LoRA mode
// (DistillOptions::lora_rank) LoRA adapters on a finished Sprint model, with the teacher running with its LoRA fused.
// The same losses train the part (and the adaptive-weight head) in each mode.
#include <ATen/core/grad_mode.h>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/diffusion/trigflow.h"
#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/models/dcae.h"
#include "sana/nn/module_io.h"
#include "sana/pipeline/sana_sprint.h"
#include "sana/runtime.h"
#include "sana/train/scm_loss.h"
#include "train/distill_models.h"
#include "train/export.h"
#include "train/lora_adapters.h"
#include "train/training_run.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {
namespace {

using namespace detail;

at::Tensor bcast(const at::Tensor& t) { return t.view({-1, 1, 1, 1}); }

// x_t = cos t x0 + sin t z.
at::Tensor noised(const at::Tensor& x0, const at::Tensor& z, const at::Tensor& t) {
  return at::cos(bcast(t)) * x0 + at::sin(bcast(t)) * z;
}

// The random numbers of one iteration, drawn for the whole global batch in a fixed order (both phases draw all of
// them), then cut to this process's rows.
struct Draws {
  at::Tensor z, t, w;              // sCM: noise, time, teacher CFG scale
  at::Tensor t_new, z_new;         // adversarial G: a fresh (max-time weighted) time for the student's x0
  at::Tensor t_d, z_d, z_d_real;   // discriminator time law: re-noising of the fakes and of the reals
  at::Tensor t_d_mis, z_d_mis;     // misaligned real pairs
};

// What a distillation trains and exports: the whole student, the student's ControlNet, or LoRA adapters on a frozen
// student. `params` are trained by the G steps (the adaptive-weight head beside them), averaged by the EMA and written
// by `write` into a folder (the output, or a snapshot's).
struct TrainedPart {
  std::string what;    // for the log
  std::string prefix;  // of the params' names in checkpoints ("student.", "controlnet.", "")
  NamedTensors params;
  std::function<void(const std::string& dir)> write;
  std::string written;  // what the note after the export says
};

class Distillation {
 public:
  Distillation(const DistillOptions& d, const TrainOptions& o);
  void run();

 private:
  Draws draw(at::Generator& gen, const std::vector<int64_t>& shape) const;
  at::Tensor max_time_weighting(const at::Tensor& t, double p, at::Generator& gen) const;
  StudentFn student(const Batch& b, const at::Tensor& w) const;
  at::Tensor teacher_velocity(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& w, const Batch& b) const;
  std::vector<at::Tensor> teacher_features(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& embeds,
                                           const at::Tensor& mask, const at::Tensor& control) const;
  void build_networks();
  std::shared_ptr<SanaTransformer2DModel> frozen_student() const;
  TrainedPart student_part();
  TrainedPart controlnet_part();
  TrainedPart lora_part();
  Values generator_step(int64_t step, const Batch& b, const Draws& r);
  Values discriminator_step(int64_t step, const Batch& b, const Draws& r, at::Generator& gen);
  void sample_grid(const std::string& path);
  json shape() const;

  const DistillOptions d_;
  const TrainOptions o_;
  const bool use_scm_, use_adv_;
  const double sd_;
  LatentCache cache_;
  json teacher_config_;
  std::unique_ptr<TrainingRun> run_;
  at::TensorOptions opts_;
  std::shared_ptr<SanaTransformer2DModel> teacher_;
  std::shared_ptr<SanaControlNetModel> teacher_cn_, student_cn_;  // ControlNet mode only
  Student student_;
  std::vector<int> blocks_;
  std::shared_ptr<LADDDiscriminatorHeads> heads_;
  NamedTensors g_params_, d_params_;
  std::unique_ptr<Optimizer> optim_g_, optim_d_;
  std::unique_ptr<EMA> ema_;
  std::shared_ptr<AutoencoderDC> vae_;  // loaded for the first sample grid
  TrainedPart part_;
};

void check(const DistillOptions& d) {
  const auto require = [](bool ok, const std::string& msg) {
    if (!ok) throw Error(msg);
  };
  require(d.loss == "scm" || d.loss == "ladd" || d.loss == "hybrid", "--loss must be scm, ladd or hybrid, got '" + d.loss + "'");
  require(!d.cfg_scales.empty(), "--cfg-scales: at least one value");
  for (double w : d.cfg_scales) require(std::isfinite(w) && w >= 0 && w <= 100, "--cfg-scales: values must be in [0, 100]");
  require(std::isfinite(d.p_mean) && std::isfinite(d.d_p_mean), "--p-mean must be a finite number");
  require(std::isfinite(d.p_std) && d.p_std > 0 && std::isfinite(d.d_p_std) && d.d_p_std > 0,
          "--p-std must be a positive number");
  require(d.tangent_warmup >= 0, "--tangent-warmup must be at least 0");
  require(std::isfinite(d.adv_weight) && d.adv_weight >= 0, "--adv-weight must be a number >= 0");
  require(d.largest_timestep_prob >= 0 && d.largest_timestep_prob <= 1, "--largest-timestep-prob must be in [0, 1]");
  require(std::isfinite(d.lr_d) && d.lr_d >= 0, "--lr-d must be a number >= 0");
  require(std::isfinite(d.sigma_data) && d.sigma_data > 0, "sigma_data must be positive");
  require(d.intermediate_timesteps > 0 && d.intermediate_timesteps < d.largest_timestep,
          "--intermediate-timesteps must be in (0, " + std::to_string(d.largest_timestep) + ")");
  if (!fs::exists(fs::path(d.teacher) / "transformer" / "config.json"))
    throw Error("--teacher: " + d.teacher + " has no transformer/config.json (a SanaPipeline folder from sana-sprint train)");
  if (d.lora_rank > 0) {
    check_lora_shape({d.lora_rank, d.lora_alpha, d.lora_targets});
    require(d.teacher_controlnet.empty(), "a LoRA distillation takes no --teacher-controlnet");
    for (const std::string& spec : d.teacher_loras) {
      const LoraSpec l = parse_lora_spec(spec, "--teacher-lora");
      require(fs::is_regular_file(l.path), "--teacher-lora: " + l.path + " is not a file");
    }
  }
  if (!d.teacher_controlnet.empty() && !fs::exists(fs::path(d.teacher_controlnet) / "config.json"))
    throw Error("--teacher-controlnet: " + d.teacher_controlnet +
                " has no config.json (train the teacher's ControlNet first: train-controlnet --objective flow)");
}

Distillation::Distillation(const DistillOptions& d, const TrainOptions& o)
    : d_(d),
      o_(o),
      use_scm_(d.loss != "ladd"),
      use_adv_(d.loss != "scm"),
      sd_(d.sigma_data),
      cache_(LatentCache::open(d.cache)),
      teacher_config_(json::parse(read_text_file((fs::path(d.teacher) / "transformer" / "config.json").string()),
                                  nullptr, false)) {
  teacher_ = SanaTransformer2DModel::from_pretrained((fs::path(d.teacher) / "transformer").string(),
                                                     at::TensorOptions().dtype(parse_dtype(o.dtype)).device(parse_device(o.device)));
  if (teacher_->config().guidance_embeds) throw Error("--teacher: the transformer already has a guidance embedding");
  blocks_ = head_blocks(d, teacher_->config().num_layers);
  const char* command = !d.teacher_controlnet.empty() ? "train-controlnet" : d.lora_rank > 0 ? "train-lora" : "distill";
  run_ = std::make_unique<TrainingRun>(command, o, shape(),
                                       std::vector<std::pair<std::string, std::string>>{
                                           {"--teacher", d.teacher}, {"--cache", d.cache},
                                           {"--teacher-controlnet", d.teacher_controlnet}, {"--base", d.student}});
  opts_ = run_->tensor_options();
  for (auto& p : teacher_->parameters()) p.set_requires_grad(false);
  build_networks();
  run_->track("model.", g_params_);
  run_->track("disc.", nn::state_dict(*heads_));  // weights and power-iteration vectors
  run_->track("optim_g.", *optim_g_);
  run_->track("optim_d.", *optim_d_);
  if (ema_) run_->track("ema.", *ema_);
  run_->on_sample([this](const std::string& path) { sample_grid(path); });
  run_->on_snapshot([this](const std::string& dir) { part_.write(dir); });
}

void Distillation::build_networks() {
  part_ = !d_.teacher_controlnet.empty() ? controlnet_part() : d_.lora_rank > 0 ? lora_part() : student_part();
  for (const auto& [name, t] : part_.params) g_params_.emplace_back(part_.prefix + name, t);
  const uint64_t seed = o_.seed;
  const int64_t D = student_.transformer->config().inner_dim();
  if (!student_.logvar) student_.logvar = make_logvar_head(D, seed, opts_);
  heads_ = make_heads(D, blocks_, seed, opts_);
  for (const auto& kv : trainable(*student_.logvar, "logvar.")) g_params_.push_back(kv);
  d_params_ = trainable(*heads_, "heads.");
  optim_g_ = make_optimizer(o_.optimizer, g_params_, o_.lr, o_.weight_decay);
  optim_d_ = make_optimizer(o_.optimizer, d_params_, d_.lr_d > 0 ? d_.lr_d : o_.lr, o_.weight_decay);
  if (o_.ema_decay > 0) ema_ = std::make_unique<EMA>(part_.params, o_.ema_decay);
}

// The whole student, started as the TrigFlow view of the teacher; exported as a SanaSprintPipeline folder.
TrainedPart Distillation::student_part() {
  student_ = make_student(*teacher_, teacher_config_, d_, o_.seed, opts_);
  const json sched = {{"_class_name", "SCMScheduler"}, {"num_train_timesteps", 1000}, {"prediction_type", "trigflow"},
                      {"sigma_data", sd_}};
  return {"student", "student.", trainable(*student_.transformer), [this, sched](const std::string& dir) {
            // The logvar head is training-only, as in the reference export.
            export_pipeline(dir, "SanaSprintPipeline", sched.dump(2) + "\n", *student_.transformer,
                            student_.config.dump(2) + "\n", d_.teacher, cache_, 1, 4.5, d_.intermediate_timesteps);
          },
          "distill: wrote the student pipeline " + o_.out};
}

// A finished Sprint student's transformer (--base), frozen.
std::shared_ptr<SanaTransformer2DModel> Distillation::frozen_student() const {
  const fs::path dir = fs::path(d_.student) / "transformer";
  if (!fs::exists(dir / "config.json")) throw Error("--base: " + d_.student + " has no transformer/config.json");
  auto t = SanaTransformer2DModel::from_pretrained(dir.string(), opts_);
  if (!t->config().guidance_embeds)
    throw Error("--base: " + d_.student + " is not a Sprint student (its transformer has no guidance embedding)");
  for (auto& p : t->parameters()) p.set_requires_grad(false);
  return t;
}

// The student's ControlNet, started from the teacher's (which the teacher then runs with); exported as a ControlNet
// folder for the student.
TrainedPart Distillation::controlnet_part() {
  if (!cache_.control_latents.defined()) throw Error("--cache: it holds no control latents (see train-controlnet)");
  teacher_cn_ = SanaControlNetModel::from_pretrained(d_.teacher_controlnet, opts_);
  check_controlnet_fits(teacher_cn_->config(), teacher_->config(), "--teacher-controlnet " + d_.teacher_controlnet);
  for (auto& p : teacher_cn_->parameters()) p.set_requires_grad(false);
  student_.transformer = frozen_student();
  student_cn_ = make_student_controlnet(*teacher_cn_, *student_.transformer, o_.seed);
  return {"the student's ControlNet", "controlnet.", trainable(*student_cn_),
          [this](const std::string& dir) { export_controlnet(*student_cn_, dir); },
          "train-controlnet: wrote the student's ControlNet " + o_.out + " (use it with generate -m " + d_.student +
              " --controlnet " + o_.out + ")"};
}

// LoRA adapters on the frozen student; the teacher runs with its LoRAs fused (the concept the student learns).
// Exported as the LoRA file diffusers writes.
TrainedPart Distillation::lora_part() {
  PipelineComponents teacher;
  teacher.transformer = teacher_;
  for (const std::string& spec : d_.teacher_loras) teacher.apply_lora(parse_lora_spec(spec, "--teacher-lora"));
  student_.transformer = frozen_student();
  const LoraShape shape{d_.lora_rank, d_.lora_alpha, d_.lora_targets};
  NamedTensors adapters = add_lora_adapters(*student_.transformer, shape, o_.seed, opts_);
  return {"LoRA adapters (rank " + std::to_string(d_.lora_rank) + ", " + std::to_string(adapters.size() / 2) +
              " layers) on the student",
          "", adapters, [adapters, shape](const std::string& dir) { export_lora(adapters, shape, dir); },
          "train-lora: wrote " + (fs::path(o_.out) / "pytorch_lora_weights.safetensors").string() +
              " (use it with generate -m " + d_.student + " --lora FILE)"};
}

json Distillation::shape() const {
  json j = {{"teacher", fs::absolute(d_.teacher).string()}, {"cache", fs::absolute(d_.cache).string()},
          {"loss", d_.loss}, {"cfg_scales", d_.cfg_scales}, {"p_mean", d_.p_mean}, {"p_std", d_.p_std},
          {"d_p_mean", d_.d_p_mean}, {"d_p_std", d_.d_p_std}, {"tangent_warmup", d_.tangent_warmup},
          {"adv_weight", d_.adv_weight}, {"head_blocks", blocks_}, {"largest_timestep_prob", d_.largest_timestep_prob},
          {"misaligned_pairs", d_.misaligned_pairs}, {"lr_d", d_.lr_d}, {"sigma_data", d_.sigma_data},
          {"guidance_embeds_scale", d_.guidance_embeds_scale}, {"largest_timestep", d_.largest_timestep},
          {"teacher_controlnet", d_.teacher_controlnet.empty() ? "" : fs::absolute(d_.teacher_controlnet).string()},
          {"student", d_.student.empty() ? "" : fs::absolute(d_.student).string()}};
  if (d_.lora_rank > 0)  // only then: the runs of the other modes keep the shape their checkpoints recorded
    j.update({{"lora_rank", d_.lora_rank}, {"lora_alpha", d_.lora_alpha}, {"lora_targets", d_.lora_targets},
              {"teacher_loras", d_.teacher_loras}});
  return j;
}

// Each element with probability p replaced by the largest timestep.
at::Tensor Distillation::max_time_weighting(const at::Tensor& t, double p, at::Generator& gen) const {
  const at::Tensor u = at::rand(t.sizes(), gen, t.options().device(at::kCPU)).to(t.device());  // gen is a CPU generator
  return at::where(u < p, at::full_like(t, d_.largest_timestep), t);
}

Draws Distillation::draw(at::Generator& gen, const std::vector<int64_t>& shape) const {
  const Slice& slice = run_->slice();
  const int64_t Bg = shape[0];
  const auto cpu = at::TensorOptions().dtype(at::kFloat);
  const auto noise = [&] { return slice(at::randn(shape, gen, cpu) * sd_).to(opts_); };
  const auto times = [&](double m, double s) { return sample_trigflow_times(Bg, m, s, sd_, gen); };
  Draws r;
  r.z = noise();
  r.t = slice(times(d_.p_mean, d_.p_std)).to(opts_);
  const at::Tensor cfg_idx = slice(at::randint(static_cast<int64_t>(d_.cfg_scales.size()), {Bg}, gen, at::kLong));
  r.w = at::tensor(d_.cfg_scales, at::kDouble).index_select(0, cfg_idx).to(opts_);
  const at::Tensor t_new = times(d_.p_mean, d_.p_std);
  r.t_new = slice(max_time_weighting(t_new, use_adv_ ? d_.largest_timestep_prob : 0.0, gen)).to(opts_);
  r.z_new = noise();
  r.t_d = slice(times(d_.d_p_mean, d_.d_p_std)).to(opts_);
  r.z_d = noise();
  r.z_d_real = noise();
  r.t_d_mis = slice(times(d_.d_p_mean, d_.d_p_std)).to(opts_);
  r.z_d_mis = noise();
  return r;
}

// F_theta and logvar of the student for the batch's text and guidance w (embedded as w * guidance_embeds_scale),
// through the TrigFlow view of its flow-space backbone.
StudentFn Distillation::student(const Batch& b, const at::Tensor& w) const {
  SanaTransformerInputs cond;
  cond.encoder_hidden_states = b.embeds, cond.encoder_attention_mask = b.mask;
  cond.guidance = w * d_.guidance_embeds_scale;
  const SanaTrigFlow model(student_.transformer, {student_cn_, b.control, 1.0});
  return [this, model, cond](const at::Tensor& x_hat, const at::Tensor& t) {
    SanaTransformerAux aux;
    const at::Tensor F = model.forward(x_hat, t, cond, &aux);
    return std::make_pair(F, student_.logvar->forward(aux.embedded_timestep).squeeze(-1));
  };
}

// dx_t/dt of the teacher with real CFG (the unconditional half reads the empty prompt), no grad.
at::Tensor Distillation::teacher_velocity(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& w,
                                          const Batch& b) const {
  at::NoGradGuard no_grad;
  const int64_t B = x_t.size(0);
  SanaTransformerInputs cond;
  cond.encoder_hidden_states = at::cat({cache_.null_embeds.unsqueeze(0).expand({B, -1, -1}).to(opts_), b.embeds});
  cond.encoder_attention_mask = at::cat({cache_.null_mask.unsqueeze(0).expand({B, -1}).to(run_->device()), b.mask});
  const ControlNetCall control{teacher_cn_, teacher_cn_ ? at::cat({b.control, b.control}) : at::Tensor(), 1.0};
  const at::Tensor F = SanaTrigFlow(teacher_, control).forward(at::cat({x_t, x_t}) / sd_, at::cat({t, t}), cond) * sd_;
  const at::Tensor u = F.narrow(0, 0, B), c = F.narrow(0, B, B);
  return u + bcast(w) * (c - u);
}

// The frozen teacher's outputs of the head blocks at x_t.
std::vector<at::Tensor> Distillation::teacher_features(const at::Tensor& x_t, const at::Tensor& t,
                                                       const at::Tensor& embeds, const at::Tensor& mask,
                                                       const at::Tensor& control) const {
  SanaTransformerInputs cond;
  cond.encoder_hidden_states = embeds, cond.encoder_attention_mask = mask;
  SanaTransformerAux aux;
  aux.block_ids = blocks_;
  SanaTrigFlow(teacher_, {teacher_cn_, control, 1.0}).forward(x_t / sd_, t, cond, &aux);
  return aux.block_features;
}

// G: L_sCM (against the teacher's CFG velocity) + lambda_adv * hinge loss of the student's re-noised x0.
Values Distillation::generator_step(int64_t step, const Batch& b, const Draws& r) {
  const double t0 = now();
  const at::Tensor x0 = b.latents * sd_;
  const StudentFn F = student(b, r.w);
  at::Tensor loss = at::zeros({}, opts_.dtype(at::kFloat));
  double scm_v = 0, adv_v = 0, logvar_v = 0, tangent_v = 0;
  if (use_scm_) {
    const double warmup = std::min(1.0, static_cast<double>(step) / std::max(1, d_.tangent_warmup));
    const SCMLossInputs in{x0, r.z, r.t, teacher_velocity(noised(x0, r.z, r.t), r.t, r.w, b), warmup};
    SCMLossOptions so;
    so.sigma_data = sd_;
    const SCMLossResult s = scm_loss(F, in, so);
    loss = loss + s.loss;
    scm_v = s.loss.item<double>(), tangent_v = s.g_norm.mean().item<double>(), logvar_v = s.logvar.mean().item<double>();
  }
  if (use_adv_) {
    const at::Tensor x_t = noised(x0, r.z_new, r.t_new);
    const at::Tensor x0_hat = trigflow_predict_x0(x_t, r.t_new, F(x_t / sd_, r.t_new).first, sd_);
    const at::Tensor x_fake = noised(x0_hat, r.z_d, r.t_d);
    const at::Tensor adv =
        hinge_generator_loss(heads_->forward(teacher_features(x_fake, r.t_d, b.embeds, b.mask, b.control)));
    loss = loss + (use_scm_ ? d_.adv_weight : 1.0) * adv;
    adv_v = adv.item<double>();
  }
  optim_g_->zero_grad();
  loss.backward();
  // The learning-rate warm-up counts G steps only (the reference's scheduler steps with G).
  const auto [gnorm, ok] = apply_gradients(*optim_g_, g_params_, o_.lr, o_.warmup_steps, use_adv_ ? step / 2 : step,
                                           o_.grad_clip, run_->data_parallel(), ema_.get());
  return {{"loss_g", loss.item<double>()}, {"loss_scm", scm_v}, {"loss_adv", adv_v}, {"grad_norm_g", gnorm},
          {"logvar", logvar_v}, {"tangent_norm", tangent_v}, {"lr", optim_g_->lr()}, {"skipped", ok ? 0.0 : 1.0},
          {"seconds", now() - t0}};
}

// D: hinge loss, real latents against the student's x0 and misaligned real pairs, all re-noised.
Values Distillation::discriminator_step(int64_t step, const Batch& b, const Draws& r, at::Generator& gen) {
  const double t0 = now();
  const at::Tensor x0 = b.latents * sd_;
  std::vector<at::Tensor> feats_real, feats_fake;
  {
    at::NoGradGuard no_grad;
    const at::Tensor t_g = max_time_weighting(r.t, d_.largest_timestep_prob, gen);  // the student's x0 time
    const at::Tensor x_t = noised(x0, r.z, t_g);
    const at::Tensor x0_hat = trigflow_predict_x0(x_t, t_g, student(b, r.w)(x_t / sd_, t_g).first, sd_);
    at::Tensor x_fake = noised(x0_hat, r.z_d, r.t_d), t_fake = r.t_d, e_fake = b.embeds, m_fake = b.mask;
    at::Tensor c_fake = b.control;
    if (d_.misaligned_pairs && x0.size(0) > 1) {
      x_fake = at::cat({x_fake, noised(at::roll(x0, 1, 0), r.z_d_mis, r.t_d_mis)});
      t_fake = at::cat({r.t_d, r.t_d_mis}), e_fake = at::cat({b.embeds, b.embeds}), m_fake = at::cat({b.mask, b.mask});
      if (c_fake.defined()) c_fake = at::cat({b.control, b.control});
    }
    feats_real = teacher_features(noised(x0, r.z_d_real, r.t_d), r.t_d, b.embeds, b.mask, b.control);
    feats_fake = teacher_features(x_fake, t_fake, e_fake, m_fake, c_fake);
  }
  const at::Tensor real_logits = heads_->forward(feats_real), fake_logits = heads_->forward(feats_fake);
  const at::Tensor loss = hinge_discriminator_loss(real_logits, fake_logits);
  optim_d_->zero_grad();
  loss.backward();
  const auto [gnorm, ok] = apply_gradients(*optim_d_, d_params_, d_.lr_d > 0 ? d_.lr_d : o_.lr, 0, step, o_.grad_clip,
                                           run_->data_parallel(), nullptr);
  return {{"loss_d", loss.item<double>()}, {"d_real", real_logits.mean().item<double>()},
          {"d_fake", fake_logits.mean().item<double>()}, {"grad_norm_d", gnorm}, {"skipped", ok ? 0.0 : 1.0},
          {"seconds", now() - t0}};
}

// Sample grid: the first 8 cached captions through the Sprint pipeline at 1 and 2 steps (guidance 4.5, fixed noise).
void Distillation::sample_grid(const std::string& path) {
  if (!vae_) vae_ = AutoencoderDC::from_pretrained((fs::path(d_.teacher) / "vae").string(), opts_);
  PipelineComponents c;
  c.transformer = student_.transformer, c.controlnet = student_cn_, c.vae = vae_, c.device = run_->device();
  SCMSchedulerConfig sched;
  sched.sigma_data = sd_;
  const SanaSprintPipeline pipe(c, sched);
  GenerateOptions o = grid_options(cache_, c.vae_scale_factor(), o_.seed, /*with_control=*/student_cn_ != nullptr);
  std::vector<at::Tensor> rows;
  for (int steps : {1, 2}) {
    o.steps = steps;
    o.intermediate_timesteps = d_.intermediate_timesteps;
    rows.push_back(pipe.generate(o).images);
  }
  save_grid(path, at::cat(rows), 8);
}

void Distillation::run() {
  int64_t count = 0;
  for (const auto& kv : part_.params) count += kv.second.numel();
  run_->note("distill (" + d_.loss + "): " + part_.what + ", " + std::to_string(count) +
             " parameters, heads on blocks " + c10::str(blocks_) + ", " + std::to_string(o_.steps) +
             (use_adv_ ? " iterations (G and D alternate)" : " iterations (G only)") + ", global batch " +
             std::to_string(o_.batch_size) + " over " + std::to_string(run_->world_size()) + " process(es)");
  NamedTensors shared = g_params_;
  for (const auto& kv : nn::state_dict(*heads_)) shared.push_back(kv);
  Values last_g, last_d;
  for (int64_t step = run_->begin(shared); step < o_.steps; ++step) {
    const Batch b = cache_batch(cache_, o_.seed, step, run_->slice(), run_->device(),
                                opts_.dtype().toScalarType());
    at::Generator gen = step_generator(o_.seed, step);
    const Draws r = draw(gen, {o_.batch_size, b.latents.size(1), b.latents.size(2), b.latents.size(3)});
    const bool g_phase = !use_adv_ || step % 2 == 0;  // sCM-only has no discriminator: every iteration is G
    Values shown;
    if (g_phase) {
      last_g = generator_step(step, b, r);
    } else {
      last_d = discriminator_step(step, b, r, gen);
    }
    for (const auto& kv : last_g)
      if (kv.first == "loss_scm" || kv.first == "loss_adv" || kv.first == "grad_norm_g") shown.push_back(kv);
    for (const auto& kv : last_d)
      if (kv.first == "loss_d") shown.push_back(kv);
    run_->end_step(step, g_phase ? last_g : last_d, shown, {{"phase", g_phase ? "G" : "D"}});
  }
  // Export a diffusers SanaSprintPipeline folder (the logvar head is training-only, as in the reference export).
  if (ema_) ema_->copy_to_params();
  if (!run_->finish()) return;
  part_.write(o_.out);
  note(part_.written);
}

}  // namespace

void distill(const DistillOptions& d, const TrainOptions& o) {
  check(d);
  Distillation(d, o).run();
}

}  // namespace sana
