"""The README's before/after figure: spire-tiny at its defaults on one real evaluation photo, one row per card task.

    python recipes/spire-tiny/figure.py --photo data/spire-mini/eval/photos/chelsea.png -o docs/images/spire-tiny/card.png

Each row: the photo degraded as the prompt says (seed 0, saved to 8 bits), spire-tiny's restoration with that
prompt and the photo's caption, and the clean photo; PSNR of the input and of the output in the row label.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

# the card tasks, as recipes/spire-tiny/measure.sh benches them
CARD_TASKS = [
    "Denoise with sigma 0.05",
    "Denoise with sigma 0.10",
    "Deblur with sigma 1.5",
    "Deblur with sigma 2.5",
    "Dejpeg with quality 30",
    "Upsample to 4.0",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photo", required=True)
    parser.add_argument("--model", default="spire-tiny")
    parser.add_argument("--crop", type=int, default=160, help="centre crop shown, pixels")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()

    from spire_ir.degradations import degrade
    from spire_ir.evaluation.metrics import psnr
    from spire_ir.pipeline import SpirePipeline
    from spire_ir.utils.images import load_image, save_image_grid
    from spire_ir.utils.seeding import make_generator

    photo = Path(args.photo)
    x = load_image(photo).tensor
    caption = photo.with_suffix(".txt").read_text().strip() if photo.with_suffix(".txt").is_file() else ""
    pipe = SpirePipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    height, width = x.shape[-2:]
    top, left = (height - args.crop) // 2, (width - args.crop) // 2
    crop = (..., slice(top, top + args.crop), slice(left, left + args.crop))
    rows = []
    for task in CARD_TASKS:
        y = (degrade(x, task, make_generator(0))[0].clamp(0, 1) * 255).round() / 255
        with torch.no_grad():
            out = pipe(
                y, prompt=caption, restoration_prompt=task, generator=make_generator(0), output_type="pt"
            )
        restored = out.images.float()
        label = f"{task}: {float(psnr(y, x)):.2f} -> {float(psnr(restored, x)):.2f} dB"
        rows.append(([y[0][crop], restored[0][crop], x[0][crop]], label))
    save_image_grid(rows, ["input", "spire-tiny", "clean"], args.output)
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
