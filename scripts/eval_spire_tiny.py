"""Measurements of the spire-tiny model card that are not ``spire bench`` runs.

    python scripts/eval_spire_tiny.py vae --vae runs/spire-tiny/vae/vae --config configs/spire-tiny/vae.yaml \
        -o results/vae.json
    python scripts/eval_spire_tiny.py base-grid --base runs/spire-tiny/base/base -o docs/images/spire-tiny/base.png
    python scripts/eval_spire_tiny.py strength --model spire-tiny -o results/strength.json
    python scripts/eval_spire_tiny.py semantic --model spire-tiny -o results/semantic.json
    python scripts/eval_spire_tiny.py x0 --model runs/spire-tiny/adaptor/pipeline -o results/x0.json
    python scripts/eval_spire_tiny.py sweep --model runs/spire-tiny/adaptor/pipeline -o results/sweep.json

* ``vae``: reconstruction PSNR on the evaluation photos and scenes (the VAE caps every restoration), and the
  linear (PCA) start's PSNR for comparison.
* ``base-grid``: text-to-image samples of the frozen prior from evaluation captions (DDIM, CFG).
* ``strength``: the paper's Fig. 7. Evaluation photos with noise σ = 0.10 are restored with "Denoise with sigma s"
  for s in {0.02, 0.04, 0.08, 0.12, 0.16, 0.24}; the residual high-frequency energy of the output (mean square of
  output − Gaussian blur σ = 1.5 of it) should fall as s grows: Spearman ρ(s, energy) per image, averaged. The same
  for blur σ = 2.0 and "Deblur with sigma s", s in {0.5, 1.0, 1.5, 2.0, 3.0, 4.0}, where sharpening more should
  raise the energy (ρ > 0).
* ``x0``: how much of the restoration one model call carries, with and without the adaptor. The evaluation photos
  (128²) get noise σ = 0.10; the clean latent is noised to t and the model's x̂₀ is decoded and scored against the
  clean photo (PSNR), for t in {50, 200, 400, 600, 800, 999}. Without the adaptor the frozen prior only sees z_t.
* ``sweep``: restoration PSNR on the evaluation photos (256²) for each card task, at several ``strength`` values
  (the noised-input start running that fraction of the 20-step schedule), empty semantic prompt, beside the input's
  PSNR. A quick check for choosing a model's default strength, not a ``spire bench`` run. ``--adaptor-scale 0``
  is the control: the frozen prior alone, started from the noised input (SDEdit) with the same colour fix. The
  ``vae`` column is the other control: the VAE's round trip of the input with that colour fix, no diffusion step,
  which is what a small strength tends to. ``--task clean`` restores the clean photos ("Remove all degradation"):
  what the VAE and the sampler lose when there is nothing to fix.
* ``strength`` and ``semantic`` sample at the model folder's default strength; ``--strength 1.0`` samples from noise
  as the paper does.
* ``checkpoint``: a pipeline folder from a ``spire train`` checkpoint (the ablations compare runs at one step).
* ``semantic``: the paper's Fig. 6 at small scale. A small CNN is trained on clean single-shape scenes (seed 5000,
  never used elsewhere) to name the shape (circle, square, triangle, star). Held-out single-shape scenes (seed
  3000) are heavily degraded, then restored with the true caption, with "" and with the caption naming a wrong
  shape; we report the classifier's accuracy on each, and how often it names the wrong caption's shape.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F

EVAL = Path("data/spire-mini/eval")
NOISE_STEPS = (0.02, 0.04, 0.08, 0.12, 0.16, 0.24)
BLUR_STEPS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
SEMANTIC_DEGRADATION = "Deblur with sigma 3.0, Upsample to 4.0, Denoise with sigma 0.15"


def _folder(path: Path) -> tuple[torch.Tensor, list[str], list[str]]:
    from spire_ir.image_utils import load_image

    files = sorted(path.glob("*.png"))
    images = torch.cat([load_image(f).tensor for f in files])
    captions = [
        f.with_suffix(".txt").read_text().strip() if f.with_suffix(".txt").is_file() else "" for f in files
    ]
    return images, captions, [f.stem for f in files]


def _degrade_all(x: torch.Tensor, prompt: str) -> torch.Tensor:
    """Image i of x degraded as ``prompt`` says with seed i, clamped to [0, 1]."""
    from spire_ir.degradations import degrade
    from spire_ir.seeding import make_generator

    return torch.cat([degrade(x[i : i + 1], prompt, make_generator(i))[0] for i in range(len(x))]).clamp(0, 1)


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def cmd_vae(args: argparse.Namespace) -> dict:
    from spire_ir.metrics import psnr
    from spire_ir.models.autoencoder import load_vae

    vae = load_vae(args.vae).eval()
    out = {"vae": str(args.vae), "latent_factor": 2 ** (len(vae.config.block_out_channels) - 1),
           "latent_channels": vae.config.latent_channels,
           "parameters_m": round(sum(p.numel() for p in vae.parameters()) / 1e6, 3)}  # fmt: skip
    models = {"": vae}
    if args.config:  # the same VAE before its first step: the linear (whitened-PCA) autoencoder
        from spire_ir.config import load_config
        from spire_ir.training.vae import VaeTask, VaeTrainConfig

        models["pca_start_"] = VaeTask(load_config(VaeTrainConfig, args.config, [])).trainable.eval()
    for prefix, model in models.items():
        for name in ("photos", "scenes"):
            x, _, _ = _folder(EVAL / name)
            with torch.no_grad():
                recon = ((model.decode(model.encode(x * 2 - 1).latent_dist.mode()).sample + 1) / 2).clamp(
                    0, 1
                )
            recon = recon.mul(255).round().div(255)  # as saved to 8-bit files
            scores = psnr(recon, x)
            out[f"{prefix}psnr_{name}"] = round(float(scores.mean()), 2)
            out[f"{prefix}psnr_{name}_per_image"] = [round(float(s), 2) for s in scores]
    curve = Path(args.vae).parent / "metrics.jsonl"
    if curve.is_file():
        out["training_curve"] = [
            [row["step"], round(row["val/psnr"], 3)]
            for row in map(json.loads, curve.read_text().splitlines()) if "val/psnr" in row
        ]  # fmt: skip
    return out


def cmd_base_grid(args: argparse.Namespace) -> dict:
    from diffusers import DDIMScheduler

    from spire_ir.base_models import load_base_components
    from spire_ir.image_utils import save_image_grid
    from spire_ir.training.base import sample_base

    parts = load_base_components(Path(args.base))
    scheduler = DDIMScheduler.from_config(parts["scheduler"].config)
    _, scene_captions, _ = _folder(EVAL / "scenes")
    _, photo_captions, _ = _folder(EVAL / "photos")
    captions = scene_captions[: args.count] + photo_captions[: args.count]
    rows = []
    for caption in captions:
        images = sample_base(parts["unet"], parts["vae"], parts["tokenizer"], parts["text_encoder"], scheduler,
                             [caption] * 3, 128, args.steps, args.guidance, torch.Generator().manual_seed(0))  # fmt: skip
        rows.append(([images[i] for i in range(3)], caption))
    save_image_grid(rows, ["sample 1", "sample 2", "sample 3"], args.output)
    return {"captions": captions, "grid": str(args.output), "steps": args.steps, "guidance": args.guidance}


def _pipeline(model: str):
    from spire_ir.pipeline import SpirePipeline

    pipe = SpirePipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _high_frequency_energy(image: torch.Tensor) -> torch.Tensor:
    from spire_ir.degradations.ops import gaussian_blur

    return (image - gaussian_blur(image, 1.5)).pow(2).mean(dim=(1, 2, 3))


def cmd_strength(args: argparse.Namespace) -> dict:
    from spire_ir.degradations import degrade
    from spire_ir.seeding import make_generator

    pipe = _pipeline(args.model)
    x, captions, names = _folder(EVAL / "photos")
    out: dict = {"model": args.model, "steps": args.steps, "strength": args.strength, "images": names}
    for task, given, values, template in (
        ("denoise", "Denoise with sigma 0.10", NOISE_STEPS, "Denoise with sigma {:.2f}"),
        ("deblur", "Deblur with sigma 2.0", BLUR_STEPS, "Deblur with sigma {:.1f}"),
    ):
        y = torch.cat([degrade(x[i : i + 1], given, make_generator(i))[0] for i in range(len(x))])
        energies = []
        for value in values:
            restored = pipe(y, prompt=captions, restoration_prompt=template.format(value),
                            num_inference_steps=args.steps, strength=args.strength,
                            generator=torch.Generator().manual_seed(0), output_type="pt").images.float()  # fmt: skip
            energies.append(_high_frequency_energy(restored))
        energy = torch.stack(energies, dim=1)  # (images, values)
        rhos = [_spearman(list(values), energy[i].tolist()) for i in range(len(x))]
        out[task] = {
            "input": given, "prompts": [template.format(v) for v in values],
            "energy_input": [float(e) for e in _high_frequency_energy(y)],
            "energy_clean": [float(e) for e in _high_frequency_energy(x)],
            "energy": energy.tolist(), "spearman_per_image": rhos, "spearman_mean": sum(rhos) / len(rhos),
        }  # fmt: skip
    return out


SHAPES = ("circle", "square", "triangle", "star")


def _single_shape_scenes(seed: int, count: int, backgrounds) -> tuple[torch.Tensor, list[str], list[int]]:
    from spire_ir.scenes import render_scene

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
    """A small CNN naming the shape of a 128² single-shape scene."""

    def __init__(self) -> None:
        super().__init__()
        layers, width = [], 3
        for out in (16, 32, 64, 64):
            layers += [torch.nn.Conv2d(width, out, 3, padding=1), torch.nn.BatchNorm2d(out), torch.nn.ReLU(),
                       torch.nn.MaxPool2d(2)]  # fmt: skip
            width = out
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(64, len(SHAPES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _backgrounds() -> dict[str, torch.Tensor]:
    from spire_ir.image_utils import load_image

    photos = EVAL.parent / "photos"
    phrases = {"grass": "on grass", "gravel": "on gravel", "brick": "in front of a brick wall"}
    return {phrase: load_image(photos / f"{name}.png").tensor[0] for name, phrase in phrases.items()}


def train_classifier(backgrounds, steps: int = 600, seed: int = 5000) -> tuple[ShapeClassifier, float]:
    images, _, labels = _single_shape_scenes(seed, 2000, backgrounds)
    held, _, held_labels = _single_shape_scenes(seed + 1, 200, backgrounds)
    labels_t = torch.tensor(labels)
    with torch.random.fork_rng():  # seeded initialisation without touching the caller's global RNG
        torch.manual_seed(0)
        model = ShapeClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        pick = torch.randint(len(images), (64,), generator=generator)
        batch = images[pick]
        if bool(torch.rand((), generator=generator) < 0.5):
            batch = batch.flip(-1)
        loss = F.cross_entropy(model(batch), labels_t[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(held).argmax(1) == torch.tensor(held_labels)).float().mean())
    return model, accuracy


def cmd_semantic(args: argparse.Namespace) -> dict:
    from spire_ir.degradations import degrade
    from spire_ir.seeding import make_generator

    backgrounds = _backgrounds()
    classifier, clean_accuracy = train_classifier(backgrounds)
    x, captions, labels = _single_shape_scenes(3000, args.count, backgrounds)
    y = torch.cat([degrade(x[i : i + 1], SEMANTIC_DEGRADATION, make_generator(i))[0] for i in range(len(x))])
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

    out = {"model": args.model, "degradation": SEMANTIC_DEGRADATION, "count": len(x), "steps": args.steps,
           "guidance": args.guidance, "strength": args.strength,
           "classifier_clean_accuracy": clean_accuracy}  # fmt: skip
    predicted = classify(y)
    out["degraded_input"] = {"accuracy": float((predicted == truth).float().mean())}
    outputs = {}
    for name, prompts_ in (
        ("true caption", captions),
        ("empty caption", [""] * len(x)),
        ("wrong caption", wrong),
    ):
        restored = pipe(y, prompt=prompts_, restoration_prompt=SEMANTIC_DEGRADATION, num_inference_steps=args.steps,
                        guidance_scale=args.guidance, strength=args.strength,
                        generator=torch.Generator().manual_seed(0), output_type="pt").images.float()  # fmt: skip
        outputs[name] = restored
        predicted = classify(restored)
        out[name] = {"accuracy": float((predicted == truth).float().mean()),
                     "follows_wrong_shape": float((predicted == wrong_t).float().mean())}  # fmt: skip
    if args.grid:
        from spire_ir.image_utils import save_image_grid

        rows = [([y[i], outputs["true caption"][i], outputs["empty caption"][i], outputs["wrong caption"][i], x[i]],
                 f"true: {captions[i]} | wrong: {wrong[i]}") for i in range(min(6, len(x)))]  # fmt: skip
        save_image_grid(rows, ["degraded", "true caption", '""', "wrong caption", "clean"], args.grid)
    return out


CARD_TASKS = (
    "Denoise with sigma 0.05", "Denoise with sigma 0.10", "Deblur with sigma 1.5", "Deblur with sigma 2.5",
    "Dejpeg with quality 30", "Upsample to 4.0", "Remove all degradation",
)  # fmt: skip


@torch.no_grad()
def cmd_x0(args: argparse.Namespace) -> dict:
    from spire_ir.metrics import psnr
    from spire_ir.models.adaptor import modulate_unet
    from spire_ir.seeding import make_generator

    pipe = _pipeline(args.model)
    x, _, names = _folder(EVAL / "photos")
    x = F.interpolate(x, size=(128, 128), mode="bicubic", antialias=True).clamp(0, 1)
    y = _degrade_all(x, args.task)
    z0 = pipe._encode_latents(x)
    out: dict = {"model": args.model, "task": args.task, "images": names,
                 "input_psnr": float(psnr(y, x).mean()),
                 "vae_psnr": float(psnr(pipe._decode_latents(z0), x).mean()), "t": {}}  # fmt: skip
    scheduler, batch = pipe.scheduler, len(x)
    e_s, e_r = pipe.encode_prompt([""] * batch), pipe.encode_prompt([args.task] * batch)
    for t in (50, 200, 400, 600, 800, 999):
        alpha_bar = scheduler.alphas_cumprod[t]
        a, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        noise = torch.randn(z0.shape, generator=make_generator(t))
        z_t = a * z0 + sigma * noise
        timestep = torch.tensor([t])
        row = {}
        for name, modulation in (("prior", None), ("adaptor", pipe.adaptor(z_t, timestep, y, e_r))):
            with modulate_unet(pipe.unet, modulation):
                output = pipe.unet(z_t, timestep, encoder_hidden_states=e_s).sample
            if scheduler.config.prediction_type == "v_prediction":
                x0 = a * z_t - sigma * output
            else:
                x0 = (z_t - sigma * output) / a
            row[name] = float(psnr(pipe._decode_latents(x0), x).mean())
        out["t"][str(t)] = row
    return out


def cmd_sweep(args: argparse.Namespace) -> dict:
    from spire_ir.color import color_fix
    from spire_ir.metrics import psnr
    from spire_ir.seeding import make_generator

    pipe = _pipeline(args.model)
    x, _, names = _folder(EVAL / "photos")
    strengths = [float(v) for v in args.strengths.split(",")]
    out: dict = {"model": args.model, "images": names, "steps": args.steps, "strengths": strengths,
                 "adaptor_scale": args.adaptor_scale, "tasks": {}}  # fmt: skip
    for task in args.task or CARD_TASKS:
        # "clean": the clean photos themselves, what the VAE and the sampler lose with nothing to fix
        if task == "clean":
            y, prompt = x.clone(), "Remove all degradation"
        else:
            y, prompt = _degrade_all(x, task), task
        row = {"input": float(psnr(y, x).mean())}
        with torch.no_grad():  # the VAE round trip with the same colour fix: what strength -> 0 tends to
            vae = pipe._decode_latents(pipe._encode_latents(y)).clamp(0, 1)
        row["vae"] = float(psnr(color_fix(vae, y, "wavelet"), x).mean())
        for strength in strengths:
            restored = pipe(y, prompt="", restoration_prompt=prompt, num_inference_steps=args.steps,
                            strength=strength, adaptor_scale=args.adaptor_scale, generator=make_generator(0),
                            output_type="pt").images.float()  # fmt: skip
            row[str(strength)] = float(psnr(restored, x).mean())
        out["tasks"][task] = row
        print(task, {k: round(v, 2) for k, v in row.items()}, flush=True)
    return out


def cmd_checkpoint(args: argparse.Namespace) -> dict:
    """A pipeline folder from a `spire train` config and one of its checkpoints (for runs stopped early)."""
    from safetensors.torch import load_file

    from spire_ir.config import load_config
    from spire_ir.training.spire import SpireTask, TrainConfig

    task = SpireTask(load_config(TrainConfig, args.config, args.set or []))
    task.trainable.load_state_dict(load_file(str(Path(args.checkpoint) / "model.safetensors")))
    task.pipeline(task.trainable.eval()).save_pretrained(args.output)
    return {"config": args.config, "checkpoint": args.checkpoint, "pipeline": args.output}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("vae")
    p.add_argument("--vae", required=True)
    p.add_argument("--config", default=None, help="the train-vae config: also score the PCA start (step 0)")
    p = sub.add_parser("base-grid")
    p.add_argument("--base", required=True)
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--guidance", type=float, default=4.0)
    p = sub.add_parser("strength")
    p.add_argument("--model", default="spire-tiny")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model folder's)")
    p.add_argument("--strength", type=float, default=None, help="the sampler's (default: the model folder's)")
    p = sub.add_parser("semantic")
    p.add_argument("--model", default="spire-tiny")
    p.add_argument("--strength", type=float, default=None, help="the sampler's (default: the model folder's)")
    p.add_argument("--count", type=int, default=48)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model folder's)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model folder's)")
    p.add_argument("--grid", default=None, help="also write a PNG grid of six items")
    p = sub.add_parser("x0")
    p.add_argument("--model", default="spire-tiny")
    p.add_argument("--task", default="Denoise with sigma 0.10")
    p = sub.add_parser("sweep")
    p.add_argument("--model", default="spire-tiny")
    p.add_argument("--strengths", default="0.1,0.2,0.3")
    p.add_argument("--task", action="append", help="a restoration prompt (repeatable; default: the card's)")
    p.add_argument("--adaptor-scale", type=float, default=1.0, help="0: the frozen prior alone, as a control")
    p.add_argument("--steps", type=int, default=20)
    p = sub.add_parser("checkpoint")
    p.add_argument("--config", required=True, help="the spire train config of the run")
    p.add_argument("--set", action="append", help="the run's --set overrides")
    p.add_argument("--checkpoint", required=True, help="RUN/checkpoint-NNNNNNN")
    for p in sub.choices.values():
        p.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    commands = {"vae": cmd_vae, "base-grid": cmd_base_grid, "strength": cmd_strength, "semantic": cmd_semantic,
                "x0": cmd_x0, "sweep": cmd_sweep, "checkpoint": cmd_checkpoint}  # fmt: skip
    result = commands[args.command](args)
    if args.command not in ("base-grid", "checkpoint"):
        from spire_ir.image_utils import save_json

        save_json(result, args.output)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}, indent=1)[:3000])


if __name__ == "__main__":
    main()
