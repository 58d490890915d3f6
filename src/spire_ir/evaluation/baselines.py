"""Baseline restorers for ``spire bench run``: identity, bicubic and a prompt-driven classical pipeline.

Every method maps (y (1, 3, H, W) in [0, 1], c_s, c_r) to a restored image of the same size.

``classical`` undoes the ops named in c_r in reverse order, each with its textbook inverse from the op table
(``OpSpec.inverse``, :mod:`spire_ir.ops.classical`): total-variation smoothing for JPEG, non-local means for noise,
Richardson–Lucy for blur, area-down and Lanczos-up for the upsample factor. Values the prompt leaves out are
estimated (noise σ) or assumed (JPEG quality 50, blur σ 1.0, no resampling); "Remove all degradation" estimates the
noise and removes it.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from spire_ir import prompts
from spire_ir.ops.classical import resample
from spire_ir.utils.images import tensor_to_uint8

__all__ = ["METHODS", "bicubic", "classical", "identity"]


def identity(y: torch.Tensor, c_s: str = "", c_r: str = "") -> torch.Tensor:
    """The degraded input itself."""
    return y


def bicubic(y: torch.Tensor, c_s: str = "", c_r: str = "") -> torch.Tensor:
    """For "Upsample to f": area-downsample by f and bicubic back; otherwise the input unchanged."""
    parsed = prompts.parse(c_r) if c_r else prompts.RestorationPrompt()
    factors = [op.value for op in parsed.ops if op.kind == "upsample" and op.value]
    if not factors:
        return y
    array = tensor_to_uint8(y).astype(np.float64) / 255.0
    out = resample(array, factors[0], Image.BICUBIC)
    return torch.from_numpy(out).permute(2, 0, 1).unsqueeze(0).float()


def classical(y: torch.Tensor, c_s: str = "", c_r: str = "") -> torch.Tensor:
    """Undo the ops c_r names, in reverse order, each with its table inverse (see the module docstring)."""
    with np.errstate(all="ignore"):
        parsed = prompts.parse(c_r) if c_r else prompts.RestorationPrompt(blind=True)
    array = tensor_to_uint8(y).astype(np.float64) / 255.0
    ops = list(parsed.ops)
    if parsed.blind or not ops:
        ops = [prompts.RestorationOp("denoise")]  # blind: estimate the noise and remove it
    for op in reversed(ops):
        array = np.clip(op.spec.inverse(array, op.value), 0, 1)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float()


METHODS = {"identity": identity, "bicubic": bicubic, "classical": classical}
