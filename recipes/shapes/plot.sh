#!/usr/bin/env bash
# Training curves of a shapes-world run as PNG plots, from the stages' JSONL logs (<stage>/training/log.jsonl):
# each value averaged over blocks of steps, so trends show through the per-batch noise. Needs jq and gnuplot
# (scripts/setup.sh installs both). Stages that have not run are skipped.
# With recipes/shapes/eval_curve.sh's scores of the snapshots (<stage>/training/eval_curve.jsonl), also the ShapesEval
# score over training.
# Usage: recipes/shapes/plot.sh [WORK_DIR] [OUT_DIR]     (defaults: recipes/shapes/work, WORK_DIR/plots)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$here/work}"
out="${2:-$work/plots}"
for tool in jq gnuplot; do
  command -v "$tool" >/dev/null || { echo "plot.sh: $tool is missing (scripts/setup.sh installs it)" >&2; exit 2; }
done
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# series LOG KEY BLOCK [FIELD=VALUE]: "step mean" rows, the mean of KEY over each BLOCK steps (only the rows whose
# FIELD is VALUE, e.g. phase=G).
series() {
  local log="$1" key="$2" block="$3" filter="${4:-}"
  jq -r --arg k "$key" --arg f "${filter%%=*}" --arg v "${filter#*=}" \
    'select(.[$k] != null and ($f == "" or (.[$f] | tostring) == $v)) | [.step, .[$k]] | @tsv' "$log" |
    awk -v b="$block" '{ i = int($1 / b); s[i] += $2; n[i]++ } END { for (i in s) print (i + 0.5) * b, s[i] / n[i] }' |
    sort -n
}

# plot NAME TITLE YLABEL "LOG KEY BLOCK FILTER LABEL" ...: one PNG with a line per series (FILTER "-": every row);
# logy=1 before it for a logarithmic y axis.
plot() {
  local name="$1" title="$2" ylabel="$3"; shift 3
  local cmds="" k=0
  for spec in "$@"; do
    read -r log key block filter label <<<"$spec"
    [ "$filter" = "-" ] && filter=""
    [ -f "$log" ] || continue
    series "$log" "$key" "$block" "$filter" > "$tmp/$name.$k.dat"
    [ -s "$tmp/$name.$k.dat" ] || continue
    cmds+="${cmds:+, }'$tmp/$name.$k.dat' using 1:2 with linespoints lw 2 pt 7 ps 0.5 title '${label//_/ }'"
    k=$((k + 1))
  done
  [ -n "$cmds" ] || return 0
  gnuplot <<GP
set terminal pngcairo size 640,400 font 'sans,10' noenhanced
${logy:+set logscale y}
set output '$out/$name.png.tmp'
set title '$title'
set xlabel 'step'
set ylabel '$ylabel'
set grid
set key below
plot $cmds
GP
  mv "$out/$name.png.tmp" "$out/$name.png"
  echo "plot.sh: $out/$name.png" >&2
}

vae="$work/base/vae/training/log.jsonl" te="$work/base/text_encoder/training/log.jsonl"
teacher="$work/teacher/training/log.jsonl" student="$work/student/training/log.jsonl"
plot vae "VAE: reconstruction PSNR on the training batches" "dB" "$vae psnr 50 - PSNR"
plot text_encoder "Text encoder pretraining: next-token loss" "nats per token" "$te loss 25 - loss"
logy=1 plot teacher "Teacher: flow-matching loss" "loss (log scale)" "$teacher loss 100 - loss"
plot student_losses "Student: sCM and adversarial losses (G steps)" "loss" \
  "$student loss_scm 50 phase=G sCM_(with_the_log-variance_term)" "$student loss_adv 50 phase=G adversarial_(G)"
plot student_tangent "Student: tangent norm before normalisation (G steps)" "||g||" "$student tangent_norm 50 phase=G tangent_norm"
plot student_discriminator "Student: discriminator logits and hinge loss (D steps)" "value" \
  "$student d_real 50 phase=D mean_logit,_real" "$student d_fake 50 phase=D mean_logit,_fake" "$student loss_d 50 phase=D hinge_loss"
teacher_curve="$work/teacher/training/eval_curve.jsonl" student_curve="$work/student/training/eval_curve.jsonl"
plot eval_curve "ShapesEval over training (snapshots; eval_curve.sh)" "overall score" \
  "$teacher_curve overall 1 steps=20 teacher,_20_steps" "$student_curve overall 1 steps=1 student,_1_step" \
  "$student_curve overall 1 steps=2 student,_2_steps"
