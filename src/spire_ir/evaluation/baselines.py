"""Baseline restorers for ``spire bench run``: identity, bicubic and a prompt-driven classical pipeline.

Every method maps (y (1, 3, H, W) in [0, 1], c_s, c_r) to a restored image of the same size.

``classical`` undoes the ops named in c_r in reverse order with textbook tools (scikit-image):

* "Dejpeg with quality q": total-variation smoothing, weight 0.08·(100 − q)/70 (stronger for lower quality);
* "Denoise with sigma s": non-local means with the named σ (h = 0.8·σ, 5×5 patches, 13×13 search);
* "Deblur with sigma s": Richardson–Lucy deconvolution with the named Gaussian PSF, 10 iterations, on a
  reflect-padded image;
* "Upsample to f": area-downsample by f, then Lanczos back (re-sampling the band-limited content cleanly).

Without a value (or for "Remove all degradation") it estimates what it can: the noise σ with scikit-image's
wavelet-based ``estimate_sigma`` (denoising only above 0.01), JPEG quality 50, blur σ 1.0 and no resampling.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from spire_ir import prompts
from spire_ir.ops.image import gaussian_kernel1d
from spire_ir.utils.images import tensor_to_uint8

__all__ = ["METHODS", "bicubic", "classical", "identity"]


def identity(y: torch.Tensor, c_s: str = "", c_r: str = "") -> torch.Tensor:
    """The degraded input itself."""
    return y


def _resample(array: np.ndarray, factor: float, method) -> np.ndarray:
    height, width = array.shape[:2]
    small = (max(1, round(width / factor)), max(1, round(height / factor)))
    image = Image.fromarray(np.clip(array * 255, 0, 255).round().astype(np.uint8))
    return (
        np.asarray(image.resize(small, Image.BOX).resize((width, height), method), dtype=np.float64) / 255.0
    )


def bicubic(y: torch.Tensor, c_s: str = "", c_r: str = "") -> torch.Tensor:
    """For "Upsample to f": area-downsample by f and bicubic back; otherwise the input unchanged."""
    parsed = prompts.parse(c_r) if c_r else prompts.RestorationPrompt()
    factors = [op.value for op in parsed.ops if op.kind == "upsample" and op.value]
    if not factors:
        return y
    array = tensor_to_uint8(y).astype(np.float64) / 255.0
    out = _resample(array, factors[0], Image.BICUBIC)
    return torch.from_numpy(out).permute(2, 0, 1).unsqueeze(0).float()


def classical(y: torch.Tensor, c_s: str = "", c_r: str = "") -> torch.Tensor:
    """Undo the ops c_r names, in reverse order (see the module docstring)."""
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, estimate_sigma, richardson_lucy

    with np.errstate(all="ignore"):
        parsed = prompts.parse(c_r) if c_r else prompts.RestorationPrompt(blind=True)
    array = tensor_to_uint8(y).astype(np.float64) / 255.0
    ops = list(parsed.ops)
    if parsed.blind or not ops:
        ops = [prompts.RestorationOp("denoise")]  # blind: estimate the noise and remove it
    for op in reversed(ops):
        if op.kind == "dejpeg":
            quality = op.value if op.value is not None else 50.0
            weight = 0.08 * (100.0 - quality) / 70.0
            if weight > 0:
                array = denoise_tv_chambolle(array, weight=weight, channel_axis=-1)
        elif op.kind == "denoise":
            sigma = (
                op.value
                if op.value is not None
                else float(estimate_sigma(array, channel_axis=-1, average_sigmas=True))
            )
            if sigma > 0.01:
                array = denoise_nl_means(array, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                                         fast_mode=True, channel_axis=-1)  # fmt: skip
        elif op.kind == "deblur":
            sigma = op.value if op.value is not None else 1.0
            kernel = gaussian_kernel1d(sigma, dtype=torch.float64).numpy()
            psf = np.outer(kernel, kernel)
            pad = 2 * len(kernel)  # reflect-pad so the deconvolution sees no artificial dark border
            padded = np.pad(array, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
            restored = [richardson_lucy(padded[..., c], psf, num_iter=10, clip=True) for c in range(3)]
            array = np.stack(restored, axis=-1)[pad:-pad, pad:-pad]
        elif op.kind == "upsample" and op.value:
            array = _resample(array, op.value, Image.LANCZOS)
        array = np.clip(array, 0, 1)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float()


METHODS = {"identity": identity, "bicubic": bicubic, "classical": classical}
