#pragma once
// The networks of SANA-Sprint distillation (docs/ARCHITECTURE.md, "Distillation"), built from a flow teacher:
//  * the student: the teacher's transformer plus a guidance embedder whose output starts at zero, so that at
//    iteration 0 the student is exactly the TrigFlow view of the teacher (the training-free transform);
//  * the adaptive-weight head: logvar = Linear(D, 1) on the student's embedded timestep (training only);
//  * the LADD discriminator heads on chosen blocks of the frozen teacher.
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "sana/models/ladd_discriminator.h"
#include "sana/models/sana_controlnet.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/layers.h"
#include "sana/train/trainer.h"

namespace sana::detail {

struct Student {
  std::shared_ptr<SanaTransformer2DModel> transformer;
  std::shared_ptr<nn::Linear> logvar;
  nlohmann::json config;  // the exported transformer config: the teacher's with guidance_embeds on
};

// The student of `teacher` (its folder's transformer config in `teacher_config`), seeded by `seed`; no logvar head yet.
Student make_student(const SanaTransformer2DModel& teacher, nlohmann::json teacher_config, const DistillOptions& d,
                     uint64_t seed, const at::TensorOptions& options);

// The adaptive-weight head Linear(D, 1), xavier-uniform weights from the run's seed, zero bias.
std::shared_ptr<nn::Linear> make_logvar_head(int64_t D, uint64_t seed, const at::TensorOptions& options);

// The student's ControlNet, started from the teacher's: the same blocks and embeddings (the time MLP moved from
// the teacher's AdaLayerNormSingle name to the Sprint one), a fresh guidance embedder with zero output, and whatever the
// teacher's lacks (QK-norm weights when only the student has QK-norm) from the student's own blocks. Trainable.
std::shared_ptr<SanaControlNetModel> make_student_controlnet(const SanaControlNetModel& teacher_controlnet,
                                                             const SanaTransformer2DModel& student, uint64_t seed);

// The teacher blocks that feed discriminator heads: the user's, or a spread over the depth (L/4, L/2, 3L/4, L-1).
std::vector<int> head_blocks(const DistillOptions& d, int num_layers);

// Heads of width `dim` on `blocks`, with seeded weights and power-iteration vectors (a run is a function of its seed).
std::shared_ptr<LADDDiscriminatorHeads> make_heads(int64_t dim, const std::vector<int>& blocks, uint64_t seed,
                                                   const at::TensorOptions& options);

}  // namespace sana::detail
