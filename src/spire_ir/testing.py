"""Tiny, complete SPIRE pipelines for tests and benchmarks (random weights, seeded, no downloads).

Only tests and benchmarks import this module; the components come from :mod:`spire_ir.models.tiny`.
"""

from __future__ import annotations

from typing import Any

from spire_ir.models.tiny import SD_SCHEDULER, TINY_UNET, TINY_VAE, tiny_bridge_components, tiny_components

__all__ = [
    "SD_SCHEDULER",
    "TINY_UNET",
    "TINY_VAE",
    "tiny_bridge_components",
    "tiny_bridge_pipeline",
    "tiny_components",
    "tiny_pipeline",
]


def tiny_pipeline(seed: int = 0, fusion: str = "modulation", **kwargs: Any):
    """A complete tiny ``SpirePipeline`` (progress bar off)."""
    from spire_ir.pipeline import SpirePipeline

    pipe = SpirePipeline(**tiny_components(seed=seed, fusion=fusion, **kwargs))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_bridge_pipeline(seed: int = 0, **kwargs: Any):
    """A complete tiny pixel-space ``SpirePipeline`` with the ResShift bridge (progress bar off)."""
    from spire_ir.pipeline import SpirePipeline

    pipe = SpirePipeline(**tiny_bridge_components(seed=seed, **kwargs), default_color_fix="none")
    pipe.set_progress_bar_config(disable=True)
    return pipe
