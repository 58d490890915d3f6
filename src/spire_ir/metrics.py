"""Full-reference metrics with explicit conventions: PSNR and SSIM, one score per image.

Inputs are (B, 3, H, W) float RGB in [0, 1] (checked); conventions are arguments and are returned with every
metric's metadata so that results files can record them:

* ``crop_border``: pixels removed from each side before scoring (SR papers crop the scale factor);
* ``y_channel``: score the luma of ITU-R BT.601 YCbCr as BasicSR/MATLAB do (Y = 16 + 65.481 R + 128.553 G +
  24.966 B on the 0-255 scale, from RGB), instead of RGB;
* data range 1.0.

SSIM follows Wang et al. 2004: 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, population statistics, valid
region only; on RGB the per-channel maps are averaged. Both match scikit-image's ``peak_signal_noise_ratio`` and
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`` (golden tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = ["Metric", "create_metric", "list_metrics", "psnr", "rgb_to_y", "ssim"]


def _check(image: torch.Tensor, name: str) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(
            f"{name} must be a (B, 3, H, W) RGB tensor in [0, 1], got {getattr(image, 'shape', type(image))}"
        )
    low, high = image.min().item(), image.max().item()
    if low < 0 or high > 1:
        raise ValueError(
            f"{name} values must lie in [0, 1], got [{low:.3f}, {high:.3f}]; divide 8-bit images by 255 first"
        )


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) BT.601 luma in [16/255, 235/255] (BasicSR's ``rgb2ycbcr``)."""
    weights = torch.tensor([65.481, 128.553, 24.966], dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True) / 255.0 + 16.0 / 255.0


def _prepare(
    x: torch.Tensor, y: torch.Tensor, crop_border: int, y_channel: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    _check(x, "image")
    _check(y, "reference")
    if x.shape != y.shape:
        raise ValueError(f"image {tuple(x.shape)} and reference {tuple(y.shape)} differ in shape")
    x, y = x.double(), y.double()
    if crop_border:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
        y = y[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        x, y = rgb_to_y(x), rgb_to_y(y)
    return x, y


def psnr(
    image: torch.Tensor, reference: torch.Tensor, crop_border: int = 0, y_channel: bool = False
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, data range 1. Returns (B,) float64 (inf for identical images)."""
    x, y = _prepare(image, reference, crop_border, y_channel)
    mse = (x - y).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(1.0 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    axis = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(axis**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(
    image: torch.Tensor, reference: torch.Tensor, crop_border: int = 0, y_channel: bool = False
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), data range 1. Returns (B,) float64 in [-1, 1]."""
    x, y = _prepare(image, reference, crop_border, y_channel)
    channels = x.shape[1]
    window = _gaussian_window().to(x).expand(channels, 1, 11, 11)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    sigma_x = blur(x * x) - mu_x**2
    sigma_y = blur(y * y) - mu_y**2
    sigma_xy = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    )
    # the valid region: exactly the part of skimage's full-size map it keeps after cropping (11 - 1) / 2 pixels
    return ssim_map.mean(dim=(1, 2, 3))


@dataclass(frozen=True)
class Metric:
    """A metric with its metadata (pyiqa-style): full-reference or not, which direction is better, conventions."""

    name: str
    function: Callable[..., torch.Tensor]
    lower_better: bool
    full_reference: bool
    conventions: dict = field(default_factory=dict)

    def __call__(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Scores per image, (B,)."""
        if self.full_reference and reference is None:
            raise ValueError(f"{self.name} is a full-reference metric: pass the reference image")
        return self.function(image, reference, **self.conventions)

    def describe(self) -> dict:
        """Metadata for results files."""
        return {"name": self.name, "lower_better": self.lower_better, "full_reference": self.full_reference,
                "input": "RGB [0, 1]", "data_range": 1.0, **self.conventions}  # fmt: skip


_REGISTRY: dict[str, tuple[Callable[..., torch.Tensor], bool, bool]] = {
    "psnr": (psnr, False, True),
    "ssim": (ssim, False, True),
}


def list_metrics() -> list[str]:
    """Names accepted by ``create_metric``."""
    return sorted(_REGISTRY)


def create_metric(name: str, crop_border: int = 0, y_channel: bool = False) -> Metric:
    """A metric by name with explicit conventions, e.g. ``create_metric("psnr", crop_border=4, y_channel=True)``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(list_metrics())}")
    function, lower_better, full_reference = _REGISTRY[name]
    return Metric(
        name, function, lower_better, full_reference, {"crop_border": crop_border, "y_channel": y_channel}
    )
