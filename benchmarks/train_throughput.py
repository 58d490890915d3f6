"""Training throughput of ``spire train``'s step (Eq. 1 loss, backward, AdamW) in samples per second.

Presets: ``tiny`` (the test model, 64²), ``cpu`` (SD-1.5 layout with widths / 10, 256², see benchmarks/pipeline.py)
and, when a GPU is present, ``sd15`` (SD-1.5 shapes with random weights, 512², bf16, gradient checkpointing).
``recipe-prior`` and ``recipe-adaptor`` time the two stages of spire-tiny's recipe (``recipes/spire-tiny/``) at its
configs' widths, resolution and batch, with fresh weights and the recipe's own data pipeline, so that the width can
be chosen from s/step before a run (``--set key=value`` tries another setting, e.g. ``model.block_out_channels``).

    python benchmarks/train_throughput.py                      # tiny + cpu
    python benchmarks/train_throughput.py --presets sd15 --batch-size 8
    python benchmarks/train_throughput.py --presets recipe-prior recipe-adaptor
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))


def parts_for(preset: str, device: str, dtype: torch.dtype):
    from diffusers import DDPMScheduler

    if preset == "tiny":
        from spire_ir.testing import tiny_components

        parts = tiny_components(seed=0)
    else:
        from pipeline import build  # benchmarks/pipeline.py

        ours, _, _ = build("cpu" if preset == "cpu" else "sd15", torch.float32, "cpu")
        parts = {
            name: getattr(ours, name)
            for name in ("vae", "unet", "text_encoder", "tokenizer", "adaptor", "scheduler")
        }
    parts["scheduler"] = DDPMScheduler.from_config(parts["scheduler"].config)
    for name in ("vae", "unet", "text_encoder"):
        parts[name].requires_grad_(False).eval().to(device, dtype)
    parts["adaptor"].requires_grad_(True).train().to(device)
    return parts


def measure(
    preset: str, resolution: int, batch: int, steps: int, device: str, dtype: torch.dtype, checkpointing: bool
):
    from spire_ir.training.spire import FrozenParts, spire_loss
    from spire_ir.utils.seeding import SampleRandom

    components = parts_for(preset, device, dtype)
    adaptor = components.pop("adaptor")
    frozen = FrozenParts(**components, sampling_scheduler=components["scheduler"])
    if checkpointing:
        frozen.unet.enable_gradient_checkpointing()
        adaptor.controlnet.enable_gradient_checkpointing()
    optimiser = torch.optim.AdamW(adaptor.parameters(), lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    data = {
        "x": torch.rand(batch, 3, resolution, resolution, generator=generator),
        "y": torch.rand(batch, 3, resolution, resolution, generator=generator),
        "c_s": ["a red star above a blue circle"] * batch,
        "c_r": ["Deblur with sigma 2.0, Denoise with sigma 0.05"] * batch,
    }

    def step():
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
            loss = spire_loss(frozen, adaptor, data, SampleRandom(0, range(batch)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    memory = f", peak GPU {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""
    print(f"{preset:>5} {resolution}² batch {batch}: {batch * steps / seconds:.2f} samples/s "
          f"({seconds / steps:.3f} s/step, {device}, {dtype}{', checkpointing' if checkpointing else ''}{memory})")  # fmt: skip


def measure_recipe(stage: str, steps: int, overrides: list[str]) -> None:
    """s/step of a spire-tiny recipe stage: data loading (the degradations) + loss + backward + AdamW."""
    import tempfile

    from spire_ir.data import build_dataloader
    from spire_ir.utils.config import load_config
    from spire_ir.utils.seeding import SampleRandom

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        if stage == "prior":
            from spire_ir.training.base import BaseTask, BaseTrainConfig

            config = load_config(
                BaseTrainConfig, root / "recipes/spire-tiny/prior.yaml", [f"output_dir={tmp}", *overrides]
            )
            task = BaseTask(config)
        else:
            from spire_ir.training.base import BaseTask, BaseTrainConfig
            from spire_ir.training.spire import SpireTask, TrainConfig

            prior = load_config(
                BaseTrainConfig, root / "recipes/spire-tiny/prior.yaml", [f"output_dir={tmp}"]
            )
            base = BaseTask(prior)
            base_dir = base.export(base.trainable, Path(tmp))
            config = load_config(TrainConfig, root / "recipes/spire-tiny/adaptor.yaml",
                                 [f"output_dir={tmp}", f"model.base={base_dir}", *overrides])  # fmt: skip
            task = SpireTask(config)
        task.to(torch.device("cpu"), torch.float32)
        model = task.trainable.train()
        optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        loader, _ = build_dataloader(config.data, config.batch_size)
        batches = iter(loader)
        times = []
        for _ in range(steps + 1):  # the first step is warm-up
            started = time.perf_counter()
            batch = next(batches)
            loss = task.loss(model, batch, SampleRandom(0, batch["key"]))  # one generator per sample
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            times.append(time.perf_counter() - started)
        per_step = sum(times[1:]) / steps
        params = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
        print(
            f"recipe-{stage} {config.data.resolution}² batch {config.batch_size}: {per_step:.2f} s/step, "
            f"{config.batch_size / per_step:.1f} samples/s, {params:.2f} M trainable parameters"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=None, help="tiny cpu sd15")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], help="recipe presets: a config override")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    presets = args.presets or (["tiny", "cpu", "sd15"] if cuda else ["tiny", "cpu"])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for preset in presets:
        if preset.startswith("recipe-"):
            measure_recipe(preset.removeprefix("recipe-"), args.steps, args.set)
            continue
        on_gpu = preset == "sd15"
        if on_gpu and not cuda:
            print("sd15: skipped (needs a CUDA GPU)")
            continue
        resolution = {"tiny": 64, "cpu": 256, "sd15": 512}[preset]
        batch = args.batch_size or {"tiny": 8, "cpu": 2, "sd15": 8}[preset]
        measure(preset, resolution, batch, args.steps, "cuda" if on_gpu else "cpu",
                torch.bfloat16 if on_gpu else torch.float32, checkpointing=on_gpu)  # fmt: skip


if __name__ == "__main__":
    main()
