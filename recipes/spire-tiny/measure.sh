#!/usr/bin/env bash
# Every number of MODEL_CARD.md, one command each, on the 8 evaluation photos at 256² (2 CPU cores).
#   bash recipes/spire-tiny/measure.sh [--gates] [MODEL [OUT]]
# MODEL: spire-tiny (default) or a pipeline folder. OUT: where the benches, runs, reports and JSON go,
# results/spire-tiny by default; the grids go to docs/images/spire-tiny for that OUT and to OUT/figures for any other.
# --gates runs only what the card's must gates need, then checks them (gates.py): score a retrained model with it
# before it replaces the shipped weights, e.g. `bash recipes/spire-tiny/measure.sh --gates RUN/model results/RUN`.
set -euo pipefail
cd "$(dirname "$0")/../.."
GATES=false; if [ "${1:-}" = --gates ]; then GATES=true; shift; fi
MODEL=${1:-spire-tiny}
OUT=${2:-results/spire-tiny}
FIG=docs/images/spire-tiny; [ "$OUT" = results/spire-tiny ] || FIG=$OUT/figures
EVAL=data/spire-mini/eval/photos
mkdir -p $OUT $FIG

# the card tasks: one bench per task; identity, classical, ffdnet on noise, spire-tiny at its defaults (K = 1,
# data consistency on, the model folder's self-ensemble), and (not for the gates) with one view only and without
# data consistency
declare -A TASKS=(
  [noise005]="Denoise with sigma 0.05" [noise010]="Denoise with sigma 0.10"
  [blur15]="Deblur with sigma 1.5" [blur25]="Deblur with sigma 2.5"
  [jpeg30]="Dejpeg with quality 30" [up4]="Upsample to 4.0"
)
for task in noise005 noise010 blur15 blur25 jpeg30 up4; do
  spire bench build --images $EVAL --n 8 --size 256 --seed 0 --prompt "${TASKS[$task]}" -o $OUT/bench/$task
  runs=""
  for method in identity classical; do
    spire bench run $OUT/bench/$task --method $method -o $OUT/runs/$task-$method; runs="$runs $OUT/runs/$task-$method"
  done
  case $task in noise*)
    spire bench run $OUT/bench/$task --method ffdnet -o $OUT/runs/$task-ffdnet; runs="$runs $OUT/runs/$task-ffdnet";;
  esac
  spire bench run $OUT/bench/$task --method spire --model "$MODEL" -o $OUT/runs/$task-spire-k1
  runs="$runs $OUT/runs/$task-spire-k1"
  if ! $GATES; then
    spire bench run $OUT/bench/$task --method spire --model "$MODEL" --self-ensemble 1 -o $OUT/runs/$task-spire-v1
    runs="$runs $OUT/runs/$task-spire-v1"
    case $task in blur*|jpeg*|up*)  # the same model without data consistency (noise alone has none to apply)
      spire bench run $OUT/bench/$task --method spire --model "$MODEL" --no-consistency -o $OUT/runs/$task-spire-raw
      runs="$runs $OUT/runs/$task-spire-raw";;
    esac
  fi
  spire bench report $runs -o $OUT/reports/$task
done

# blind restoration: Real-ESRGAN degradation, "Remove all degradation"
spire bench build --images $EVAL --n 8 --size 256 --seed 0 --setting realesrgan -o $OUT/bench/blind
for method in identity bicubic realesrgan spire; do
  spire bench run $OUT/bench/blind --method $method --model "$MODEL" -o $OUT/runs/blind-$method
done
spire bench report $OUT/runs/blind-{identity,bicubic,realesrgan,spire} -o $OUT/reports/blind

# strength control (Fig. 7), and the semantic targets where the input has lost the shape, under CFG 1.5 and 4
# (does CFG make the caption steer?)
spire bench strength --images $EVAL --model "$MODEL" --captions -o $OUT/strength.json
for g in 1.5 4; do
  grid=(); [ $g = 4 ] && grid=(--grid $FIG/semantic-cfg4.png)
  python recipes/spire-tiny/eval.py semantic --model "$MODEL" --guidance $g --degradation "Upsample to 16.0" \
    "${grid[@]}" -o $OUT/semantic-cfg$g.json
done
if $GATES; then python recipes/spire-tiny/gates.py $OUT; exit; fi
python recipes/spire-tiny/eval.py semantic --model "$MODEL" --grid $FIG/semantic.png -o $OUT/semantic.json

# factors past the photos' ×7 (×10–16 was trained on the scenes only): the default, and without data consistency
for factor in 8.0 12.0; do
  spire bench build --images $EVAL --n 8 --size 256 --seed 0 --prompt "Upsample to $factor" -o $OUT/bench/up$factor
  for method in identity classical; do
    spire bench run $OUT/bench/up$factor --method $method -o $OUT/runs/up$factor-$method
  done
  spire bench run $OUT/bench/up$factor --method spire --model "$MODEL" -o $OUT/runs/up$factor-spire-k1
  spire bench run $OUT/bench/up$factor --method spire --model "$MODEL" --no-consistency -o $OUT/runs/up$factor-spire-raw
done

# the semantic prompt on photos (does c_s change PSNR? in the paper's Table 5 it costs 0.25 dB): the default with c_s = ""
# (--prompts restoration), with another photo's caption (--prompts unmatched), and with its caption under CFG 1.5
# and 4; then 8 views on noise
for task in noise005 noise010 blur15 blur25 jpeg30 up4; do
  spire bench run $OUT/bench/$task --method spire --model "$MODEL" --prompts restoration -o $OUT/runs/$task-spire-nocap
  spire bench run $OUT/bench/$task --method spire --model "$MODEL" --prompts unmatched -o $OUT/runs/$task-spire-wrongcap
  spire bench run $OUT/bench/$task --method spire --model "$MODEL" --guidance 1.5 -o $OUT/runs/$task-spire-cfg15
  spire bench run $OUT/bench/$task --method spire --model "$MODEL" --guidance 4 -o $OUT/runs/$task-spire-cfg4
done
for task in noise005 noise010; do
  spire bench run $OUT/bench/$task --method spire --model "$MODEL" --self-ensemble 8 -o $OUT/runs/$task-spire-v8
done

# K and the step kind (empty semantic prompt, one view: the ensemble multiplies every cell alike)
CARD_TASKS=(--task "Denoise with sigma 0.05" --task "Denoise with sigma 0.10" --task "Deblur with sigma 1.5"
            --task "Deblur with sigma 2.5" --task "Dejpeg with quality 30" --task "Upsample to 4.0")
[ -f $OUT/sweep-k.json ] || spire bench sweep --images $EVAL --model "$MODEL" "${CARD_TASKS[@]}" --sweep-steps 1,2,4,8 \
  --self-ensemble 1 -o $OUT/sweep-k.json

# speed and memory at default settings (2 threads)
python benchmarks/spire_tiny.py --threads 2 | tee $OUT/speed.txt
python benchmarks/spire_tiny.py --threads 2 --sizes 512 --guidance 1.5 | tee $OUT/speed-cfg.txt   # CFG on
python benchmarks/spire_tiny.py --threads 2 --tile 0 | tee $OUT/speed-whole.txt   # untiled
python benchmarks/spire_tiny.py --threads 2 --tile 384 | tee $OUT/speed-tile384.txt   # smaller tiles
python benchmarks/spire_tiny.py --threads 2 --sizes 512 --guidance 1.5 --tile 384 | tee $OUT/speed-cfg-tile384.txt

# whole against tiled sampling on the evaluation photos at full size (default_tile_size)
python recipes/spire-tiny/eval.py tiles --model "$MODEL" -o $OUT/tiles.json

# the strength walks of the card (Fig. 7)
spire degrade $EVAL/chelsea.png -o $OUT/chelsea-noise010.png --prompt "Denoise with sigma 0.10" --seed 0
spire walk $OUT/chelsea-noise010.png --model "$MODEL" -p "a tabby cat looking to the side" -r "Denoise with sigma {}" \
  --values 0.02,0.04,0.08,0.12,0.16,0.24 --overwrite -o $FIG/walk-denoise.png
spire degrade $EVAL/coffee.png -o $OUT/coffee-blur20.png --prompt "Deblur with sigma 2.0" --seed 0
spire walk $OUT/coffee-blur20.png --model "$MODEL" -p "a cup of coffee on a saucer with a spoon" \
  -r "Deblur with sigma {}" --values 0.5,1.0,1.5,2.0,3.0,4.0 --overwrite -o $FIG/walk-deblur.png
python recipes/spire-tiny/gates.py $OUT
