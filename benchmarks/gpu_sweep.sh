#!/usr/bin/env bash
# A real text->python transfer sweep on one GPU within ~10 minutes, then the fitted law.
#   bash benchmarks/gpu_sweep.sh            # from the repository root, with the project's venv
# Steps: pretrain 3 sizes on English text (bf16, PRETRAIN_S seconds each, registered as
# pretrained-text@gpu-sweep-<size>), the grid of scripts/configs/gpu-sweep.yaml (24 fine-tune/scratch runs,
# RUN_S seconds each at most), the longer scratch runs of gpu-sweep-scratch.yaml (6 runs, SCRATCH_S seconds each),
# a refit that prints the law, then `transfer-laws pin` on it: the advice's runs (repeats, longer scratch curves, more
# D_F) until alpha is within +-PIN_ALPHA with beta's interval excluding 0, or PIN_BUDGET is spent (exit 3 prints what
# is missing and the predicted compute to finish).
# Knobs (environment): PY (python), PRETRAIN_S (default 45), RUN_S (default 10), SCRATCH_S (default 20),
# REFIT_BOOTSTRAP (default 1000), SWEEP_DEADLINE_S (stop the sweeps this many seconds after the start; the runs
# that landed stay and the refit still runs; default none), PIN_ALPHA (default 0.1), PIN_BUDGET (default 10min;
# 0 skips the pin loop).
set -euo pipefail
PY=${PY:-.venv/bin/python}
PRETRAIN_S=${PRETRAIN_S:-45}
RUN_S=${RUN_S:-10}
SCRATCH_S=${SCRATCH_S:-20}
REFIT_BOOTSTRAP=${REFIT_BOOTSTRAP:-1000}
PIN_ALPHA=${PIN_ALPHA:-0.1}
PIN_BUDGET=${PIN_BUDGET:-10min}
export TRANSFER_LAWS_HOME=${TRANSFER_LAWS_HOME:-$PWD/gpu-sweep-home}
CLI=("$PY" -m transfer_laws.scripts.cli)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
start=$(date +%s)
for size in 4x128 6x256 6x512; do
  "${CLI[@]}" pretrain --config scripts/configs/pretrain-gpu.yaml --preset "$size" \
    --alias "gpu-sweep-$size" --train.max-time-s "$PRETRAIN_S" --progress-bar false
done
echo "pretraining done in $(( $(date +%s) - start )) s"
sweep() {  # sweep CONFIG SECONDS: one sweep, stopped at the deadline if one is set
  local cmd=("${CLI[@]}" sweep --config "$1" --train.max-time-s "$2" --refit-bootstrap "$REFIT_BOOTSTRAP")
  if [[ -z ${SWEEP_DEADLINE_S:-} ]]; then "${cmd[@]}"; return; fi
  local left=$(( SWEEP_DEADLINE_S - ($(date +%s) - start) ))
  # A killed trial is retried by a later run of the same sweep; the runs that landed stay and feed the refit.
  timeout --signal=INT "$(( left > 1 ? left : 1 ))" "${cmd[@]}" || echo "sweep $1 stopped at the deadline (rc $?)"
}
sweep scripts/configs/gpu-sweep.yaml "$RUN_S"
sweep scripts/configs/gpu-sweep-scratch.yaml "$SCRATCH_S"
echo "sweep done in $(( $(date +%s) - start )) s"
"${CLI[@]}" refit --law text-to-python --bootstrap "$REFIT_BOOTSTRAP" || echo "refit did not produce a law (see above)"
if [[ $PIN_BUDGET != 0 ]]; then
  # The runs advice chooses use the grid's recipe (bf16, RUN_S seconds each) and the gpu-sweep checkpoints.
  "${CLI[@]}" pin --law text-to-python --alpha-halfwidth "$PIN_ALPHA" --budget "$PIN_BUDGET" \
    --from-template 'models:/pretrained-text@gpu-sweep-{size}' --study gpu-pin --bootstrap "$REFIT_BOOTSTRAP" \
    --batch-size 64 --test-tokens 262144 --optim.lr 0.0006 --optim.warmup-steps 50 --train.max-steps 4000 \
    --train.max-time-s "$RUN_S" --train.eval-every-steps 25 --train.patience 4 --train.precision bf16-mixed \
    --progress-bar false || echo "pin stopped before the target (rc $?; see above)"
fi
echo "total $(( $(date +%s) - start )) s"
