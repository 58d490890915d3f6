#!/usr/bin/env bash
# The Table 5 ablations of spire-tiny at one budget: the recipe's adaptor stage run for STEPS steps (default 600),
# changing one thing each, all on the same frozen prior, data and seed; then PSNR / SSIM at K = 1 on the card tasks
# (spire bench sweep). Results: results/spire-tiny/ablations/NAME.json.
#   bash recipes/spire-tiny/ablations.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${1:-600}
RUN=runs/spire-tiny-v2/ablations-$STEPS
OUT=results/spire-tiny/ablations
mkdir -p $OUT
CARD_TASKS=(--task "Denoise with sigma 0.05" --task "Denoise with sigma 0.10" --task "Deblur with sigma 1.5"
            --task "Deblur with sigma 2.5" --task "Dejpeg with quality 30" --task "Upsample to 4.0")
declare -A CHANGES=(
  [ours]=""                                                   # the recipe: modulation, numeric channel, joint prior
  [frozen]="--set model.prior=frozen"                         # the paper's frozen prior
  [no-prior]="--set model.prior=none"                         # the same network, no pretrained prior
  [additive]="--set model.fusion=additive"                    # the paper's ControlNet-SR fusion
  [text-only]="--set model.numeric_channel=false"             # c_r through cross-attention only
  [without-params]="--set data.restoration_prompt=without_params --set model.numeric_channel=false"
)
for name in ours frozen no-prior additive text-only without-params; do
  if [ ! -f $RUN/$name/summary.json ]; then
    resume=(); if compgen -G "$RUN/$name/checkpoint-*" > /dev/null; then resume=(--resume latest); fi
    # shellcheck disable=SC2086
    spire train recipes/spire-tiny/adaptor.yaml --set max_steps=$STEPS --set optim.warmup_steps=50 \
      --set output_dir=$RUN/$name --set progress=false ${CHANGES[$name]} "${resume[@]}"
  fi
  [ -f $OUT/$name-$STEPS.json ] || spire bench sweep --images data/spire-mini/eval/photos \
    --model $RUN/$name/pipeline "${CARD_TASKS[@]}" --sweep-steps 1 --kinds deterministic -o $OUT/$name-$STEPS.json
done
