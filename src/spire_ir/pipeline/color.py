"""Colour correction after decoding: keep the restored detail, take the low-frequency colour from the input.

Both methods compare the output with a reference (the degraded input at the output size). The SPIRE paper does
not describe colour correction; these are the two post-processes StableSR/DiffBIR users rely on
(``diffusers-notes.md`` D.5), written from their published formulas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["adain_color_fix", "color_fix", "wavelet_color_fix"]


def _check(image: torch.Tensor, reference: torch.Tensor) -> None:
    if image.dim() != 4 or image.shape[1] != 3 or image.shape != reference.shape:
        raise ValueError(
            f"colour fix needs two (B, 3, H, W) RGB tensors of the same shape, got {tuple(image.shape)} "
            f"and {tuple(reference.shape)}; convert RGBA/gray inputs to RGB first"
        )


def adain_color_fix(image: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Match each channel's mean and std to the reference's. image, reference: (B, 3, H, W) in [0, 1]."""
    _check(image, reference)
    mean_i, std_i = image.mean((2, 3), keepdim=True), (image.var((2, 3), keepdim=True) + eps).sqrt()
    mean_r, std_r = reference.mean((2, 3), keepdim=True), (reference.var((2, 3), keepdim=True) + eps).sqrt()
    return ((image - mean_i) / std_i * std_r + mean_r).clamp(0, 1)


def _low_pass(image: torch.Tensor, levels: int) -> torch.Tensor:
    kernel = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=image.dtype, device=image.device) / 16
    weight = kernel.expand(image.shape[1], 1, 3, 3)
    for level in range(levels):
        radius = 2**level
        padded = F.pad(image, (radius,) * 4, mode="replicate")
        image = F.conv2d(padded, weight, groups=image.shape[1], dilation=radius)
    return image


def wavelet_color_fix(
    image: torch.Tensor, reference: torch.Tensor, levels: int = 5, strip: int = 512
) -> torch.Tensor:
    """High frequencies of ``image`` + low frequencies of ``reference`` (5-level à-trous wavelet).

    Tall images are processed in horizontal strips of ``strip`` rows with a halo as wide as the filter's reach
    (1 + 2 + ... + 2^(levels-1) rows), which gives exactly the whole-image result with bounded memory.

    image, reference: (B, 3, H, W) in [0, 1].
    """
    _check(image, reference)
    height = image.shape[-2]
    halo = 2**levels - 1
    out = torch.empty_like(image)
    for top in range(0, height, strip):
        bottom = min(height, top + strip)
        lo, hi = max(0, top - halo), min(height, bottom + halo)
        part = image[..., lo:hi, :]
        fixed = part - _low_pass(part, levels) + _low_pass(reference[..., lo:hi, :], levels)
        out[..., top:bottom, :] = fixed[..., top - lo : bottom - lo, :].clamp(0, 1)
    return out


def color_fix(image: torch.Tensor, reference: torch.Tensor, method: str = "wavelet") -> torch.Tensor:
    """Dispatch on ``method``: "wavelet", "adain" or "none"."""
    if method == "wavelet":
        return wavelet_color_fix(image, reference)
    if method == "adain":
        return adain_color_fix(image, reference)
    if method == "none":
        return image
    raise ValueError(f"unknown colour fix {method!r}; use wavelet, adain or none")
