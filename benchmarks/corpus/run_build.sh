#!/usr/bin/env bash
# Build the whole calibration corpus with one command, from a frozen copy of the code (later edits to the worktree
# cannot break a running build), as parallel workers in their own sessions, and wait for all of them:
#
#   bash benchmarks/corpus/run_build.sh [OUT=/work/corpus] [SRC=/work/corpus_src]
#
# Resumable: rerun the same command and every finished step is skipped (a half-trained run starts over).
# Per-step timings: OUT/build.log (one JSON line each); worker output: OUT/build-<model>-<shard>.log.
# Then: python benchmarks/corpus/evaluate.py --corpus OUT
set -euo pipefail
OUT=${1:-/work/corpus}
SRC=${2:-/work/corpus_src}
PY=${PYTHON:-$(command -v python)}
rm -rf "$SRC" && mkdir -p "$SRC" "$OUT" && cp -r dpo_doctor benchmarks "$SRC"/
find "$SRC" -name __pycache__ -prune -exec rm -rf {} +
# One session (setsid) per worker: with the kernel's autogroup scheduling, CPU is shared per session, and every
# worker trains on one torch thread.
# GEMMA=1 adds the Gemma-3-270M runs (about 4 minutes per training step at load 20 on 2 cores: not in the budget).
WORKERS=("tiny tiny-llama 0/2" "tiny tiny-llama 1/2" "tiny tiny-qwen3 0/2" "tiny tiny-qwen3 1/2" "smollm2 smollm2 0/3"
         "smollm2 smollm2 1/3" "smollm2 smollm2 2/3")
if [ "${GEMMA:-0}" = 1 ]; then WORKERS+=("gemma3 gemma3 0/2" "gemma3 gemma3 1/2"); fi
for w in "${WORKERS[@]}"; do
  set -- $w
  PYTHONPATH="$SRC" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 setsid "$PY" "$SRC/benchmarks/corpus/build.py" \
    --out "$OUT" --scans suite --family "$1" --models "$2" --shard "$3" > "$OUT/build-$2-${3/\//of}.log" 2>&1 < /dev/null &
done
wait
