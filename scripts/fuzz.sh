#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/; clang with ASan + UBSan) in build-asan/ (shared with scripts/sanitize.sh) and runs each for SECONDS (default 60)
# from a seed corpus made of the fixtures, the shipped models and fuzz/seeds/. Prints executions, coverage and
# findings per target and writes them to build-asan/fuzz-report.md; exits 1 if any target found something
# (the input is kept under build-asan/findings/TARGET/).
#   scripts/fuzz.sh [SECONDS] [TARGET ...]       TARGET: safetensors safetensors_index config png scene prompt
#                                                        generation_params (default: all)
#   NO_BUILD=1 scripts/fuzz.sh ...               runs the targets as built (while another build uses the folder)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors safetensors_index config png scene prompt generation_params)
out=build-asan

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is missing (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
[ -n "${NO_BUILD:-}" ] || cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DCMAKE_CXX_COMPILER=clang++ -DSANA_FUZZ=ON -DSANA_BUILD_BENCH=OFF >/dev/null
[ -n "${NO_BUILD:-}" ] || cmake --build "$out" -j "${JOBS:-2}" --target "${targets[@]/#/fuzz_}" sana_spm

# Copies each file found (find's arguments) into folder $1 under a numbered name (fixtures repeat their names).
copy_numbered() {
  local dir=$1 i=0 f
  shift
  while IFS= read -r f; do cp "$f" "$dir/seed$((i++))"; done < <(find "$@")
}

# Seeds: copies of small real files, the config ones prefixed with the byte that selects their parser.
seed_corpus() {
  local target=$1 dir=$2
  mkdir -p "$dir"
  case $target in
    safetensors) copy_numbered "$dir" tests/data -name '*.safetensors' -size -64k ;;
    safetensors_index)
      printf '{"metadata": {"total_size": 56}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}' \
        >"$dir/index.json" ;;
    png) copy_numbered "$dir" tests/data -name '*.png' -size -64k ;;
    config)
      local i=0 f sel
      while IFS= read -r f; do
        case $f in
          */controlnet/config.json) sel='\001' ;;
          */transformer/config.json) sel='\000' ;;
          */vae/config.json) sel='\002' ;;
          */text_encoder/config.json) sel='\003' ;;
          */scheduler_config.json) if grep -q SCMScheduler "$f"; then sel='\004'; else sel='\005'; fi ;;
          */model_index.json) sel='\006' ;;
          *) continue ;;
        esac
        { printf "$sel"; cat "$f"; } >"$dir/seed$((i++))"
      done < <(find tests/data models -name '*.json')
      ;;
    *) cp fuzz/seeds/"$target"/* "$dir"/ ;;
  esac
}

# alloc_dealloc_mismatch=0: libsentencepiece, deep-bound, pairs libstdc++'s operator new with the sanitizer's
# operator delete: one heap, two names (docs/RELIABILITY.md, "The test suite under sanitizers").
report="$out/fuzz-report.md"
printf '| target | seconds | executions | exec/s | coverage (edges) | features | corpus | findings |\n|---|---|---|---|---|---|---|---|\n' >"$report"
found=0
for t in "${targets[@]}"; do
  corpus="$out/corpus/$t" findings="$out/findings/$t" log="$out/fuzz-$t.log"
  [ -d "$corpus" ] || seed_corpus "$t" "$corpus"
  mkdir -p "$findings"
  echo "fuzz.sh: $t for ${seconds}s ..." >&2
  max_len=65536  # binary formats; text inputs are cut at 4 kB (longer prompts only tokenise slower)
  case $t in prompt | scene | generation_params) max_len=4096 ;; esac
  rc=0
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:alloc_dealloc_mismatch=0}" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$out/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="$findings/" "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  n_corpus=$(find "$corpus" -type f | wc -l)
  n_found=$(find "$findings" -type f | wc -l)
  if [ "$rc" -ne 0 ] || [ "$n_found" -ne 0 ]; then
    found=1
    echo "fuzz.sh: $t FOUND something (exit $rc); see $log and $findings/" >&2
  fi
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
    "${ft:-?}" "$n_corpus" "$n_found" >>"$report"
done
cat "$report"
exit "$found"
