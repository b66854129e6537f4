#!/usr/bin/env bash
# A real text->python transfer sweep on one GPU within ~10 minutes, then the fitted law.
#   bash benchmarks/gpu_sweep.sh            # from the repository root, with the project's venv
# Steps: pretrain 3 sizes on English text (bf16, ~60 s each, registered as pretrained-text@gpu-sweep-<size>),
# the grid of scripts/configs/gpu-sweep.yaml (24 fine-tune/scratch runs, ~15 s each), and a refit that prints the law.
set -euo pipefail
PY=${PY:-.venv/bin/python}
export TRANSFER_LAWS_HOME=${TRANSFER_LAWS_HOME:-$PWD/gpu-sweep-home}
CLI=("$PY" -m transfer_laws.scripts.cli)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
start=$(date +%s)
for size in 4x128 6x256 6x512; do
  "${CLI[@]}" pretrain --config scripts/configs/pretrain-gpu.yaml --preset "$size" \
    --alias "gpu-sweep-$size" --train.max-time-s 60 --progress-bar false
done
echo "pretraining done in $(( $(date +%s) - start )) s"
"${CLI[@]}" sweep --config scripts/configs/gpu-sweep.yaml
echo "sweep done in $(( $(date +%s) - start )) s"
"${CLI[@]}" refit --law text-to-python || echo "refit did not produce a law (see above)"
echo "total $(( $(date +%s) - start )) s"
