"""Textbook inverses of the restoration ops, on (H, W, 3) float64 arrays in [0, 1] (scikit-image).

Each takes the op's value, or None when the prompt names only the op, and then estimates or assumes one:

* ``undo_blur``: Richardson–Lucy deconvolution with the named Gaussian PSF (σ 1.0 when unnamed), 10 iterations,
  on a reflect-padded image so that the deconvolution sees no dark border;
* ``undo_downsample``: area-downsample by f, then Lanczos back (re-sampling the band-limited content cleanly);
  nothing when f is unnamed;
* ``undo_noise``: non-local means with the named σ (h = 0.8·σ, 5×5 patches, 13×13 search), or σ from
  scikit-image's wavelet ``estimate_sigma``; nothing below σ 0.01;
* ``undo_jpeg``: total-variation smoothing, weight 0.08·(100 − q)/70 (stronger for lower quality; q 50 unnamed).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from spire_ir.ops.image import gaussian_kernel1d

__all__ = ["resample", "undo_blur", "undo_downsample", "undo_jpeg", "undo_noise"]


def resample(array: np.ndarray, factor: float, method: int) -> np.ndarray:
    """Area-downsample (H, W, 3) in [0, 1] by ``factor``, then resize back with PIL ``method``."""
    height, width = array.shape[:2]
    small = (max(1, round(width / factor)), max(1, round(height / factor)))
    image = Image.fromarray(np.clip(array * 255, 0, 255).round().astype(np.uint8))
    return np.asarray(image.resize(small, Image.BOX).resize((width, height), method), dtype=np.float64) / 255.0


def undo_blur(array: np.ndarray, sigma: float | None) -> np.ndarray:
    from skimage.restoration import richardson_lucy

    kernel = gaussian_kernel1d(sigma if sigma is not None else 1.0, dtype=torch.float64).numpy()
    psf = np.outer(kernel, kernel)
    pad = 2 * len(kernel)
    padded = np.pad(array, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    restored = [richardson_lucy(padded[..., c], psf, num_iter=10, clip=True) for c in range(3)]
    return np.stack(restored, axis=-1)[pad:-pad, pad:-pad]


def undo_downsample(array: np.ndarray, factor: float | None) -> np.ndarray:
    return resample(array, factor, Image.LANCZOS) if factor else array


def undo_noise(array: np.ndarray, sigma: float | None) -> np.ndarray:
    from skimage.restoration import denoise_nl_means, estimate_sigma

    if sigma is None:
        sigma = float(estimate_sigma(array, channel_axis=-1, average_sigmas=True))
    if sigma <= 0.01:
        return array
    return denoise_nl_means(
        array, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=-1
    )


def undo_jpeg(array: np.ndarray, quality: float | None) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    weight = 0.08 * (100.0 - (quality if quality is not None else 50.0)) / 70.0
    return denoise_tv_chambolle(array, weight=weight, channel_axis=-1) if weight > 0 else array
