"""Degradation operations as pure functions with explicit parameters.

Every function takes and returns ``(B, 3, H, W)`` float tensors, RGB, in ``[0, 1]``, applies *one* set of
parameters to the whole batch, and draws randomness only from the ``generator`` it is given. Sampling
parameters is done elsewhere (``parameterized.py``, ``realesrgan.py``); these functions only apply them.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "JPEG_CHROMA_TABLE",
    "JPEG_LUMA_TABLE",
    "add_gaussian_noise",
    "add_poisson_noise",
    "encode_jpeg",
    "estimate_jpeg_quality",
    "filter2d",
    "gaussian_blur",
    "gaussian_blur_adjoint",
    "gaussian_kernel1d",
    "jpeg",
    "libjpeg_table",
    "resize",
    "resize_down_up",
    "rgb_to_gray",
    "usm_sharpen",
]

# The JPEG Annex K luminance quantisation table, natural (row-major) order.
JPEG_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
JPEG_CHROMA_TABLE = (  # ITU-T T.81 Annex K.2, as JPEG_LUMA_TABLE (K.1): row-major, quality 50
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
) + ((99,) * 8,) * 4


def _check_image(image: torch.Tensor, name: str = "image") -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{name} must be a (B, 3, H, W) tensor in [0, 1], got {shape}")


def _pad(image: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Reflect padding, or replicate where the image is too small for reflection."""
    mode = "reflect" if pad_h < image.shape[-2] and pad_w < image.shape[-1] else "replicate"
    return F.pad(image, (pad_w, pad_w, pad_h, pad_h), mode=mode)


def gaussian_kernel1d(sigma: float, radius: int | None = None, dtype=torch.float32) -> torch.Tensor:
    """A sampled, normalised 1-D Gaussian of length 2·radius+1 (radius defaults to ceil(3σ)).

    Returns:
        (2·radius+1,) tensor summing to 1.
    """
    if sigma <= 0:
        raise ValueError(f"Gaussian sigma must be > 0, got {sigma}")
    radius = max(1, math.ceil(3.0 * sigma)) if radius is None else radius
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian blur (separable, reflect padding).

    Args:
        image: (B, 3, H, W) in [0, 1].
        sigma: standard deviation in pixels, > 0.
    """
    _check_image(image)
    return _separable(image, gaussian_kernel1d(sigma, dtype=image.dtype).to(image.device))


def filter2d(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate each channel with a square kernel, reflect padding (BasicSR ``filter2D`` semantics).

    Large kernels use FFT convolution, which matches the direct form to float precision and is ~20x faster for
    21x21 kernels on 512² images.

    Args:
        image: (B, C, H, W).
        kernel: (k, k) shared, or (B, k, k) per sample; k odd.
    """
    if kernel.dim() == 2:
        kernel = kernel.unsqueeze(0)
    if kernel.dim() != 3 or kernel.shape[-1] != kernel.shape[-2] or kernel.shape[-1] % 2 == 0:
        raise ValueError(f"kernel must be (k, k) or (B, k, k) with k odd, got {tuple(kernel.shape)}")
    if kernel.shape[0] not in (1, image.shape[0]):
        raise ValueError(f"{kernel.shape[0]} kernels for a batch of {image.shape[0]}")
    kernel = kernel.to(image)
    batch, channels, height, width = image.shape
    size = kernel.shape[-1]
    radius = size // 2
    padded = _pad(image, radius, radius)
    if size <= 7:
        weight = kernel.unsqueeze(1).repeat_interleave(channels, dim=0)
        if kernel.shape[0] == 1:
            return F.conv2d(padded, weight, groups=channels)
        out = F.conv2d(
            padded.reshape(1, batch * channels, *padded.shape[-2:]), weight, groups=batch * channels
        )
        return out.view(batch, channels, height, width)
    # FFT path: circular convolution with the flipped kernel; the valid part starts at offset size - 1.
    full_h, full_w = _fast_fft_size(padded.shape[-2]), _fast_fft_size(padded.shape[-1])
    flipped = torch.flip(kernel, dims=(-2, -1))
    spectrum = torch.fft.rfft2(padded, s=(full_h, full_w))
    kernel_spectrum = torch.fft.rfft2(flipped, s=(full_h, full_w)).unsqueeze(1)
    out = torch.fft.irfft2(spectrum * kernel_spectrum, s=(full_h, full_w))
    return out[..., size - 1 : size - 1 + height, size - 1 : size - 1 + width].contiguous()


def resize(
    image: torch.Tensor, size: tuple[int, int], mode: str = "bicubic", antialias: bool = False
) -> torch.Tensor:
    """Resize to ``size`` = (H, W) with "area", "bilinear", "bicubic" or "nearest" interpolation."""
    _check_image(image)
    height, width = max(1, int(size[0])), max(1, int(size[1]))
    if mode == "area":
        return F.interpolate(image, size=(height, width), mode="area")
    if mode == "nearest":
        return F.interpolate(image, size=(height, width), mode="nearest")
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"unknown resize mode {mode!r}; use area, bilinear, bicubic or nearest")
    return F.interpolate(image, size=(height, width), mode=mode, align_corners=False, antialias=antialias)


def resize_down_up(image: torch.Tensor, factor: float, clamp: bool = True) -> torch.Tensor:
    """Downsample by ``factor`` (antialiased bicubic), then bicubic back to the input size.

    This is the paper's "downsample" stage; its prompt says "Upsample to {factor}". The output keeps the input
    size and loses the frequencies above 1/factor of the Nyquist rate.

    Args:
        image: (B, 3, H, W) in [0, 1].
        factor: >= 1.
        clamp: clamp the result to [0, 1] (off: the linear map, for data consistency's solve).
    """
    _check_image(image)
    if factor < 1:
        raise ValueError(f"down-up factor must be >= 1, got {factor}")
    height, width = image.shape[-2:]
    small = (max(1, round(height / factor)), max(1, round(width / factor)))
    down = resize(image, small, "bicubic", antialias=True)
    up = resize(down, (height, width), "bicubic")
    return up.clamp_(0, 1) if clamp else up


def rgb_to_gray(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) with weights (0.2989, 0.587, 0.114) (as torchvision / BasicSR)."""
    weights = torch.tensor([0.2989, 0.587, 0.114], dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


def add_gaussian_noise(
    image: torch.Tensor, sigma: float, generator: torch.Generator, gray: bool = False, clip: bool = True
) -> torch.Tensor:
    """Add white Gaussian noise of standard deviation ``sigma`` ([0, 1] intensity units).

    Args:
        image: (B, 3, H, W) in [0, 1].
        sigma: noise std on the [0, 1] scale (0.05 ≈ 12.75/255).
        generator: the only source of randomness.
        gray: one noise field per image shared by the three channels (luminance noise).
        clip: clamp the result to [0, 1].
    """
    _check_image(image)
    batch, _, height, width = image.shape
    shape = (batch, 1 if gray else 3, height, width)
    noise = torch.randn(shape, generator=generator, dtype=image.dtype, device=image.device) * sigma
    out = image + noise
    return out.clamp_(0, 1) if clip else out


def add_poisson_noise(
    image: torch.Tensor, scale: float, generator: torch.Generator, gray: bool = False, clip: bool = True
) -> torch.Tensor:
    """Poisson (shot) noise as in Real-ESRGAN: the photon count is set by the number of distinct 8-bit levels.

    Per image: quantise to 8 bit, count its distinct levels n, take vals = 2^ceil(log2 n), draw
    Poisson(img·vals)/vals, and add ``scale`` times the difference to the unquantised image.

    Args:
        image: (B, 3, H, W) in [0, 1].
        scale: noise strength (Real-ESRGAN draws it from U(0.05, 3)).
        generator: the only source of randomness.
        gray: compute the noise on the luminance and apply it to all channels.
    """
    _check_image(image)
    source = rgb_to_gray(image) if gray else image
    quantised = source.clamp(0, 1).mul(255).round()
    # distinct 8-bit levels per image, by bincount (O(N), unlike torch.unique)
    levels = torch.stack(
        [torch.bincount(q.flatten().long(), minlength=256).count_nonzero() for q in quantised]
    )
    vals = torch.pow(2.0, torch.ceil(torch.log2(levels.to(image.dtype).clamp(min=2)))).view(-1, 1, 1, 1)
    quantised = quantised / 255.0
    noisy = torch.poisson(quantised * vals, generator=generator) / vals
    out = image + (noisy - quantised) * scale
    return out.clamp_(0, 1) if clip else out


def encode_jpeg(image: torch.Tensor, quality: int) -> list[bytes]:
    """JPEG-encode each image of a batch with libjpeg (Pillow), 4:2:0 chroma. Returns one byte string each."""
    _check_image(image)
    quality = int(quality)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be an integer in [1, 100], got {quality}")
    arrays = image.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality, subsampling=2)
        out.append(buffer.getvalue())
    return out


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Compress with JPEG at ``quality`` and decode (real libjpeg round trip; the output is 8-bit quantised).

    Args:
        image: (B, 3, H, W) in [0, 1]; clamped before encoding.
        quality: libjpeg quality, integer in [1, 100].
    """
    decoded = []
    for data in encode_jpeg(image, quality):
        with Image.open(io.BytesIO(data)) as pil:
            decoded.append(torch.from_numpy(np.asarray(pil.convert("RGB")).copy()))
    stacked = torch.stack(decoded).permute(0, 3, 1, 2).to(image.dtype).div_(255.0)
    return stacked.to(image.device)


def libjpeg_table(quality: int, chroma: bool = False) -> np.ndarray:
    """libjpeg's (8, 8) quantisation table for ``quality`` in [1, 100] (Annex K scaled), row-major, float64."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality  # integer, as jcparam.c
    base = JPEG_CHROMA_TABLE if chroma else JPEG_LUMA_TABLE
    table = np.floor((np.asarray(base, dtype=np.float64) * scale + 50) / 100)
    return np.clip(table, 1, 255)


def estimate_jpeg_quality(data: bytes) -> int:
    """Recover the libjpeg quality a JPEG was written with, from its luminance quantisation table.

    The table is compared (as a multiset, so the coefficient order does not matter) with the libjpeg scaling
    of the Annex K table for every quality 1-100; the closest match wins.
    """
    with Image.open(io.BytesIO(data)) as pil:
        tables = getattr(pil, "quantization", None)
        if not tables:
            raise ValueError("not a JPEG with quantisation tables")
        luma = np.sort(np.asarray(tables[0], dtype=np.float64))
    errors = [np.abs(np.sort(libjpeg_table(q).ravel()) - luma).sum() for q in range(1, 101)]
    return int(np.argmin(errors)) + 1


def usm_sharpen(
    image: torch.Tensor, radius: int = 50, threshold: float = 10.0, weight: float = 0.5
) -> torch.Tensor:
    """Unsharp masking as Real-ESRGAN's ``USMSharp`` (51-tap Gaussian with OpenCV's automatic sigma).

    Args:
        image: (B, 3, H, W) in [0, 1].
        radius: the kernel is 2·radius+1 wide (odd sizes are kept as they are, as upstream).
        threshold: residuals below threshold/255 are not sharpened.
        weight: amount of the residual added back.
    """
    size = radius * 2 + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV's getGaussianKernel(size, 0)
    blur = _separable(image, gaussian_kernel1d(sigma, radius=size // 2, dtype=image.dtype).to(image.device))
    residual = image - blur
    mask = (residual.abs() * 255 > threshold).to(image.dtype)
    soft = _separable(mask, gaussian_kernel1d(sigma, radius=size // 2, dtype=image.dtype).to(image.device))
    sharp = (image + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * image


def _separable(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable correlation with a symmetric 1-D kernel along W then H, reflect padding.

    Written as shift-and-add: on CPU this is 3-5x faster than a grouped ``conv2d`` with 3 channels, and it gives
    the same numbers.
    """
    radius = kernel.numel() // 2
    return _valid_separable(_pad(image, radius, radius), kernel.tolist())


def _valid_separable(padded: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """The valid part of a separable correlation with ``taps`` along W then H: 2·radius smaller on each axis."""
    height, width = padded.shape[-2] - len(taps) + 1, padded.shape[-1] - len(taps) + 1
    rows = padded[..., :, 0:width] * taps[0]
    for offset in range(1, len(taps)):
        rows.add_(padded[..., :, offset : offset + width], alpha=taps[offset])
    out = rows[..., 0:height, :] * taps[0]
    for offset in range(1, len(taps)):
        out.add_(rows[..., offset : offset + height, :], alpha=taps[offset])
    return out


def gaussian_blur_adjoint(residual: torch.Tensor, sigma: float) -> torch.Tensor:
    """The adjoint (transpose) of ``gaussian_blur``, for least-squares solves with it.

    ``gaussian_blur`` is reflect padding, then a valid correlation with a symmetric kernel. The correlation's
    adjoint is a valid correlation of the residual zero-padded by twice the radius; the padding's adjoint (folding
    the margins back) comes from autograd of the padding alone. Autograd through the whole blur gives the same
    numbers but is several times slower on CPU (each shifted slice allocates a full-size gradient).

    Args:
        residual: (B, C, H, W), any real values.
        sigma: the blur's σ in pixels, > 0.
    """
    taps = gaussian_kernel1d(sigma, dtype=residual.dtype).tolist()
    radius = len(taps) // 2
    grad = _valid_separable(F.pad(residual, (2 * radius,) * 4), taps)
    probe = torch.zeros_like(residual, requires_grad=True)
    with torch.enable_grad():
        (folded,) = torch.autograd.grad(_pad(probe, radius, radius), probe, grad_outputs=grad)
    return folded


def _fast_fft_size(n: int) -> int:
    """The smallest 2·3·5-smooth integer >= n (fast FFT lengths)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1
