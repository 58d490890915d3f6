"""Real-ESRGAN blur kernels: Gaussian, generalised Gaussian, plateau (iso/aniso) and the circular sinc.

Formulas follow Real-ESRGAN (Wang et al., 2021) as described in ``degradations.md`` A.2; written from that
description. Every kernel is odd-sized, sums to 1, and is zero-padded to ``pad_to`` (21) so kernels of any size
stack. Parameters are drawn by ``sample_*`` functions from an explicit generator and returned with the kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from spire_ir.utils.seeding import choice, coin, uniform

__all__ = [
    "KERNEL_SIZES",
    "KernelConfig",
    "mixed_kernel",
    "sample_blur_kernel",
    "sample_final_sinc",
    "sinc_kernel",
]

KERNEL_SIZES = (7, 9, 11, 13, 15, 17, 19, 21)
KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


@dataclass(frozen=True)
class KernelConfig:
    """The kernel options of one Real-ESRGAN stage (x4plus values by default)."""

    kernel_types: tuple[str, ...] = KERNEL_TYPES
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    pad_to: int = 21


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.arange(-(size // 2), size // 2 + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return xx, yy


def _pad_kernel(kernel: torch.Tensor, pad_to: int) -> torch.Tensor:
    pad = (pad_to - kernel.shape[-1]) // 2
    return torch.nn.functional.pad(kernel, (pad, pad, pad, pad)) if pad > 0 else kernel


def mixed_kernel(
    kind: str, size: int, sigma_x: float, sigma_y: float, theta: float, beta: float = 1.0
) -> torch.Tensor:
    """One kernel of the Real-ESRGAN families, normalised to sum 1.

    With d(x) = xᵀ Σ⁻¹ x and Σ = R(θ) diag(σx², σy²) R(θ)ᵀ: Gaussian exp(-d/2), generalised exp(-d^β / 2),
    plateau 1 / (1 + d^β). Isotropic kinds use σy = σx and θ = 0.

    Returns:
        (size, size) float32.
    """
    if kind.endswith("_iso") or kind == "iso":
        sigma_y, theta = sigma_x, 0.0
    rotation = torch.tensor(
        [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64
    )
    covariance = (
        rotation @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rotation.T
    )
    inverse = torch.linalg.inv(covariance)
    xx, yy = _grid(size)
    d = inverse[0, 0] * xx * xx + (inverse[0, 1] + inverse[1, 0]) * xx * yy + inverse[1, 1] * yy * yy
    if kind in ("iso", "aniso"):
        kernel = torch.exp(-0.5 * d)
    elif kind.startswith("generalized"):
        kernel = torch.exp(-0.5 * d.pow(beta))
    elif kind.startswith("plateau"):
        kernel = 1.0 / (1.0 + d.pow(beta))
    else:
        raise ValueError(f"unknown kernel type {kind!r}; expected one of {KERNEL_TYPES}")
    return (kernel / kernel.sum()).float()


def sinc_kernel(cutoff: float, size: int) -> torch.Tensor:
    """The circular low-pass ("sinc") kernel ω·J1(ω·r)/(2π·r), centre ω²/(4π), normalised to sum 1."""
    xx, yy = _grid(size)
    radius = torch.sqrt(xx * xx + yy * yy)
    safe = torch.where(radius == 0, torch.ones_like(radius), radius)
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel = torch.where(radius == 0, torch.full_like(radius, cutoff**2 / (4 * math.pi)), kernel)
    return (kernel / kernel.sum()).float()


def _sample_beta(generator: torch.Generator, beta_range: tuple[float, float]) -> float:
    # Upstream: half the time U(low, 1), otherwise U(1, high); for plateau [1, 2] that makes β = 1 half the time.
    if coin(generator, 0.5):
        return uniform(generator, beta_range[0], 1.0)
    return uniform(generator, 1.0, beta_range[1])


def sample_blur_kernel(generator: torch.Generator, config: KernelConfig) -> tuple[torch.Tensor, dict]:
    """Draw a stage blur kernel (sinc with ``sinc_prob``, else a mixed kernel) and its parameters.

    Returns:
        ((pad_to, pad_to) kernel, JSON-able record of the draw).
    """
    size = choice(generator, KERNEL_SIZES)
    if coin(generator, config.sinc_prob):
        cutoff = (
            uniform(generator, math.pi / 3, math.pi)
            if size < 13
            else uniform(generator, math.pi / 5, math.pi)
        )
        record = {"kernel": "sinc", "size": size, "cutoff": round(cutoff, 4)}
        return _pad_kernel(sinc_kernel(cutoff, size), config.pad_to), record
    kind = choice(generator, config.kernel_types, config.kernel_probs)
    sigma_x = uniform(generator, *config.blur_sigma)
    sigma_y, theta, beta = sigma_x, 0.0, 1.0
    if kind.endswith("aniso"):
        sigma_y = uniform(generator, *config.blur_sigma)
        theta = uniform(generator, -math.pi, math.pi)
    if kind.startswith("generalized"):
        beta = _sample_beta(generator, config.betag_range)
    elif kind.startswith("plateau"):
        beta = _sample_beta(generator, config.betap_range)
    kernel = mixed_kernel(kind, size, sigma_x, sigma_y, theta, beta)
    record = {
        "kernel": kind,
        "size": size,
        "sigma_x": round(sigma_x, 4),
        "sigma_y": round(sigma_y, 4),
        "theta": round(theta, 4),
        "beta": round(beta, 4),
    }
    return _pad_kernel(kernel, config.pad_to), record


def sample_final_sinc(
    generator: torch.Generator, prob: float = 0.8, pad_to: int = 21
) -> tuple[torch.Tensor, dict]:
    """The final-stage sinc filter (ω ~ U(π/3, π) whatever the size) with ``prob``, else the identity pulse."""
    if coin(generator, prob):
        size = choice(generator, KERNEL_SIZES)
        cutoff = uniform(generator, math.pi / 3, math.pi)
        return _pad_kernel(sinc_kernel(cutoff, size), pad_to), {
            "kernel": "sinc",
            "size": size,
            "cutoff": cutoff,
        }
    pulse = torch.zeros(pad_to, pad_to)
    pulse[pad_to // 2, pad_to // 2] = 1.0
    return pulse, {"kernel": "pulse"}
