"""What the command line and the web studio share: loading a pipeline onto a device, degrading one image, and the
prompt walk (paper Fig. 7). Errors are ``ValueError`` / ``FileNotFoundError`` with messages for users; each front
end shows them its own way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from spire_ir import prompts
from spire_ir.utils.images import image_grid, tensor_to_pil
from spire_ir.utils.seeding import make_generator

__all__ = ["degrade_image", "load_pipeline", "pick_device", "tile_size_for", "walk", "walk_pairs", "walk_values"]

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def tile_size_for(config: Any) -> int:
    """The tile size, in pixels, the front ends sample with by default: the model folder's ``default_tile_size``,
    else 512 (64 latent cells on SD)."""
    return int(config.get("default_tile_size", 0)) or 512


def pick_device(name: str) -> str:
    """"auto" -> cuda, mps or cpu (the first available); a named device is checked. Raises ValueError."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name.startswith("cuda") and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
        raise ValueError(
            f"--device {name}: CUDA is not available here (torch {torch.__version__}, {build}); use --device cpu or auto"
        )
    if name == "mps" and not mps:
        raise ValueError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
    if name not in ("auto", "cpu", "mps") and not name.startswith("cuda"):
        raise ValueError(f"--device {name}: choose auto, cpu, cuda, cuda:N or mps")
    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"


def load_pipeline(model: str, device: str = "auto", precision: str | None = None) -> tuple[Any, dict[str, str]]:
    """A ``SpirePipeline`` from a folder (or "spire-tiny") on ``device``, fp16 on CUDA and fp32 elsewhere unless
    ``precision`` says otherwise. Returns (pipe, {"device", "precision"})."""
    from spire_ir.pipeline import SpirePipeline

    device = pick_device(device)
    precision = precision or ("fp16" if device == "cuda" else "fp32")
    try:
        pipe = SpirePipeline.from_pretrained(model, dtype=PRECISIONS[precision])
    except OSError as error:
        raise ValueError(str(error)) from error
    return pipe.to(device), {"device": device, "precision": precision}


def degrade_image(
    image: torch.Tensor, prompt: str | None, mode: str, generator: torch.Generator
) -> tuple[torch.Tensor, str, dict]:
    """Degrade (1, 3, H, W) in [0, 1] as ``prompt`` says, or, when it is empty, with the random pipeline ``mode``
    ("parameterized", "realesrgan" or "mixed"). Returns (y, c_r, record)."""
    from spire_ir.degradations import degrade, get_degradation

    with torch.no_grad():
        if prompt and prompt.strip():
            return degrade(image, prompt, generator)
        return get_degradation(mode)(image, generator)


def walk_values(text: str) -> list[str]:
    """"0.02, 0.06, 0.12" (or "a cat | a dog" when values hold commas) -> the values."""
    values = [v.strip() for v in (text.split("|") if "|" in text else text.split(","))]
    values = [v for v in values if v]
    if not values:
        raise ValueError("the values are empty; give a comma-separated list, e.g. 0.02,0.06,0.12")
    return values


def walk_pairs(
    values: list[str], semantic_template: str, restoration_template: str, train_ranges: dict | None = None
) -> list[tuple[str, str]]:
    """(c_s, c_r) per value, put where each template has "{}" (in one of them, or both).

    Every c_r is parsed, so an out-of-range value is an error before anything runs; values outside the model's
    ``train_ranges`` (``SpirePipeline.train_ranges``; None: Table 2's) are warned about.
    """
    walk_semantic = "{}" in semantic_template
    if "{}" not in restoration_template and not walk_semantic:
        raise ValueError('put "{}" where the values go, in the restoration prompt ("Denoise with sigma {}") or the '
                         "semantic prompt")  # fmt: skip
    pairs = [
        (semantic_template.replace("{}", v) if walk_semantic else semantic_template,
         restoration_template.replace("{}", v))
        for v in values
    ]  # fmt: skip
    for _, restoration in pairs:
        prompts.parse(restoration, train_ranges=train_ranges)
    return pairs


def walk(
    pipe,
    image: torch.Tensor,
    pairs: list[tuple[str, str]],
    seed: int,
    on_value: Callable[[int, int], None] | None = None,
    **sampler: Any,
) -> Image.Image:
    """Restore ``image`` (1, 3, H, W) in [0, 1] once per (c_s, c_r), each with the same seed, and return the
    labelled grid: the input, then one cell per pair. ``sampler`` goes to the pipeline (steps, guidance, ...)."""
    walk_semantic = len({semantic for semantic, _ in pairs}) > 1
    cells, labels = [tensor_to_pil(image)], ["input"]
    for index, (semantic, restoration) in enumerate(pairs):
        if on_value is not None:
            on_value(index, len(pairs))
        out = pipe(image, prompt=semantic, restoration_prompt=restoration, generator=make_generator(seed),
                   output_type="pt", **sampler).images[0]  # fmt: skip
        cells.append(tensor_to_pil(out))
        labels.append(restoration + (f" | {semantic}" if walk_semantic or semantic else ""))
    return image_grid([cells], cell_labels=[labels])
