// `sana-sprint distill`: SANA-Sprint's hybrid sCM + LADD distillation of a flow teacher (ALGORITHM.md §4-6), as the
// NVlabs training loop does it:
//  * the student starts as the teacher (TrigFlow-wrapped, training-free) plus a zero-initialised guidance embedder and
//    an adaptive logvar head Linear(D, 1) on the embedded timestep;
//  * iterations alternate G (even) and D (odd), each on its own batch; the tangent warm-up counts both;
//  * G: sCM loss against the teacher's CFG velocity (per-sample scale from {4, 4.5, 5}) + adv_weight * hinge loss of
//    the heads on the frozen teacher's features of the student's x0 (re-noised at the discriminator time law), the
//    x0 taken at a fresh time that is pi/2 with probability 0.5 (max-time weighting);
//  * D: hinge loss on real latents vs the student's x0 (no grad) and misaligned real pairs (latents rolled by one
//    along the batch, with the original prompts) as fakes.
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/diffusion/scm_scheduler.h"
#include "sana/diffusion/trigflow.h"
#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/models/dcae.h"
#include "sana/models/ladd_discriminator.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/runtime.h"
#include "sana/train/scm_loss.h"
#include "train/trainer_internal.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {
namespace {

constexpr double kLargestTimestep = 1.57080;  // the reference's largest_timestep

// A diffusers teacher keeps its timestep MLP under AdaLayerNormSingle ("time_embed.emb.timestep_embedder"); the
// Sprint student, with a guidance embedder beside it, directly under "time_embed".
std::string teacher_name(const std::string& student_name) {
  const std::string sprint = "time_embed.timestep_embedder.";
  if (student_name.rfind(sprint, 0) == 0) return "time_embed.emb.timestep_embedder." + student_name.substr(sprint.size());
  return student_name;
}

// Each element with probability p replaced by the largest timestep.
at::Tensor max_time_weighting(const at::Tensor& t, double p, at::Generator& gen) {
  const at::Tensor u = at::rand(t.sizes(), gen, t.options());
  return at::where(u < p, at::full_like(t, kLargestTimestep), t);
}

at::Tensor bcast(const at::Tensor& t) { return t.view({-1, 1, 1, 1}); }

}  // namespace

void distill(const DistillOptions& d, const TrainOptions& o) {
  using namespace detail;
  if (d.loss != "scm" && d.loss != "ladd" && d.loss != "hybrid")
    throw Error("--loss must be scm, ladd or hybrid, got '" + d.loss + "'");
  if (d.cfg_scales.empty()) throw Error("--cfg-scales: at least one value");
  const bool use_scm = d.loss != "ladd", use_adv = d.loss != "scm";
  const DistEnv env = dist_env_from_environment();
  const bool main_rank = env.rank == 0;
  const at::Device device = parse_device(o.device);
  const at::ScalarType dtype = parse_dtype(o.dtype);
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  const double sd = 0.5;  // sigma_data

  const LatentCache cache = LatentCache::open(d.cache);
  const fs::path tdir(d.teacher);
  if (!fs::exists(tdir / "transformer" / "config.json"))
    throw Error("--teacher: " + d.teacher + " has no transformer/config.json (a SanaPipeline folder from sana-sprint train)");
  auto teacher = SanaTransformer2DModel::from_pretrained((tdir / "transformer").string(), opts);
  if (teacher->config().guidance_embeds) throw Error("--teacher: the transformer already has a guidance embedding");
  for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  const SanaTrigFlow teacher_trig(teacher);

  // Student = teacher + guidance embedder (output zero at init) + logvar head.
  json scfg_json = json::parse(read_text_file((tdir / "transformer" / "config.json").string()), nullptr, false);
  scfg_json["guidance_embeds"] = true;
  scfg_json["guidance_embeds_scale"] = 0.1;
  const SanaTransformerConfig scfg = parse_sana_transformer_config(scfg_json.dump(), "student config");
  auto student = std::make_shared<SanaTransformer2DModel>(scfg, opts);
  {
    at::NoGradGuard no_grad;
    std::map<std::string, at::Tensor> tstate;
    for (const auto& [k, v] : nn::state_dict(*teacher)) tstate[k] = v;
    at::Generator gen = step_generator(o.seed, -1, 0x9e1d);
    for (const auto& p : student->named_parameters()) {
      const std::string& name = p.key();
      if (name.rfind("time_embed.guidance_embedder.", 0) == 0) {
        if (name == "time_embed.guidance_embedder.linear_1.weight")
          p.value().copy_(at::randn(p.value().sizes(), gen) * 0.02);
        else
          p.value().zero_();
        continue;
      }
      const auto it = tstate.find(teacher_name(name));
      if (it == tstate.end()) throw Error("distill: the teacher has no tensor for the student's " + name);
      p.value().copy_(it->second);
    }
  }
  const int64_t D = scfg.inner_dim();
  auto logvar_linear = std::make_shared<nn::Linear>(D, 1, true, opts);
  {
    at::NoGradGuard no_grad;
    at::Generator gen = step_generator(o.seed, -1, 0x109a);
    const double bound = std::sqrt(6.0 / (D + 1));  // xavier_uniform
    logvar_linear->weight.copy_(at::rand({1, D}, gen) * 2 * bound - bound);
    logvar_linear->bias.zero_();
  }
  std::vector<int> block_ids = d.head_block_ids;
  if (block_ids.empty()) {
    const int L = scfg.num_layers;
    for (int k : {L / 4, L / 2, 3 * L / 4, L - 1})
      if (block_ids.empty() || block_ids.back() < k) block_ids.push_back(k);
  }
  for (int id : block_ids)
    if (id < 0 || id >= scfg.num_layers)
      throw Error("--head-blocks: block " + std::to_string(id) + " outside 0.." + std::to_string(scfg.num_layers - 1));
  auto heads = std::make_shared<LADDDiscriminatorHeads>(D, block_ids, opts);
  {
    at::NoGradGuard no_grad;
    at::Generator gen = step_generator(o.seed, -1, 0xd15c);
    for (auto& p : heads->named_parameters())
      if (p.key().find("weight_orig") != std::string::npos)
        p.value().copy_(at::randn(p.value().sizes(), gen) / std::sqrt(static_cast<double>(p.value()[0].numel())));
    // The power iteration's start vectors too, so that a run is a function of its seed.
    for (auto& b : heads->named_buffers()) {
      const at::Tensor r = at::randn(b.value().sizes(), gen);
      b.value().copy_(r / r.norm().clamp_min(1e-12));
    }
  }

  NamedTensors g_params = trainable(*student, "student.");
  for (const auto& kv : trainable(*logvar_linear, "logvar.")) g_params.push_back(kv);
  const NamedTensors d_params = trainable(*heads, "heads.");
  const auto optim_g_ptr = make_optimizer(o.optimizer, g_params, o.lr, o.weight_decay);
  const auto optim_d_ptr = make_optimizer(o.optimizer, d_params, d.lr_d > 0 ? d.lr_d : o.lr, o.weight_decay);
  Optimizer& optim_g = *optim_g_ptr;
  Optimizer& optim_d = *optim_d_ptr;
  const NamedTensors student_params = trainable(*student);
  std::unique_ptr<EMA> ema = o.ema_decay > 0 ? std::make_unique<EMA>(student_params, o.ema_decay) : nullptr;
  Slice slice;
  const std::unique_ptr<DataParallel> dp = data_parallel(env, o, device, slice);
  const std::string ckpt = checkpoint_path(o.out);
  const fs::path state_dir = fs::path(o.out) / "training";
  int64_t start = 0;
  if (o.resume) {
    start = load_checkpoint_step(ckpt);
    restore_tensors(ckpt, "", g_params);
    restore_tensors(ckpt, "heads_state.", nn::state_dict(*heads));
    optim_g.load_state(load_prefixed(ckpt, "optim_g."));
    optim_d.load_state(load_prefixed(ckpt, "optim_d."));
    if (ema) restore_tensors(ckpt, "ema.", ema->averages());
    if (main_rank) note("distill: resumed from " + ckpt + " at iteration " + std::to_string(start));
  } else if (dp) {
    dp->broadcast_parameters(tensors_of(g_params));
    dp->broadcast_parameters(tensors_of(nn::state_dict(*heads)));
  }
  const auto save_state = [&](int64_t step) {
    if (!main_rank) return;
    NamedTensors t = g_params;
    for (const auto& [k, v] : nn::state_dict(*heads)) t.emplace_back("heads_state." + k, v);
    for (const auto& [k, v] : optim_g.state()) t.emplace_back("optim_g." + k, v);
    for (const auto& [k, v] : optim_d.state()) t.emplace_back("optim_d." + k, v);
    if (ema) for (const auto& kv : ema->state("ema.")) t.push_back(kv);
    save_checkpoint(ckpt, step, t);
  };

  // F_theta and logvar of the student for a conditioning (text, mask, guidance * 0.1).
  const auto student_fn = [&](const at::Tensor& embeds, const at::Tensor& mask, const at::Tensor& guidance) {
    return StudentFn([&, embeds, mask, guidance](const at::Tensor& x_hat, const at::Tensor& t) {
      SanaTransformerAux aux;
      const at::Tensor F = trigflow_from_flow(
          [&](const at::Tensor& x_s, const at::Tensor& s) {
            SanaTransformerInputs in;
            in.hidden_states = x_s, in.timestep = s, in.encoder_hidden_states = embeds;
            in.encoder_attention_mask = mask, in.guidance = guidance;
            return student->forward(in, &aux);
          },
          x_hat, t);
      return std::make_pair(F, logvar_linear->forward(aux.embedded_timestep).squeeze(-1));
    });
  };
  // The frozen teacher's block outputs for the discriminator heads at (x_hat, t).
  const auto teacher_features = [&](const at::Tensor& x_hat, const at::Tensor& t, const at::Tensor& embeds,
                                    const at::Tensor& mask) {
    SanaTransformerAux aux;
    aux.block_ids = block_ids;
    trigflow_from_flow(
        [&](const at::Tensor& x_s, const at::Tensor& s) {
          SanaTransformerInputs in;
          in.hidden_states = x_s, in.timestep = s, in.encoder_hidden_states = embeds, in.encoder_attention_mask = mask;
          return teacher->forward(in, &aux);
        },
        x_hat, t);
    return aux.block_features;
  };

  // Sample grids: 8 fixed captions, the student at 1 and 2 steps (guidance 4.5) from fixed noise.
  std::shared_ptr<AutoencoderDC> vae;
  const auto sample = [&](int64_t step) {
    if (!main_rank) return;
    at::NoGradGuard no_grad;
    if (!vae) vae = AutoencoderDC::from_pretrained((tdir / "vae").string(), opts);
    const int64_t k = std::min<int64_t>(8, cache.size());
    const at::Tensor idx = at::arange(k, at::kLong);
    const auto F = student_fn(cache.prompt_embeds.index_select(0, idx).to(opts),
                              cache.prompt_attention_mask.index_select(0, idx).to(device),
                              at::full({k}, 4.5 * 0.1, opts));
    std::vector<at::Tensor> rows;
    for (int steps : {1, 2}) {
      SCMScheduler sched;
      SCMTimestepOptions so;
      so.steps = steps;
      if (steps == 2) so.intermediate_timesteps = 1.3;
      const at::Tensor ts = sched.set_timesteps(so);
      at::Generator gen = step_generator(o.seed, -2, 0x5a3e);
      at::Tensor x = at::randn({k, cache.latents.size(1), cache.latents.size(2), cache.latents.size(3)}, gen).to(opts) * sd;
      at::Tensor x0;
      for (int i = 0; i < sched.num_steps(); ++i)
        std::tie(x, x0) = sched.step(F(x / sd, ts[i].expand({k}).to(opts)).first * sd, i, x, gen);
      rows.push_back(vae->decode(x0 / sd / cache.scaling_factor).clamp(-1, 1).div(2).add(0.5));
    }
    save_grid((state_dir / "samples" / ("step-" + std::to_string(step) + ".png")).string(), at::cat(rows), 8);
  };

  if (main_rank)
    note("distill (" + d.loss + "): student " + std::to_string(nn::count_parameters(*student)) +
         " parameters, heads on blocks " + c10::str(block_ids) + ", " + std::to_string(o.steps) +
         std::string(use_adv ? " iterations (G and D alternate)" : " iterations (G only)") + ", global batch " + std::to_string(o.batch_size) + " over " +
         std::to_string(env.world_size) + " process(es)");
  std::unique_ptr<JsonlLog> log = main_rank ? std::make_unique<JsonlLog>((state_dir / "log.jsonl").string(), start) : nullptr;
  Progress progress("distill", o.steps, start);
  const auto cpu = at::TensorOptions().dtype(at::kFloat);
  std::vector<std::pair<std::string, double>> last_g, last_d;
  for (int64_t step = start; step < o.steps; ++step) {
    // LADD-only alternates too; sCM-only has no discriminator: every iteration is a G step.
    const bool g_phase = !use_adv || step % 2 == 0;
    const double step_t0 = now();
    const Batch b = cache_batch(cache, o.seed, step, o.batch_size, slice, device, dtype);
    at::Generator gen = step_generator(o.seed, step);
    const int64_t Bg = o.batch_size;
    const auto shape = std::vector<int64_t>{Bg, b.latents.size(1), b.latents.size(2), b.latents.size(3)};
    const at::Tensor x0 = b.latents * sd;
    // Draws for the global batch, in a fixed order, then this process's rows.
    const at::Tensor z = slice(at::randn(shape, gen, cpu) * sd).to(opts);
    at::Tensor t = slice(sample_trigflow_times(Bg, d.p_mean, d.p_std, sd, gen)).to(opts);
    const at::Tensor cfg_idx = slice(at::randint(static_cast<int64_t>(d.cfg_scales.size()), {Bg}, gen, at::kLong));
    const at::Tensor w = at::tensor(d.cfg_scales, at::kDouble).index_select(0, cfg_idx).to(opts);
    const at::Tensor t_new = slice(max_time_weighting(sample_trigflow_times(Bg, d.p_mean, d.p_std, sd, gen),
                                                      use_adv ? d.largest_timestep_prob : 0.0, gen)).to(opts);
    const at::Tensor z_new = slice(at::randn(shape, gen, cpu) * sd).to(opts);
    const at::Tensor t_d = slice(sample_trigflow_times(Bg, d.d_p_mean, d.d_p_std, sd, gen)).to(opts);
    const at::Tensor z_d = slice(at::randn(shape, gen, cpu) * sd).to(opts);
    const at::Tensor z_d_real = slice(at::randn(shape, gen, cpu) * sd).to(opts);
    const at::Tensor t_d_mis = slice(sample_trigflow_times(Bg, d.d_p_mean, d.d_p_std, sd, gen)).to(opts);
    const at::Tensor z_d_mis = slice(at::randn(shape, gen, cpu) * sd).to(opts);
    const auto F = student_fn(b.embeds, b.mask, w * 0.1);

    if (g_phase) {
      at::Tensor loss = at::zeros({}, opts.dtype(at::kFloat));
      double scm_v = 0, adv_v = 0, logvar_v = 0, gnorm_tan = 0;
      if (use_scm) {
        // Teacher velocity with real CFG (unconditional: the empty prompt), no grad.
        at::Tensor dxt_dt;
        {
          at::NoGradGuard no_grad;
          const int64_t B = x0.size(0);
          const at::Tensor x_t = at::cos(bcast(t)) * x0 + at::sin(bcast(t)) * z;
          SanaTransformerInputs cond;
          cond.encoder_hidden_states = at::cat({cache.null_embeds.unsqueeze(0).expand({B, -1, -1}).to(opts), b.embeds});
          cond.encoder_attention_mask = at::cat({cache.null_mask.unsqueeze(0).expand({B, -1}).to(device), b.mask});
          const at::Tensor Ft = teacher_trig.forward(at::cat({x_t, x_t}) / sd, at::cat({t, t}), cond) * sd;
          const at::Tensor u = Ft.narrow(0, 0, B), c = Ft.narrow(0, B, B);
          dxt_dt = u + bcast(w) * (c - u);
        }
        SCMLossInputs in{x0, z, t, dxt_dt, std::min(1.0, static_cast<double>(step) / std::max(1, d.tangent_warmup))};
        const SCMLossResult r = scm_loss(F, in);
        loss = loss + r.loss;
        scm_v = r.loss.item<double>();
        gnorm_tan = r.g_norm.mean().item<double>();
        logvar_v = r.logvar.mean().item<double>();
      }
      if (use_adv) {
        const at::Tensor x_t_new = at::cos(bcast(t_new)) * x0 + at::sin(bcast(t_new)) * z_new;
        const at::Tensor F_new = F(x_t_new / sd, t_new).first;
        const at::Tensor x0_hat = trigflow_predict_x0(x_t_new, t_new, F_new, sd);
        const at::Tensor x_fake = at::cos(bcast(t_d)) * x0_hat + at::sin(bcast(t_d)) * z_d;
        const at::Tensor adv = hinge_generator_loss(heads->forward(teacher_features(x_fake / sd, t_d, b.embeds, b.mask)));
        loss = loss + (use_scm ? d.adv_weight : 1.0) * adv;
        adv_v = adv.item<double>();
      }
      optim_g.zero_grad();
      loss.backward();
      // The learning-rate warm-up counts G steps only (the reference's scheduler steps with G).
      const auto [gnorm, ok] = apply_gradients(optim_g, g_params, o.lr, o.warmup_steps, use_adv ? step / 2 : step,
                                               o.grad_clip, dp.get(), ema.get());
      last_g = {{"loss_g", loss.item<double>()}, {"loss_scm", scm_v}, {"loss_adv", adv_v}, {"grad_norm_g", gnorm},
                {"logvar", logvar_v}, {"tangent_norm", gnorm_tan}, {"lr", optim_g.lr()}, {"skipped", ok ? 0.0 : 1.0},
                {"seconds", now() - step_t0}};
      if (log) log->write(step, last_g, {{"phase", "G"}});
    } else {
      at::Tensor x_fake, t_fake, e_fake, m_fake;
      std::vector<at::Tensor> feats_real, feats_fake;
      {
        at::NoGradGuard no_grad;
        // The student's x0 at the sCM time, pi/2 with probability p.
        const at::Tensor t_g = max_time_weighting(t, d.largest_timestep_prob, gen);
        const at::Tensor x_t = at::cos(bcast(t_g)) * x0 + at::sin(bcast(t_g)) * z;
        const at::Tensor x0_hat = trigflow_predict_x0(x_t, t_g, F(x_t / sd, t_g).first, sd);
        x_fake = at::cos(bcast(t_d)) * x0_hat + at::sin(bcast(t_d)) * z_d;
        t_fake = t_d, e_fake = b.embeds, m_fake = b.mask;
        if (d.misaligned_pairs && x0.size(0) > 1) {
          const at::Tensor x_mis = at::cos(bcast(t_d_mis)) * at::roll(x0, 1, 0) + at::sin(bcast(t_d_mis)) * z_d_mis;
          x_fake = at::cat({x_fake, x_mis});
          t_fake = at::cat({t_d, t_d_mis}), e_fake = at::cat({b.embeds, b.embeds}), m_fake = at::cat({b.mask, b.mask});
        }
        const at::Tensor x_real = at::cos(bcast(t_d)) * x0 + at::sin(bcast(t_d)) * z_d_real;
        feats_real = teacher_features(x_real / sd, t_d, b.embeds, b.mask);
        feats_fake = teacher_features(x_fake / sd, t_fake, e_fake, m_fake);
      }
      const at::Tensor real_logits = heads->forward(feats_real), fake_logits = heads->forward(feats_fake);
      const at::Tensor loss = hinge_discriminator_loss(real_logits, fake_logits);
      optim_d.zero_grad();
      loss.backward();
      const auto [gnorm, ok] = apply_gradients(optim_d, d_params, d.lr_d > 0 ? d.lr_d : o.lr, 0, step, o.grad_clip,
                                               dp.get(), nullptr);
      last_d = {{"loss_d", loss.item<double>()}, {"d_real", real_logits.mean().item<double>()},
                {"d_fake", fake_logits.mean().item<double>()}, {"grad_norm_d", gnorm}, {"skipped", ok ? 0.0 : 1.0},
                {"seconds", now() - step_t0}};
      if (log) log->write(step, last_d, {{"phase", "D"}});
    }
    if (main_rank && ((step + 1) % o.log_every == 0 || step + 1 == o.steps)) {
      std::vector<std::pair<std::string, double>> shown;
      for (const auto& kv : last_g)
        if (kv.first == "loss_scm" || kv.first == "loss_adv" || kv.first == "grad_norm_g") shown.push_back(kv);
      for (const auto& kv : last_d)
        if (kv.first == "loss_d") shown.push_back(kv);
      progress.update(step + 1, shown);
    }
    if ((step + 1) % o.checkpoint_every == 0 || step + 1 == o.steps) save_state(step + 1);
    if (o.sample_every > 0 && (step + 1) % o.sample_every == 0) sample(step + 1);
  }
  if (!main_rank) return;

  // Export a diffusers SanaSprintPipeline folder (the logvar head is training-only, as in the reference export).
  if (ema) ema->copy_to_params();
  if (o.sample_every >= 0) sample(o.steps);
  const json sched = {{"_class_name", "SCMScheduler"}, {"num_train_timesteps", 1000}, {"prediction_type", "trigflow"},
                      {"sigma_data", sd}};
  export_pipeline(o.out, "SanaSprintPipeline", "SCMScheduler", sched.dump(2) + "\n", *student,
                  scfg_json.dump(2) + "\n", d.teacher, cache, 1, 4.5);
  note("distill: wrote the student pipeline " + o.out);
}

}  // namespace sana
