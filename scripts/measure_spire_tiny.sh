#!/usr/bin/env bash
# Every measured number of the spire-tiny model card, one command each (about 35 minutes on 2 CPU cores).
#   bash scripts/measure_spire_tiny.sh [MODEL]      # MODEL: spire-tiny (default) or a pipeline folder
# Results go to results/spire-tiny/ (benches, runs, reports, JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-spire-tiny}
OUT=results/spire-tiny
EVAL=data/spire-mini/eval/photos
mkdir -p $OUT

# task-specific prompts: one bench per task on the 8 evaluation photos at 256²
declare -A TASKS=(
  [noise005]="Denoise with sigma 0.05" [noise010]="Denoise with sigma 0.10"
  [blur15]="Deblur with sigma 1.5" [blur25]="Deblur with sigma 2.5"
  [jpeg30]="Dejpeg with quality 30" [up4]="Upsample to 4.0"
)
for task in noise005 noise010 blur15 blur25 jpeg30 up4; do
  spire bench build --images $EVAL --n 8 --size 256 --seed 0 --prompt "${TASKS[$task]}" -o $OUT/bench/$task
  for method in identity classical spire; do
    spire bench run $OUT/bench/$task --method $method --model "$MODEL" -o $OUT/runs/$task-$method
  done
  runs="$OUT/runs/$task-identity $OUT/runs/$task-classical $OUT/runs/$task-spire"
  if [ $task = up4 ]; then
    spire bench run $OUT/bench/$task --method bicubic -o $OUT/runs/$task-bicubic
    runs="$runs $OUT/runs/$task-bicubic"
  fi
  spire bench report $runs -o $OUT/reports/$task
done

# blind restoration: Real-ESRGAN degradation, "Remove all degradation"
spire bench build --images $EVAL --n 8 --size 256 --seed 0 --setting realesrgan -o $OUT/bench/blind
for method in identity bicubic realesrgan spire; do
  spire bench run $OUT/bench/blind --method $method --model "$MODEL" -o $OUT/runs/blind-$method
done
spire bench report $OUT/runs/blind-{identity,bicubic,realesrgan,spire} -o $OUT/reports/blind

# strength control (Fig. 7), semantic prompting (Fig. 6), the VAE gate, the prior's samples
# (at the model's default strength, then from noise as the paper samples)
python scripts/eval_spire_tiny.py strength --model "$MODEL" -o $OUT/strength.json
python scripts/eval_spire_tiny.py strength --model "$MODEL" --strength 1.0 -o $OUT/strength-from-noise.json
python scripts/eval_spire_tiny.py semantic --model "$MODEL" --grid docs/images/spire-tiny/semantic.png -o $OUT/semantic.json
python scripts/eval_spire_tiny.py semantic --model "$MODEL" --strength 1.0 \
  --grid docs/images/spire-tiny/semantic-from-noise.png -o $OUT/semantic-from-noise.json
python scripts/eval_spire_tiny.py vae --vae runs/spire-tiny/vae/vae --config configs/spire-tiny/vae.yaml -o $OUT/vae.json
python scripts/eval_spire_tiny.py base-grid --base runs/spire-tiny/base/base -o docs/images/spire-tiny/base.png
spire degrade $EVAL/chelsea.png -o $OUT/chelsea-noise010.png --prompt "Denoise with sigma 0.10" --seed 0
spire walk $OUT/chelsea-noise010.png --model "$MODEL" -p "a tabby cat looking to the side" -r "Denoise with sigma {}" \
  --values 0.02,0.04,0.08,0.12,0.16,0.24 -o docs/images/spire-tiny/walk-denoise.png
spire degrade $EVAL/coffee.png -o $OUT/coffee-blur20.png --prompt "Deblur with sigma 2.0" --seed 0
spire walk $OUT/coffee-blur20.png --model "$MODEL" -p "a cup of coffee on a saucer with a spoon" \
  -r "Deblur with sigma {}" --values 0.5,1.0,1.5,2.0,3.0,4.0 -o docs/images/spire-tiny/walk-deblur.png
python benchmarks/spire_tiny.py | tee $OUT/speed.txt
