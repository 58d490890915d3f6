"""PSNR / SSIM of a bridge model on the card tasks for several K, deterministic and stochastic, and with/without CFG.

    python recipes/spire-tiny/sweep.py --model spire-tiny --steps 1,2,4,8 -o results/spire-tiny/sweep.json

The 8 evaluation photos (256²) are degraded with each card prompt (image i with seed i), saved to 8 bits as
`spire bench build` saves them, and restored with that prompt and an empty semantic prompt (``--captions`` uses
each photo's caption, with guidance ``--guidance``). Output: one row per task with the input's PSNR and the PSNR /
SSIM for every (K, step kind). This is the quick probe that picks the model's default K; the card's own numbers are
`spire bench` runs (recipes/spire-tiny/measure.sh).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

CARD_TASKS = (
    "Denoise with sigma 0.05", "Denoise with sigma 0.10", "Deblur with sigma 1.5", "Deblur with sigma 2.5",
    "Dejpeg with quality 30", "Upsample to 4.0",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="spire-tiny")
    parser.add_argument("--eval", default="data/spire-mini/eval/photos")
    parser.add_argument("--steps", default="1,2,4,8")
    parser.add_argument("--kinds", default="deterministic,stochastic")
    parser.add_argument("--captions", action="store_true", help="semantic prompt = each photo's caption")
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--task", action="append", help="a card prompt (repeatable; default: all six)")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()

    from spire_ir.degradations import degrade
    from spire_ir.evaluation.metrics import psnr, ssim
    from spire_ir.pipeline import SpirePipeline
    from spire_ir.schedulers import ResShiftScheduler
    from spire_ir.utils.images import load_image
    from spire_ir.utils.seeding import make_generator

    files = sorted(Path(args.eval).glob("*.png"))
    x = torch.cat([load_image(f).tensor for f in files])
    captions = [f.with_suffix(".txt").read_text().strip() if args.captions else "" for f in files]
    pipe = SpirePipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    base = dict(pipe.scheduler.config)
    out: dict = {"model": args.model, "images": [f.stem for f in files], "captions": args.captions,
                 "guidance": args.guidance, "tasks": {}}  # fmt: skip
    for task in args.task or CARD_TASKS:
        y = torch.cat([degrade(x[i : i + 1], task, make_generator(i))[0] for i in range(len(x))])
        y = (y.clamp(0, 1) * 255).round() / 255
        row = {"input_psnr": float(psnr(y, x).mean()), "input_ssim": float(ssim(y, x).mean())}
        for kind in args.kinds.split(","):
            pipe.scheduler = ResShiftScheduler.from_config(base, stochastic=kind == "stochastic")
            for steps in (int(s) for s in args.steps.split(",")):
                if kind == "stochastic" and steps == 1:
                    continue  # one step is the same x̂₀ for both kinds
                with torch.no_grad():
                    restored = pipe(y, prompt=captions, restoration_prompt=task, num_inference_steps=steps,
                                    guidance_scale=args.guidance, generator=make_generator(0),
                                    output_type="pt").images.float()  # fmt: skip
                row[f"{kind}_K{steps}_psnr"] = float(psnr(restored, x).mean())
                row[f"{kind}_K{steps}_ssim"] = float(ssim(restored, x).mean())
        out["tasks"][task] = row
        print(task, {k: round(v, 3) for k, v in row.items()}, flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
