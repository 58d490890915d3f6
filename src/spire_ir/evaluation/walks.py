"""Two measurements of how a model follows its restoration prompt: the strength walk (paper Fig. 7) and the step
sweep (PSNR / SSIM per task for several step counts K), behind ``spire bench strength`` and ``spire bench sweep``.

* **Strength walk.** Clean images are degraded once (noise σ 0.10, or blur σ 2.0), then restored with the same
  op at a range of values ("Denoise with sigma s", s in 0.02 … 0.24). The residual high-frequency energy of each
  output (mean square of output − its Gaussian blur σ 1.5) should fall as the denoise value grows and rise as the
  deblur value grows. Reported: Spearman ρ(value, energy) per image and its mean (ρ → −1 for denoise, +1 for
  deblur when the model follows the number).
* **Step sweep.** Each task prompt degrades image i with seed i (8-bit, as ``spire bench build`` saves), then the
  model restores it with that prompt at each K, with the deterministic and (for ``ResShiftScheduler``) the
  stochastic step.

Images are (N, 3, H, W) in [0, 1] of one size, restored as one batch with one seeded generator.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from spire_ir.evaluation.metrics import psnr, ssim
from spire_ir.prompts import PromptWarning
from spire_ir.utils.images import quantize_8bit
from spire_ir.utils.seeding import make_generator

__all__ = ["STRENGTH_WALKS", "high_frequency_energy", "step_sweep", "strength_walk"]

# task -> (the degradation applied, the values walked, the prompt template)
STRENGTH_WALKS: dict[str, tuple[str, tuple[float, ...], str]] = {
    "denoise": ("Denoise with sigma 0.10", (0.02, 0.04, 0.08, 0.12, 0.16, 0.24), "Denoise with sigma {:.2f}"),
    "deblur": ("Deblur with sigma 2.0", (0.5, 1.0, 1.5, 2.0, 3.0, 4.0), "Deblur with sigma {:.1f}"),
}


def high_frequency_energy(image: torch.Tensor) -> torch.Tensor:
    """(B,) mean square of image − Gaussian blur σ 1.5 of it. image: (B, 3, H, W) in [0, 1]."""
    from spire_ir.ops.image import gaussian_blur

    return (image - gaussian_blur(image, 1.5)).pow(2).mean(dim=(1, 2, 3))


def _degrade_each(clean: torch.Tensor, prompt: str) -> torch.Tensor:
    from spire_ir.degradations import degrade

    return torch.cat([degrade(clean[i : i + 1], prompt, make_generator(i))[0] for i in range(len(clean))])


def _restore(pipe, y: torch.Tensor, captions: list[str], prompt: str, seed: int, **sampler: Any) -> torch.Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptWarning)  # the walks go beyond the training range on purpose
        return pipe(y, prompt=captions, restoration_prompt=prompt, generator=make_generator(seed),
                    output_type="pt", **sampler).images.float()  # fmt: skip


def _spearman(values: tuple[float, ...], energies: list[float]) -> float | None:
    """Spearman ρ, or None when the energies do not change with the value (ρ undefined)."""
    from scipy.stats import spearmanr

    if len(set(energies)) == 1:
        return None
    return float(spearmanr(list(values), energies).statistic)


def strength_walk(
    pipe, clean: torch.Tensor, captions: list[str], task: str = "denoise", seed: int = 0, **sampler: Any
) -> dict[str, Any]:
    """The strength walk of ``task`` ("denoise" or "deblur"); ``sampler`` goes to the pipeline (steps, strength).

    Returns:
        {"input", "prompts", "energy" (images × values), "energy_input", "energy_clean", "spearman_per_image"
        (None for an image whose output does not change with the value), "spearman_mean" (over the others)}.
    """
    if task not in STRENGTH_WALKS:
        raise ValueError(f"unknown walk {task!r}; choose one of {', '.join(STRENGTH_WALKS)}")
    given, values, template = STRENGTH_WALKS[task]
    y = _degrade_each(clean, given)
    energy = torch.stack(
        [high_frequency_energy(_restore(pipe, y, captions, template.format(v), seed, **sampler)) for v in values], dim=1
    )  # (images, values)
    rhos = [_spearman(values, energy[i].tolist()) for i in range(len(clean))]
    defined = [rho for rho in rhos if rho is not None]
    return {
        "input": given, "prompts": [template.format(v) for v in values], "energy": energy.tolist(),
        "energy_input": high_frequency_energy(y).tolist(), "energy_clean": high_frequency_energy(clean).tolist(),
        "spearman_per_image": rhos, "spearman_mean": sum(defined) / len(defined) if defined else None,
    }  # fmt: skip


def step_sweep(
    pipe,
    clean: torch.Tensor,
    captions: list[str],
    tasks: list[str],
    steps: tuple[int, ...] = (1, 2, 4, 8),
    kinds: tuple[str, ...] = ("deterministic", "stochastic"),
    seed: int = 0,
    **sampler: Any,
) -> dict[str, dict[str, float]]:
    """PSNR / SSIM per task prompt for each K and step kind. Returns {task: {"input_psnr", "input_ssim",
    "{kind}_K{k}_psnr", "{kind}_K{k}_ssim", ...}}; the stochastic step is swept only with a ``ResShiftScheduler``
    (and not at K = 1, where both kinds are the same x̂₀)."""
    from spire_ir.schedulers import ResShiftScheduler

    original = pipe.scheduler
    bridge = isinstance(original, ResShiftScheduler)
    results: dict[str, dict[str, float]] = {}
    try:
        for task in tasks:
            y = quantize_8bit(_degrade_each(clean, task))
            row = {"input_psnr": float(psnr(y, clean).mean()), "input_ssim": float(ssim(y, clean).mean())}
            for kind in kinds if bridge else ("deterministic",):
                if bridge:
                    pipe.scheduler = ResShiftScheduler.from_config(original.config, stochastic=kind == "stochastic")
                for k in steps:
                    if kind == "stochastic" and k == 1:
                        continue
                    restored = _restore(pipe, y, captions, task, seed, num_inference_steps=k, **sampler)
                    row[f"{kind}_K{k}_psnr"] = float(psnr(restored, clean).mean())
                    row[f"{kind}_K{k}_ssim"] = float(ssim(restored, clean).mean())
            results[task] = row
    finally:
        pipe.scheduler = original
    return results
