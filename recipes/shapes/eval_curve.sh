#!/usr/bin/env bash
# ShapesEval over training: scores every snapshot a run wrote (`--snapshot-every N`: RUN/training/snapshots/step-N/)
# on the first PROMPTS prompts of the fixed prompt set and appends one JSON line per snapshot and sampling setting to
# RUN/training/eval_curve.jsonl ({step, steps, overall, per category}). Teachers are sampled with 20 Euler steps and
# CFG 4.5, Sprint students with 1 and 2 steps. A snapshot already scored is skipped, so this can run again while the
# training goes on. recipes/shapes/plot.sh draws the curve.
# Usage: recipes/shapes/eval_curve.sh RUN_DIR [PROMPTS]     (default 100 prompts: standard error ~0.03)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
run="${1:?usage: eval_curve.sh RUN_DIR [PROMPTS]}"
prompts="${2:-100}"
S="${SANA_SPRINT:-$root/build/sana-sprint}"
snaps="$run/training/snapshots" curve="$run/training/eval_curve.jsonl"
[ -d "$snaps" ] || { echo "eval_curve.sh: $snaps does not exist (train with --snapshot-every N)" >&2; exit 2; }
command -v jq >/dev/null || { echo "eval_curve.sh: jq is missing (scripts/setup.sh installs it)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
touch "$curve"

# The snapshots' steps in order (a step-N.tmp folder is one being written).
found="$(for d in "$snaps"/step-*; do [ -d "$d" ] && [ "${d%.tmp}" = "$d" ] && echo "${d##*step-}"; done | sort -n)"
for step in $found; do
  snap="$snaps/step-$step"
  case "$(jq -r ._class_name "$snap/model_index.json")" in
    SanaSprintPipeline) settings="1 2" ;;
    SanaPipeline) settings="20" ;;
    *) echo "eval_curve.sh: $snap is not a pipeline folder; skipped" >&2; continue ;;
  esac
  for steps in $settings; do
    if jq -e -s --argjson a "$step" --argjson s "$steps" --argjson p "$prompts" \
         'any(.[]; .step == $a and .steps == $s and .prompts == $p)' "$curve" >/dev/null; then
      continue
    fi
    echo "== $(date +%T) eval step $step, $steps sampling steps, $prompts prompts" >&2
    "$S" eval -m "$snap" --steps "$steps" --prompts "$prompts" -o "$tmp/images" --overwrite --json "$tmp/eval.json" > /dev/null
    jq -c --argjson a "$step" '{step: $a, steps, prompts, guidance, overall}
      + (.categories | with_entries(.value = .value.score))' "$tmp/eval.json" >> "$curve"
  done
done
echo "eval_curve.sh: $curve" >&2
