"""Build spire-mini, the training and evaluation data of the spire-tiny model (see DATA.md).

    python scripts/build_spire_mini.py -o data/spire-mini

Writes:

* ``photos/``: every packaged photo with its hand-written caption (``scripts/build_photo_set.py``).
* ``train/photos/``: the training photos at several scales and crops: short side 256, 256² crops of the photo at
  short side 384, and where it is large enough, a 3 × 3 grid of 256² crops at short side 512.
* ``train/tiles/``: 128² tiles of the training photos at native scale (the photo at short side 128, a 2 × 2 grid
  at 256, 3 × 3 at 384 and 4 × 4 at 512 where the photo is that large), for 128² training without resampling.
* ``train/tiles-wallpapers/``: the same tiles of the photographs among the desktop wallpaper packages (SOURCES.json
  group "wallpapers"), kept apart because spire-tiny's stages 1 and 2 train without them and stage 3 with them.
* ``train/scenes/``: procedural scenes at 128² drawn on texture crops of *training* photos.

Every image has its caption in a NAME.txt sidecar.
* ``eval/photos/``: the held-out photos, centre-cropped to 256², with NAME.txt captions.
* ``eval/scenes/``: held-out scenes (another seed) at 128², with NAME.txt captions.

The evaluation photos and the evaluation scene seed are never used for training. Every file is a pure function of
the installed packages and ``--seed``; rerunning gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

EVAL_PHOTOS = (
    "astronaut", "chelsea", "coffee", "china", "grace_hopper", "bikes_036", "jxl_tmshre_riaphotographs_srgb8",
    "rocket",
)  # fmt: skip
TEXTURES = {"grass": "on grass", "gravel": "on gravel", "brick": "in front of a brick wall"}


def _resize_short(image: Image.Image, short: int) -> Image.Image:
    scale = short / min(image.size)
    return image.resize((max(short, round(image.width * scale)), max(short, round(image.height * scale))),
                        Image.Resampling.LANCZOS)  # fmt: skip


def _centre_crop(image: Image.Image, side: int) -> Image.Image:
    image = _resize_short(image, side)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def _save(image: torch.Tensor | Image.Image, path: Path) -> None:
    if isinstance(image, torch.Tensor):
        array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        image = Image.fromarray(array)
    image.save(path, optimize=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--scenes", type=int, default=1500, help="training scenes (default 1500)")
    parser.add_argument("--eval-scenes", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from spire_ir.data.scenes import render_scene

    root = Path(args.output)
    photos = root / "photos"
    listed = photos / "SOURCES.json"
    if not listed.is_file() or any("group" not in entry for entry in json.loads(listed.read_text())):
        # missing, or built before the wallpaper photographs were added: build the photo set again
        subprocess.run([sys.executable, str(Path(__file__).with_name("build_photo_set.py")), "-o", str(photos)],
                       check=True)  # fmt: skip
    sources = json.loads((photos / "SOURCES.json").read_text())
    missing = [name for name in EVAL_PHOTOS if not (photos / f"{name}.png").is_file()]
    if missing:
        raise SystemExit(
            f"evaluation photos missing: {missing}; install the packages build_photo_set.py lists"
        )
    train, scenes, core_tiles = root / "train" / "photos", root / "train" / "scenes", root / "train" / "tiles"
    wallpaper_tiles = root / "train" / "tiles-wallpapers"
    eval_photos, eval_scenes = root / "eval" / "photos", root / "eval" / "scenes"
    for folder in (train, scenes, core_tiles, wallpaper_tiles, eval_photos, eval_scenes):
        folder.mkdir(parents=True, exist_ok=True)
    count = 0

    def add(image: Image.Image, name: str, caption: str) -> None:
        nonlocal count
        image.save(train / f"{name}.png")
        (train / f"{name}.txt").write_text(caption)
        count += 1

    for entry in sources:
        name, caption = entry["name"], entry["caption"]
        with Image.open(photos / f"{name}.png") as opened:
            image = opened.convert("RGB")
        if name in EVAL_PHOTOS:
            _centre_crop(image, 256).save(eval_photos / f"{name}.png")
            (eval_photos / f"{name}.txt").write_text(caption)
            continue
        tiles = wallpaper_tiles if entry.get("group") == "wallpapers" else core_tiles
        if tiles is core_tiles:
            add(_resize_short(image, 256), f"{name}_s256", caption)
        for short, grid in ((384, (0.0, 1.0)), (512, (0.0, 0.5, 1.0))):
            if min(image.size) < short or tiles is wallpaper_tiles:
                continue
            scaled = _resize_short(image, short)
            for fy in grid:
                for fx in grid:
                    left, top = round(fx * (scaled.width - 256)), round(fy * (scaled.height - 256))
                    crop = scaled.crop((left, top, left + 256, top + 256))
                    add(crop, f"{name}_s{short}_{round(fx * 2)}{round(fy * 2)}", caption)
        for short in (128, 256, 384, 512):
            if min(image.size) < short:
                continue
            scaled = _resize_short(image, short)
            steps = short // 128
            for row in range(steps):
                for column in range(steps):
                    left = round(column / max(1, steps - 1) * (scaled.width - 128))
                    top = round(row / max(1, steps - 1) * (scaled.height - 128))
                    scaled.crop((left, top, left + 128, top + 128)).save(
                        tiles / f"{name}_s{short}_{row}{column}.png"
                    )
                    (tiles / f"{name}_s{short}_{row}{column}.txt").write_text(caption)
    backgrounds = {}
    for name, phrase in TEXTURES.items():
        with Image.open(photos / f"{name}.png") as opened:
            backgrounds[phrase] = _tensor(_resize_short(opened, 256))
    for index in range(args.scenes):
        image, caption = render_scene(args.seed, index, 128, backgrounds)
        _save(image[0], scenes / f"scene_{index:05d}.png")
        (scenes / f"scene_{index:05d}.txt").write_text(caption)
    for index in range(args.eval_scenes):
        image, caption = render_scene(args.seed + 1000, index, 128, backgrounds)
        _save(image[0], eval_scenes / f"scene_{index:03d}.png")
        (eval_scenes / f"scene_{index:03d}.txt").write_text(caption)
    print(f"{count} training photo crops, {args.scenes} training scenes, {len(EVAL_PHOTOS)} evaluation photos, "
          f"{args.eval_scenes} evaluation scenes -> {root}")  # fmt: skip


if __name__ == "__main__":
    main()
