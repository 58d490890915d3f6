"""The restoration ops in one table: how each is written, drawn in training, applied, shown and undone.

Adding an op (say "Derain") is one ``OpSpec`` entry in ``OP_SPECS`` plus its apply function (and, for the
``classical`` baseline, its inverse). The prompt grammar, the parameterised degradation, the numeric channel, the
web studio's builder and the classical baseline all read this table. The table's order is the order in which the
parameterised degradation applies the ops (blur → downsample → noise → JPEG, paper §4.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from spire_ir.ops import classical
from spire_ir.ops import image as image_ops

__all__ = ["OP_KINDS", "OP_SPECS", "OpSpec", "Slider"]


@dataclass(frozen=True)
class Slider:
    """A web-studio builder slider: the training range with some headroom."""

    minimum: float
    maximum: float
    step: float
    default: float
    label: str


@dataclass(frozen=True)
class OpSpec:
    """Everything the package knows about one restoration op.

    Attributes:
        verb: the canonical leading word ("Deblur").
        phrase: the words between verb and value in canonical text ("with sigma").
        param: the parameter's name in degradation records ("sigma").
        decimals: digits after the point in canonical text (0 means an integer, drawn as one).
        valid: the closed range of values the grammar accepts.
        train: the range the parameterised degradation draws from (paper Table 2); ``data.degradation.
            parameterized.ranges`` overrides it per run.
        unit_hint: a few words on the unit, for error messages.
        placeholder: the value's letter in the grammar's help ("S" in "Deblur with sigma S").
        aliases: other words that name the op in a prompt ("sharpen").
        apply: the degradation the op undoes, ``(image (B, 3, H, W) in [0, 1], value, generator) -> image``.
        noop: the value at which ``apply`` leaves the image unchanged; a drawn value that rounds to it is redrawn.
        slider: the web studio's slider for the value.
        inverse: the textbook inverse, ``(array (H, W, 3) float64 in [0, 1], value or None) -> array``.
        numeric: the value mapped to about [0, 1] for the adaptor's numeric channel (``models/numeric.py``),
            covering the Fig. 7 walks beyond the training range.
        suggest: for a value outside ``valid``, a hint at the unit the user probably meant ("" for none).
    """

    verb: str
    phrase: str
    param: str
    decimals: int
    valid: tuple[float, float]
    train: tuple[float, float]
    unit_hint: str
    placeholder: str
    aliases: tuple[str, ...]
    apply: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]
    noop: float | None
    slider: Slider
    inverse: Callable[[np.ndarray, float | None], np.ndarray]
    numeric: Callable[[float], float]
    suggest: Callable[[float], str] = lambda value: ""


def _blur(image: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    return image_ops.gaussian_blur(image, sigma)


def _downsample(image: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    return image_ops.resize_down_up(image, factor)


def _noise(image: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    return image_ops.add_gaussian_noise(image, sigma, generator) if sigma > 0 else image


def _jpeg(image: torch.Tensor, quality: float, generator: torch.Generator) -> torch.Tensor:
    return image_ops.jpeg(image, int(quality))


def _noise_units(value: float) -> str:
    return f"did you mean {value / 100:.2f} ({value:g}/100) or {value / 255:.3f} ({value:g}/255)?" if value > 1 else ""


def _quality_units(value: float) -> str:
    return f"did you mean {round(value * 100)}?" if 0 < value <= 1 else ""


OP_SPECS: dict[str, OpSpec] = {
    "deblur": OpSpec(
        "Deblur", "with sigma", "sigma", 1, valid=(0.1, 20.0), train=(0.2, 3.0), unit_hint="blur sigma is in pixels",
        placeholder="S", aliases=("unblur", "sharpen"), apply=_blur, noop=None,
        slider=Slider(0.2, 5.0, 0.1, 1.5, "Deblur (blur σ, px)"), inverse=classical.undo_blur,
        numeric=lambda sigma: sigma / 4.0,
    ),
    "upsample": OpSpec(
        "Upsample", "to", "factor", 1, valid=(1.0, 16.0), train=(1.0, 7.0), unit_hint="the factor is a size ratio",
        placeholder="F", aliases=("upscale", "superresolve"), apply=_downsample, noop=1.0,
        slider=Slider(1.0, 8.0, 0.1, 2.0, "Upsample (factor)"), inverse=classical.undo_downsample,
        numeric=lambda factor: (factor - 1.0) / 7.0,
    ),
    "denoise": OpSpec(
        "Denoise", "with sigma", "sigma", 2, valid=(0.0, 1.0), train=(0.0, 0.12),
        unit_hint="noise sigma is in [0,1] units", placeholder="S", aliases=(), apply=_noise, noop=0.0,
        slider=Slider(0.0, 0.3, 0.01, 0.05, "Denoise (noise σ, 0-1 scale)"), inverse=classical.undo_noise,
        numeric=lambda sigma: sigma / 0.3,
        suggest=_noise_units,
    ),
    "dejpeg": OpSpec(
        "Dejpeg", "with quality", "quality", 0, valid=(1.0, 100.0), train=(30.0, 92.0),
        unit_hint="JPEG quality is an integer 1-100", placeholder="Q", aliases=("deblock",), apply=_jpeg,
        noop=None, slider=Slider(10, 100, 1, 50, "Dejpeg (JPEG quality)"), inverse=classical.undo_jpeg,
        numeric=lambda quality: (100.0 - quality) / 100.0,
        suggest=_quality_units,
    ),
}  # fmt: skip
OP_KINDS: tuple[str, ...] = tuple(OP_SPECS)
