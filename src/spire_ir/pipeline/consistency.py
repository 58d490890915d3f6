"""Data consistency with the degradation the restoration prompt states.

A parameterised restoration prompt names its degradation exactly ("Deblur with sigma 2.0, Upsample to 4.0,
Denoise with sigma 0.05"), so the forward operator A of its linear ops (Gaussian blur, down-up resampling) and the
noise level are known. After sampling, the restored x̂ is moved to the maximum a posteriori point of a Gaussian
model centred on it:

    x* = argmin_x ‖A x − y‖² / σ_n² + ‖x − x̂‖² / σ_e²,   i.e. (AᵀA + λI) x* = Aᵀy + λ x̂,  λ = σ_n² / σ_e²,

solved by conjugate gradients started at x̂, with Aᵀ written out for the blur and from autograd for resampling.
σ_n² is the stated noise variance plus the 8-bit quantisation of y (1/255²/12); σ_e is the restorer's own error
(``prior_sigma``). Where the stated noise is large, λ is large and x̂ is kept; where y is noise-free, x* agrees
with y wherever A can see, and keeps x̂ in A's null space (the detail A removed), as DDNM's range-null-space
decomposition does. The cap on conjugate-gradient steps (30) also regularises: σ_e and it were chosen together.

A prompt that is one JPEG op instead projects x̂ onto the JPEG's quantisation constraint set
(``jpeg_consistency``). Blind prompts, denoise alone and JPEG with other ops are returned unchanged.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from spire_ir.ops.image import gaussian_blur, gaussian_blur_adjoint, libjpeg_table, resize_down_up
from spire_ir.prompts import PromptWarning, RestorationOp, parse

__all__ = ["QUANTIZATION_VARIANCE", "consistency_plan", "data_consistency", "jpeg_consistency"]

QUANTIZATION_VARIANCE = 1.0 / 255.0**2 / 12.0  # the variance of rounding to 8 bits


def consistency_plan(restoration_prompt: str) -> tuple[list[RestorationOp], float] | int | None:
    """What ``data_consistency`` does with a prompt.

    Returns:
        the linear ops (blur, down-up resampling, in prompt order) and the stated noise variance, for prompts of
        those ops and denoise; the JPEG quality, for a prompt that is one dejpeg op; None (nothing to do) for
        blind prompts, ops without a value, JPEG with other ops, and denoise alone.
    """
    with warnings.catch_warnings():  # the pipeline has warned about the prompt already
        warnings.simplefilter("ignore", PromptWarning)
        parsed = parse(restoration_prompt)
    if parsed.blind or not parsed.ops or any(op.value is None for op in parsed.ops):
        return None
    kinds = [op.kind for op in parsed.ops]
    if "dejpeg" in kinds:
        return int(parsed.ops[0].value) if kinds == ["dejpeg"] else None
    linear = [op for op in parsed.ops if op.kind == "deblur" or (op.kind == "upsample" and op.value > 1.0)]
    if not linear:
        return None
    noise = sum(float(op.value) ** 2 for op in parsed.ops if op.kind == "denoise")
    return linear, noise


def _forward(image: torch.Tensor, ops: Sequence[RestorationOp]) -> torch.Tensor:
    for op in ops:
        value = float(op.value)
        if op.kind == "deblur":
            image = gaussian_blur(image, value)
        else:
            image = resize_down_up(image, value, clamp=False)
    return image


def _adjoint(residual: torch.Tensor, ops: Sequence[RestorationOp]) -> torch.Tensor:
    """Aᵀ of ``_forward``: the ops' adjoints in reverse order (down-up resampling's by autograd)."""
    for op in reversed(ops):
        value = float(op.value)
        if op.kind == "deblur":
            residual = gaussian_blur_adjoint(residual, value)
        else:
            probe = torch.zeros_like(residual, requires_grad=True)
            with torch.enable_grad():
                down_up = resize_down_up(probe, value, clamp=False)
                (residual,) = torch.autograd.grad(down_up, probe, grad_outputs=residual)
    return residual


def data_consistency(
    restored: torch.Tensor,
    degraded: torch.Tensor,
    restoration_prompt: str,
    prior_sigma: float = 0.03,
    iterations: int = 30,
    tolerance: float = 1e-6,
) -> torch.Tensor:
    """Make one restored image agree with the degradation its prompt states (module docstring): the linear
    solve for blur and resampling, ``jpeg_consistency`` for a JPEG prompt.

    Args:
        restored: x̂, (1, 3, H, W) in [0, 1].
        degraded: y, (1, 3, H, W) in [0, 1], the same size.
        restoration_prompt: the c_r it was restored with.
        prior_sigma: σ_e, the restorer's expected error (RMS, [0, 1] units); smaller trusts x̂ more.
        iterations: the most conjugate-gradient steps.
        tolerance: stop when the residual norm falls below this fraction of the right-hand side's.

    Returns:
        (1, 3, H, W) in [0, 1]; ``restored`` itself where nothing applies (see ``consistency_plan``).
    """
    if restored.shape != degraded.shape:
        raise ValueError(f"restored {tuple(restored.shape)} and degraded {tuple(degraded.shape)} differ")
    if prior_sigma <= 0:
        raise ValueError(f"prior_sigma must be > 0, got {prior_sigma}")
    plan = consistency_plan(restoration_prompt)
    if plan is None:
        return restored
    if isinstance(plan, int):
        return jpeg_consistency(restored, degraded, plan)
    ops, noise_variance = plan
    lam = (noise_variance + QUANTIZATION_VARIANCE) / prior_sigma**2
    x_hat = restored.detach().float()
    y = degraded.detach().float()

    def normal(x: torch.Tensor) -> torch.Tensor:
        return _adjoint(_forward(x, ops), ops) + lam * x

    x = x_hat.clone()
    b = _adjoint(y, ops) + lam * x_hat
    r = b - normal(x)
    p = r.clone()
    rs = float((r * r).sum())
    stop = tolerance**2 * float((b * b).sum())
    for _ in range(iterations):
        if rs <= stop:
            break
        q = normal(p)
        alpha = rs / float((p * q).sum())
        x = x + alpha * p
        r = r - alpha * q
        rs_new = float((r * r).sum())
        p = r + (rs_new / rs) * p
        rs = rs_new
    if not math.isfinite(rs):
        raise FloatingPointError("data consistency diverged; use a larger prior_sigma")
    return x.clamp(0, 1).to(restored.dtype)


_RGB_TO_YCBCR = (  # JFIF (ITU-R BT.601 full range), as libjpeg's jccolor.c
    (0.299, 0.587, 0.114), (-0.168735892, -0.331264108, 0.5), (0.5, -0.418687589, -0.081312411)
)


def _dct_matrix() -> torch.Tensor:
    """The orthonormal 8-point DCT-II; JPEG's 2-D FDCT of a block B is D B Dᵀ."""
    n = torch.arange(8, dtype=torch.float64)
    matrix = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return matrix


def _blocks(plane: torch.Tensor) -> torch.Tensor:
    """(H, W) with H, W multiples of 8 -> (H/8, W/8, 8, 8)."""
    height, width = plane.shape
    return plane.reshape(height // 8, 8, width // 8, 8).permute(0, 2, 1, 3)


def _unblocks(blocks: torch.Tensor) -> torch.Tensor:
    rows, cols = blocks.shape[:2]
    return blocks.permute(0, 2, 1, 3).reshape(rows * 8, cols * 8)


def _project_plane(plane: torch.Tensor, observed: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The change that moves ``plane``'s DCT coefficients into the quantisation bins ``observed``'s lie in."""
    dct = _dct_matrix()
    coefficients = dct @ _blocks(plane - 128) @ dct.T
    bins = torch.round((dct @ _blocks(observed - 128) @ dct.T) / table)
    clamped = torch.minimum(torch.maximum(coefficients, (bins - 0.5) * table), (bins + 0.5) * table)
    return _unblocks(dct.T @ (clamped - coefficients) @ dct)


def jpeg_consistency(restored: torch.Tensor, degraded: torch.Tensor, quality: int) -> torch.Tensor:
    """Project a restored image onto the set of images whose JPEG at ``quality`` is the degraded one.

    The degraded image's luma and 2×2-averaged chroma (4:2:0, as libjpeg writes by default) give each 8×8 DCT
    coefficient's quantisation bin; the restored image's coefficients are clamped into those bins (the
    quantisation constraint set of Zakhor 1992), luma at full resolution and chroma on the 2×2-average grid,
    the chroma change spread back over each 2×2 cell. The true image lies in the set, and the set is convex,
    so the projection moves no image further from it. Partial blocks at the right and bottom edges are
    padded by repeating the last row and column, as libjpeg does.

    Args:
        restored: (1, 3, H, W) in [0, 1].
        degraded: (1, 3, H, W) in [0, 1], the decoded JPEG.
        quality: the libjpeg quality it was written at, 1-100.

    Returns:
        (1, 3, H, W) in [0, 1].
    """
    if restored.shape != degraded.shape or restored.shape[0] != 1:
        raise ValueError(
            f"restored {tuple(restored.shape)} and degraded {tuple(degraded.shape)} must be one (1, 3, H, W) pair"
        )
    device, dtype = restored.device, restored.dtype
    restored, degraded = restored.detach().cpu(), degraded.detach().cpu()  # float64 work, on any device's output
    height, width = restored.shape[-2:]
    pad_h, pad_w = (-height) % 16, (-width) % 16
    to_ycbcr = torch.tensor(_RGB_TO_YCBCR, dtype=torch.float64)
    luma_table = torch.from_numpy(libjpeg_table(int(quality)))
    chroma_table = torch.from_numpy(libjpeg_table(int(quality), chroma=True))

    def ycbcr(image: torch.Tensor) -> torch.Tensor:
        image = torch.nn.functional.pad(image.double() * 255, (0, pad_w, 0, pad_h), mode="replicate")[0]
        out = torch.einsum("ij,jhw->ihw", to_ycbcr, image)
        out[1:] += 128
        return out

    ours, theirs = ycbcr(restored), ycbcr(degraded)
    ours[0] += _project_plane(ours[0], theirs[0], luma_table)
    average = torch.nn.AvgPool2d(2)
    for channel in (1, 2):
        small, observed = average(ours[channel][None])[0], average(theirs[channel][None])[0]
        change = _project_plane(small, observed, chroma_table)
        ours[channel] += change.repeat_interleave(2, 0).repeat_interleave(2, 1)
    ours[1:] -= 128
    rgb = torch.einsum("ij,jhw->ihw", torch.linalg.inv(to_ycbcr), ours)[:, :height, :width]
    return (rgb / 255).clamp(0, 1)[None].to(device=device, dtype=dtype)
