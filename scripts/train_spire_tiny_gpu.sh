#!/usr/bin/env bash
# spire-tiny stages 2 (prior) and 3 (adaptor) on one GPU, each within a wall-clock budget. Same configs as
# scripts/train_spire_tiny.sh, with larger batches; stage 1 (the VAE) trains on CPU. A short probe run measures
# each stage's step rate on this machine; the training run turns its budget into max_steps with that rate, so the
# cosine schedule ends on time. The probe's rate leaves start-up out: a 40-step probe that counted it predicted
# 1,050 samples/s on an H100 where training reached 1,590.
#
#   MODE=probe bash scripts/train_spire_tiny_gpu.sh                          # 60 steps of each: $RUNS/rates.json
#   PRIOR_SECONDS=270 ADAPTOR_SECONDS=200 bash scripts/train_spire_tiny_gpu.sh
#
# The rates file must come from the same machine and settings (the probe writes it under $PROBE_RUNS).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${MODE:-train}
RUNS=${RUNS:-runs/spire-tiny-gpu}
PROBE_RUNS=${PROBE_RUNS:-$RUNS-probe}
VAE=${VAE:-runs/spire-tiny/vae/vae}
TEXT_ENCODER=${TEXT_ENCODER:-minilm}
DATA=${DATA:-data/spire-mini/train/tiles,data/spire-mini/train/scenes}   # with REPEATS, e.g. "[2, 1]"
PRIOR_BATCH=${PRIOR_BATCH:-256}
PRIOR_LR=${PRIOR_LR:-8e-4}
ADAPTOR_BATCH=${ADAPTOR_BATCH:-64}
ADAPTOR_LR=${ADAPTOR_LR:-5e-4}
PRIOR_SECONDS=${PRIOR_SECONDS:-270}
ADAPTOR_SECONDS=${ADAPTOR_SECONDS:-200}
PROBE_STEPS=${PROBE_STEPS:-60}
OVERHEAD_SECONDS=${OVERHEAD_SECONDS:-35}   # start-up, final validation and export of one stage
WORKERS=${WORKERS:-$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))}
SPIRE=${SPIRE:-python3 -m spire_ir}

common=(--set progress=false --set data.num_workers="$WORKERS" --set data.path="$DATA")
[ -n "${REPEATS:-}" ] && common+=(--set data.repeats="$REPEATS")   # one weight per folder in DATA
prior=(--set model.vae="$VAE" --set model.text_encoder="$TEXT_ENCODER" --set batch_size="$PRIOR_BATCH"
       --set optim.lr="$PRIOR_LR" --set optim.warmup_steps=200)
adaptor=(--set batch_size="$ADAPTOR_BATCH" --set optim.lr="$ADAPTOR_LR" --set optim.warmup_steps=100)

# steady samples/s of a finished run, start-up excluded: metrics.jsonl logs cumulative rates, so the time at a logged
# step is step * batch / rate, and the rate between the first and last logs is their sample count over that time
rate() {
  python3 - "$1/metrics.jsonl" "$2" <<'PY'
import json, sys
logs = [json.loads(line) for line in open(sys.argv[1]) if "samples_per_s" in line]
batch, first, last = float(sys.argv[2]), logs[0], logs[-1]
at = lambda log: log["step"] * batch / log["samples_per_s"]
print(last["samples_per_s"] if last is first else (last["step"] - first["step"]) * batch / (at(last) - at(first)))
PY
}
# max_steps for a budget: (seconds - overhead) * rate / batch
steps_for() {
  python3 -c 'import sys; s,o,r,b=map(float,sys.argv[1:]); print(max(10, int((s-o)*r/b)))' "$1" "$OVERHEAD_SECONDS" "$2" "$3"
}

if [ "$MODE" = probe ]; then
  rm -rf "$PROBE_RUNS"
  $SPIRE train-base configs/spire-tiny/base.yaml --output-dir "$PROBE_RUNS/base" "${common[@]}" "${prior[@]}" \
    --set max_steps="$PROBE_STEPS" --set log_every=20 --set validate_every=0 --set checkpoint_every=0
  $SPIRE train configs/spire-tiny/adaptor.yaml --output-dir "$PROBE_RUNS/adaptor" "${common[@]}" "${adaptor[@]}" \
    --set model.base="$PROBE_RUNS/base/base" --set max_steps="$PROBE_STEPS" --set log_every=20 \
    --set validate_every=0 --set checkpoint_every=0
  printf '{"prior": %s, "adaptor": %s, "prior_batch": %s, "adaptor_batch": %s}\n' \
    "$(rate "$PROBE_RUNS/base" "$PRIOR_BATCH")" "$(rate "$PROBE_RUNS/adaptor" "$ADAPTOR_BATCH")" \
    "$PRIOR_BATCH" "$ADAPTOR_BATCH" \
    | tee "$PROBE_RUNS/rates.json"
  exit 0
fi

rates="$PROBE_RUNS/rates.json"
[ -f "$rates" ] || { echo "no $rates: run MODE=probe first on this machine" >&2; exit 2; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$rates" "$1"; }
started=$(date +%s)
prior_steps=$(steps_for "$PRIOR_SECONDS" "$(field prior)" "$PRIOR_BATCH")
echo "prior: $prior_steps steps of $PRIOR_BATCH"
$SPIRE train-base configs/spire-tiny/base.yaml --output-dir "$RUNS/base" "${common[@]}" "${prior[@]}" \
  --set max_steps="$prior_steps" --set log_every=50 --set validate_every=2000 --set checkpoint_every=2000
# the adaptor gets what is left of both budgets
left=$(( PRIOR_SECONDS + ADAPTOR_SECONDS - ($(date +%s) - started) ))
adaptor_steps=$(steps_for "$left" "$(field adaptor)" "$ADAPTOR_BATCH")
echo "adaptor: $adaptor_steps steps of $ADAPTOR_BATCH ($left s left)"
$SPIRE train configs/spire-tiny/adaptor.yaml --output-dir "$RUNS/adaptor" "${common[@]}" "${adaptor[@]}" \
  --set model.base="$RUNS/base/base" --set max_steps="$adaptor_steps" --set log_every=50 \
  --set validate_every=2000 --set checkpoint_every=2000 --set keep_checkpoints=1
echo "done in $(( $(date +%s) - started )) s"
