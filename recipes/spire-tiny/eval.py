"""The semantic and tiling measurements of spire-tiny's model card (the rest are `spire bench` runs, the strength
walk `spire bench strength`).

    python recipes/spire-tiny/eval.py semantic --model spire-tiny --grid semantic.png -o results/semantic.json
    python recipes/spire-tiny/eval.py tiles --model spire-tiny -o results/tiles.json

* ``semantic``: the paper's Fig. 6 at small scale. A small CNN is trained on single-shape scenes (seed 5000,
  never used elsewhere), seen clean, blurred and noisy, to name the shape (circle, square, triangle, star).
  Held-out single-shape scenes (seed 3000) are degraded with each ``--degradation``, then restored with the true
  caption, with "" and with the caption naming a wrong shape; we report the classifier's accuracy on the degraded
  input and on each restoration, and how often it names the wrong caption's shape. The caption can only show
  where the input has lost the shape, so the accuracy on the input says how ambiguous each degradation leaves it.

* ``tiles``: the card tasks on the 8 evaluation photos at their full size (272–600 px a side; the benches use
  their 256² centre crops), each restored whole and in tiles of at most 512, 384 and 256 px (64 px overlap): mean
  PSNR and seconds per photo for each tile size (MODEL_CARD.md says how it set the folder's ``default_tile_size``).

It samples with the model folder's defaults unless ``--steps`` / ``--guidance`` / ``--strength`` say otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F

EVAL = Path("data/spire-mini/eval")
FULL_SIZE = Path("data/spire-mini/photos")  # the evaluation photos' full-size sources (build_spire_mini.py)
CARD_TASKS = {
    "noise005": "Denoise with sigma 0.05", "noise010": "Denoise with sigma 0.10", "blur15": "Deblur with sigma 1.5",
    "blur25": "Deblur with sigma 2.5", "jpeg30": "Dejpeg with quality 30", "up4": "Upsample to 4.0",
}  # fmt: skip
# the card's first test, and a factor at which the input no longer shows the shape (3–4 px across; beyond the
# ×7 the model was trained to, inside the ×16 its prompts accept)
SEMANTIC_DEGRADATIONS = ("Deblur with sigma 3.0, Upsample to 4.0, Denoise with sigma 0.15", "Upsample to 16.0")


def _folder(path: Path) -> tuple[torch.Tensor, list[str], list[str]]:
    from spire_ir.utils.images import load_image

    files = sorted(path.glob("*.png"))
    images = torch.cat([load_image(f).tensor for f in files])
    captions = [
        f.with_suffix(".txt").read_text().strip() if f.with_suffix(".txt").is_file() else "" for f in files
    ]
    return images, captions, [f.stem for f in files]


def _pipeline(model: str):
    from spire_ir.pipeline import SpirePipeline

    pipe = SpirePipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


SHAPES = ("circle", "square", "triangle", "star")


def _single_shape_scenes(seed: int, count: int, backgrounds) -> tuple[torch.Tensor, list[str], list[int]]:
    from spire_ir.data.scenes import render_scene

    images, captions, labels, index = [], [], [], 0
    while len(images) < count:
        image, caption = render_scene(seed, index, 128, backgrounds)
        index += 1
        found = [s for s in SHAPES if re.search(rf"\b{s}\b", caption)]
        if (
            len(found) == 1
            and caption.count(found[0]) == 1
            and " of " not in caption
            and " above " not in caption
        ):
            images.append(image)
            captions.append(caption)
            labels.append(SHAPES.index(found[0]))
    return torch.cat(images), captions, labels


class ShapeClassifier(torch.nn.Module):
    """A small CNN naming the shape of a single-shape scene: (B, 3, H, W) in [0, 1] -> (B, 4) logits.

    It looks at the scene at 64² (the shapes are 22–35 px across there), so that it sees a shape's outline rather
    than its stripes or dots.
    """

    def __init__(self) -> None:
        super().__init__()
        layers, width = [], 3
        for out in (32, 64, 128, 128):
            layers += [torch.nn.Conv2d(width, out, 3, padding=1), torch.nn.BatchNorm2d(out), torch.nn.ReLU(),
                       torch.nn.Conv2d(out, out, 3, padding=1), torch.nn.BatchNorm2d(out), torch.nn.ReLU(),
                       torch.nn.MaxPool2d(2)]  # fmt: skip
            width = out
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(2 * width, len(SHAPES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(F.interpolate(x, size=(64, 64), mode="area", antialias=False))
        return self.head(torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], 1))


def _backgrounds() -> dict[str, torch.Tensor]:
    from spire_ir.utils.images import load_image

    photos = EVAL.parent / "photos"
    phrases = {"grass": "on grass", "gravel": "on gravel", "brick": "in front of a brick wall"}
    return {phrase: load_image(photos / f"{name}.png").tensor[0] for name, phrase in phrases.items()}


def train_classifier(
    backgrounds, steps: int = 400, seed: int = 5000
) -> tuple[ShapeClassifier, dict[str, float]]:
    """The shape classifier, trained on clean scenes of ``seed`` seen blurred (σ 0–4 px) and noisy (σ 0–0.05) as
    often as clean, in all eight orientations: restorations are smooth, and a classifier that has seen only sharp
    scenes names the shape of a smooth one no better than chance. Returns it with its accuracy on held-out scenes
    (``seed + 1``), clean and blurred with σ 1.5 and 3.0.
    """
    from spire_ir.ops.image import gaussian_blur

    images, _, labels = _single_shape_scenes(seed, 4000, backgrounds)
    held, _, held_labels = _single_shape_scenes(seed + 1, 400, backgrounds)
    labels_t = torch.tensor(labels)
    with torch.random.fork_rng():  # seeded initialisation without touching the caller's global RNG
        torch.manual_seed(0)
        model = ShapeClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        pick = torch.randint(len(images), (32,), generator=generator)
        batch = images[pick]
        if bool(torch.rand((), generator=generator) < 0.5):
            batch = batch.flip(-1)
        batch = torch.rot90(batch, int(torch.randint(4, (), generator=generator)), dims=(-2, -1))
        sigma = 4.0 * float(torch.rand((), generator=generator))
        if bool(torch.rand((), generator=generator) < 0.5) and sigma > 0.2:
            batch = gaussian_blur(batch, sigma)
        noise = torch.randn(batch.shape, generator=generator)  # then its scale, U(0, 0.05)
        batch = batch + noise * 0.05 * float(torch.rand((), generator=generator))
        loss = F.cross_entropy(model(batch), labels_t[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    truth = torch.tensor(held_labels)
    with torch.no_grad():
        views = {"clean": held, "blur 1.5": gaussian_blur(held, 1.5), "blur 3.0": gaussian_blur(held, 3.0)}
        accuracy = {name: float((model(view).argmax(1) == truth).float().mean()) for name, view in views.items()}
    return model, accuracy


def cmd_semantic(args: argparse.Namespace) -> dict:
    from spire_ir.degradations import degrade
    from spire_ir.utils.seeding import make_generator

    backgrounds = _backgrounds()
    classifier, classifier_accuracy = train_classifier(backgrounds)
    x, captions, labels = _single_shape_scenes(3000, args.count, backgrounds)
    wrong_labels = [(label + 1 + i % 3) % len(SHAPES) for i, label in enumerate(labels)]
    wrong = [
        re.sub(rf"\b{SHAPES[a]}\b", SHAPES[b], c)
        for c, a, b in zip(captions, labels, wrong_labels, strict=True)
    ]
    pipe = _pipeline(args.model)
    truth, wrong_t = torch.tensor(labels), torch.tensor(wrong_labels)

    def classify(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return classifier(images).argmax(1)

    out = {"model": args.model, "count": len(x), "steps": args.steps, "guidance": args.guidance,
           "strength": args.strength, "classifier_held_out_accuracy": classifier_accuracy}  # fmt: skip
    rows = []
    for degradation in args.degradation or SEMANTIC_DEGRADATIONS:
        y = torch.cat([degrade(x[i : i + 1], degradation, make_generator(i))[0] for i in range(len(x))])
        y = (y.clamp(0, 1) * 255).round() / 255  # as saved to a file
        scores = {"degraded input": {"accuracy": float((classify(y) == truth).float().mean())}}
        outputs = {}
        for name, prompts_ in (("true caption", captions), ("empty caption", [""] * len(x)), ("wrong caption", wrong)):
            restored = pipe(y, prompt=prompts_, restoration_prompt=degradation, num_inference_steps=args.steps,
                            guidance_scale=args.guidance, strength=args.strength,
                            generator=torch.Generator().manual_seed(0), output_type="pt").images.float()  # fmt: skip
            outputs[name] = restored
            predicted = classify(restored)
            scores[name] = {"accuracy": float((predicted == truth).float().mean()),
                            "follows_wrong_shape": float((predicted == wrong_t).float().mean())}  # fmt: skip
        out[degradation] = scores
        print(degradation, json.dumps(scores), flush=True)
        rows += [([y[i], outputs["true caption"][i], outputs["empty caption"][i], outputs["wrong caption"][i], x[i]],
                  f"{degradation} | true: {captions[i]} | wrong: {wrong[i]}") for i in range(3)]  # fmt: skip
    if args.grid:
        from spire_ir.utils.images import save_image_grid

        save_image_grid(rows, ["degraded", "true caption", '""', "wrong caption", "clean"], args.grid)
    return out


def cmd_tiles(args: argparse.Namespace) -> dict:
    import time

    from spire_ir.degradations import degrade
    from spire_ir.evaluation.metrics import psnr
    from spire_ir.utils.images import load_image
    from spire_ir.utils.seeding import make_generator

    _, captions, names = _folder(EVAL / "photos")
    photos = []
    for name in names:  # cut to a multiple of 16 px, so that ×4 down-up keeps the size
        x = load_image(FULL_SIZE / f"{name}.png").tensor
        photos.append(x[..., : x.shape[-2] // 16 * 16, : x.shape[-1] // 16 * 16])
    pipe = _pipeline(args.model)
    tiles = [int(t) for t in args.tiles.split(",")]
    out: dict = {"model": args.model, "tile_overlap": 64, "tiles": tiles,
                 "photos": {n: list(x.shape[-2:]) for n, x in zip(names, photos, strict=True)}}  # fmt: skip
    for task, prompt in CARD_TASKS.items():
        scores = {t: {"psnr": [], "seconds": []} for t in tiles}
        for i, (x, caption) in enumerate(zip(photos, captions, strict=True)):
            y = (degrade(x, prompt, make_generator(i))[0].clamp(0, 1) * 255).round() / 255  # as saved to a file
            for tile in tiles:
                start = time.perf_counter()
                restored = pipe(y, prompt=caption, restoration_prompt=prompt, tile_size=tile, tile_overlap=64,
                                generator=make_generator(0), output_type="pt").images.float()  # fmt: skip
                scores[tile]["seconds"].append(time.perf_counter() - start)
                scores[tile]["psnr"].append(float(psnr(restored, x)))
        out[task] = {str(t): {k: round(sum(v) / len(v), 3) for k, v in s.items()} for t, s in scores.items()}
        print(task, "  ".join(f"{t or 'whole'}: {s['psnr']:.3f} dB {s['seconds']:.2f} s" for t, s in
                              zip(tiles, out[task].values(), strict=True)), flush=True)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("semantic")
    p.add_argument("--model", default="spire-tiny")
    p.add_argument("--strength", type=float, default=None, help="the sampler's (default: the model folder's)")
    p.add_argument("--count", type=int, default=48)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model folder's)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model folder's)")
    p.add_argument("--degradation", action="append", help="a restoration prompt to degrade with, repeatable "
                   f"(default: {' and '.join(repr(d) for d in SEMANTIC_DEGRADATIONS)})")
    p.add_argument("--grid", default=None, help="also write a PNG grid of three items per degradation")
    p = sub.add_parser("tiles")
    p.add_argument("--model", default="spire-tiny")
    p.add_argument("--tiles", default="0,512,384,256", help="tile sizes in pixels, 0: whole")
    for p in sub.choices.values():
        p.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    commands = {"semantic": cmd_semantic, "tiles": cmd_tiles}
    result = commands[args.command](args)
    from spire_ir.utils.images import save_json

    save_json(result, args.output)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}, indent=1)[:3000])


if __name__ == "__main__":
    main()
