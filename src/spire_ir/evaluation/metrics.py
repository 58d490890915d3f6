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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import gamma as gamma_fn

__all__ = [
    "METRICS",
    "Metric",
    "MetricSettings",
    "MetricSpec",
    "MetricUnavailable",
    "create_metric", "list_metrics", "niqe", "psnr", "rgb_to_y", "ssim"]


class MetricUnavailable(RuntimeError):
    """A metric that needs pretrained weights which are not available here; the message says what it needs."""


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

    needs_caption: bool = False
    scale: str = ""  # the unit and range of a score, as results files record it

    def __call__(
        self, image: torch.Tensor, reference: torch.Tensor | None = None, captions: list[str] | None = None
    ) -> torch.Tensor:
        """Scores per image, (B,). ``captions`` (one per image) for text-referenced metrics (CLIP-T)."""
        if self.full_reference and reference is None:
            raise ValueError(f"{self.name} is a full-reference metric: pass the reference image")
        if self.needs_caption:
            if captions is None:
                raise ValueError(f"{self.name} compares images with captions: pass captions=[...]")
            return self.function(image, captions=captions, **self.conventions)
        return self.function(image, reference, **self.conventions)

    def describe(self) -> dict:
        """Metadata for results files."""
        return {"name": self.name, "lower_better": self.lower_better, "full_reference": self.full_reference,
                "input": "RGB [0, 1]", "data_range": 1.0, "scale": self.scale, **self.conventions}  # fmt: skip


# ------------------------------------------------------------------------------------------------ NIQE


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with a = -0.5 (MATLAB's imresize)."""
    ax = np.abs(x)
    return ((1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
            + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))  # fmt: skip


def _matlab_resize_matrix(size_in: int, scale: float) -> np.ndarray:
    """(size_out, size_in) weights of MATLAB's antialiased bicubic resize along one axis (symmetric borders)."""
    size_out = math.ceil(size_in * scale)
    stretch = min(scale, 1.0)  # antialiasing widens the kernel when shrinking
    width = 4.0 / stretch
    out = np.zeros((size_out, size_in))
    for i in range(size_out):
        centre = (i + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of output pixel i + 1
        first = math.floor(centre - width / 2)
        taps = np.arange(first, first + math.ceil(width) + 2)
        weights = stretch * _cubic(stretch * (centre - taps))
        weights /= weights.sum()
        # mirror out-of-range taps back inside (1-based), as MATLAB's 'symmetric' padding
        index = taps - 1
        index = np.where(index < 0, -index - 1, index)
        index = np.where(index >= size_in, 2 * size_in - index - 1, index)
        np.add.at(out[i], index, weights)
    return out


def _aggd(block: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit (moment matching): (shape α, left scale, right scale)."""
    block = block.ravel()
    shapes = np.arange(0.2, 10.001, 0.001)
    ratio = gamma_fn(2 / shapes) ** 2 / (gamma_fn(1 / shapes) * gamma_fn(3 / shapes))
    left = np.sqrt(np.mean(block[block < 0] ** 2))
    right = np.sqrt(np.mean(block[block > 0] ** 2))
    gamma_hat = left / right
    r_hat = np.mean(np.abs(block)) ** 2 / np.mean(block**2)
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = shapes[np.argmin((ratio - r_norm) ** 2)]
    factor = np.sqrt(gamma_fn(1 / alpha) / gamma_fn(3 / alpha))
    return alpha, left * factor, right * factor


def _niqe_features(block: np.ndarray) -> list[float]:
    alpha, left, right = _aggd(block)
    features = [alpha, (left + right) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):  # products of neighbouring MSCN coefficients
        alpha, left, right = _aggd(block * np.roll(block, shift, axis=(0, 1)))
        mean = (right - left) * gamma_fn(2 / alpha) / gamma_fn(1 / alpha)
        features += [alpha, mean, left, right]
    return features


@lru_cache
def _niqe_params() -> dict[str, np.ndarray]:
    from importlib.resources import files

    with np.load(str(files("spire_ir") / "assets" / "niqe_pris_params.npz")) as data:
        return {k: data[k] for k in data}


def _niqe_gray(image: np.ndarray, block: int = 96) -> float:
    """NIQE of one gray image on the 0-255 scale (Mittal et al. 2013, the published pristine model)."""
    from scipy.ndimage import convolve

    params = _niqe_params()
    window = params["gaussian_window"]
    rows, cols = image.shape[0] // block, image.shape[1] // block
    if rows * cols < 2:
        raise ValueError(
            f"NIQE needs at least two {block}×{block} blocks (e.g. {2 * block}×{block} pixels), "
            f"got {image.shape[1]}×{image.shape[0]}"
        )
    image = image[: rows * block, : cols * block]
    per_scale = []
    for scale in (1, 2):
        mu = convolve(image, window, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(image * image, window, mode="nearest") - mu * mu))
        mscn = (image - mu) / (sigma + 1)
        size = block // scale
        features = [
            _niqe_features(mscn[r * size : (r + 1) * size, c * size : (c + 1) * size])
            for c in range(cols)
            for r in range(rows)
        ]
        per_scale.append(np.array(features))
        if scale == 1:  # MATLAB-style antialiased bicubic half-size image for the second scale
            # computed in float32, as the reference implementation: flat regions are sensitive to the precision
            h, w = image.shape
            rows_m, cols_m = (
                _matlab_resize_matrix(h, 0.5).astype(np.float32),
                _matlab_resize_matrix(w, 0.5).astype(np.float32),
            )
            image = (rows_m @ (image / 255.0).astype(np.float32) @ cols_m.T) * 255.0
    features = np.concatenate(per_scale, axis=1)
    mu_dist = np.nanmean(features, axis=0)
    cov_dist = np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False)
    diff = params["mu_pris_param"] - mu_dist
    inverse = np.linalg.pinv((params["cov_pris_param"] + cov_dist) / 2)
    return float(np.sqrt(np.squeeze(diff @ inverse @ diff.T)))


def niqe(
    image: torch.Tensor, reference: torch.Tensor | None = None, crop_border: int = 0, y_channel: bool = True
) -> torch.Tensor:
    """NIQE (lower is better), no reference. Computed on the BT.601 luma rounded to 8 bit, as the MATLAB code.

    Args:
        image: (B, 3, H, W) RGB in [0, 1], at least 96×96 after cropping.
        reference: ignored (no-reference metric).
        crop_border: pixels removed from each side.
        y_channel: must be True (NIQE's pristine model is for luma).

    Returns:
        (B,) float64.
    """
    _check(image, "image")
    if not y_channel:
        raise ValueError("NIQE is defined on luma; use y_channel=True")
    # float32 luma, rounded to integers, as the reference (MATLAB / BasicSR) implementation does
    luma = rgb_to_y(image.float()) * 255.0
    if crop_border:
        luma = luma[..., crop_border:-crop_border, crop_border:-crop_border]
    # float32 throughout, as the reference implementation: NIQE's AGGD fits on flat blocks are precision-sensitive
    scores = [_niqe_gray(np.round(item[0].cpu().numpy()).astype(np.float32)) for item in luma]
    return torch.tensor(scores, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ CLIP


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _local_path(value: str | None, env: str, folder: bool, message: str) -> str:
    """``value``, else the environment variable ``env``; MetricUnavailable(message) when it does not exist."""
    import os

    path = value or os.environ.get(env)
    if not path or not (os.path.isdir(path) if folder else os.path.isfile(path)):
        raise MetricUnavailable(message)
    return path


def _clip_model_path(clip_model: str | None) -> str:
    return _local_path(
        clip_model, "SPIRE_CLIP_MODEL", folder=True,
        message="clip: needs a local CLIP model folder in transformers format (config.json, weights, tokenizer "
        "files), e.g. openai/clip-vit-large-patch14 saved elsewhere: pass --clip-model PATH or set SPIRE_CLIP_MODEL",
    )  # fmt: skip


@lru_cache(maxsize=2)
def _load_clip(path: str):
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
    return model, AutoTokenizer.from_pretrained(path, local_files_only=True)


def _clip_image_embeds(model, image: torch.Tensor) -> torch.Tensor:
    size = model.config.vision_config.image_size
    height, width = image.shape[-2:]
    scale = size / min(height, width)
    resized = F.interpolate(image.float(), size=(max(size, round(height * scale)), max(size, round(width * scale))),
                            mode="bicubic", antialias=True, align_corners=False)  # fmt: skip
    top, left = (resized.shape[-2] - size) // 2, (resized.shape[-1] - size) // 2
    crop = resized[..., top : top + size, left : left + size].clamp(0, 1)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    embeds = model.get_image_features(pixel_values=(crop - mean) / std)
    embeds = getattr(embeds, "pooler_output", embeds)
    return F.normalize(embeds.float(), dim=-1)


def _clip_text_embeds(model, tokenizer, texts: list[str] | tuple[str, ...]) -> torch.Tensor:
    tokens = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
    text = model.get_text_features(**tokens)
    return F.normalize(getattr(text, "pooler_output", text).float(), dim=-1)


def clip_i(
    image: torch.Tensor, reference: torch.Tensor, clip_model: str | None = None, **_: Any
) -> torch.Tensor:
    """CLIP-I: cosine similarity of CLIP image embeddings of output and reference, (B,) in [-1, 1]."""
    _check(image, "image")
    _check(reference, "reference")
    model, _tok = _load_clip(_clip_model_path(clip_model))
    with torch.no_grad():
        return (_clip_image_embeds(model, image) * _clip_image_embeds(model, reference)).sum(-1).double()


def clip_t(image: torch.Tensor, captions: list[str], clip_model: str | None = None, **_: Any) -> torch.Tensor:
    """CLIP-T: cosine similarity of the image and caption embeddings, (B,) in [-1, 1], the paper's scale (its
    Table 1 reports 0.285-0.308; torchmetrics' CLIP score is 100 × this, clamped at 0)."""
    _check(image, "image")
    model, tokenizer = _load_clip(_clip_model_path(clip_model))
    with torch.no_grad():
        text = _clip_text_embeds(model, tokenizer, captions)
        return (_clip_image_embeds(model, image) * text).sum(-1).double()


# ------------------------------------------------------------------------------------------------ LPIPS

LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


class _AlexFeatures(torch.nn.Module):
    """AlexNet's convolutional trunk in torchvision's layout (``features.{0,3,6,8,10}``), returning the 5 ReLU maps."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.ModuleDict({
            "0": torch.nn.Conv2d(3, 64, 11, stride=4, padding=2),
            "3": torch.nn.Conv2d(64, 192, 5, padding=2),
            "6": torch.nn.Conv2d(192, 384, 3, padding=1),
            "8": torch.nn.Conv2d(384, 256, 3, padding=1),
            "10": torch.nn.Conv2d(256, 256, 3, padding=1),
        })  # fmt: skip

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.features
        r1 = F.relu(f["0"](x))
        r2 = F.relu(f["3"](F.max_pool2d(r1, 3, 2)))
        r3 = F.relu(f["6"](F.max_pool2d(r2, 3, 2)))
        r4 = F.relu(f["8"](r3))
        return [r1, r2, r3, r4, F.relu(f["10"](r4))]


def _lpips_backbone_path(backbone: str | None) -> str:
    return _local_path(
        backbone, "SPIRE_LPIPS_BACKBONE", folder=False,
        message="lpips: needs torchvision's ImageNet AlexNet weights as safetensors (no package ships them): convert "
        "alexnet-owt-7be5be79.pth with spire convert-weights alexnet and pass --lpips-backbone FILE or set "
        "SPIRE_LPIPS_BACKBONE",
    )  # fmt: skip


@lru_cache(maxsize=2)
def _load_lpips(path: str) -> tuple[_AlexFeatures, list[torch.Tensor]]:
    from importlib.resources import files

    from safetensors.torch import load_file

    net = _AlexFeatures()
    net.load_state_dict(load_file(path), strict=True)  # torchvision's "features.N.weight/bias" names
    heads = load_file(str(files("spire_ir") / "assets" / "lpips_alex_v0.1_heads.safetensors"))
    return net.eval().requires_grad_(False), [heads[f"lin{i}.model.1.weight"] for i in range(5)]


def lpips(
    image: torch.Tensor, reference: torch.Tensor, backbone: str | None = None, **_: Any
) -> torch.Tensor:
    """LPIPS v0.1 with AlexNet (Zhang et al. 2018), lower is better, (B,).

    Inputs are mapped to [-1, 1] and normalised with LPIPS's shift/scale; each of the 5 ReLU maps is unit-normalised
    over channels, the squared difference is weighted by the shipped linear heads, averaged over space, summed.
    """
    _check(image, "image")
    _check(reference, "reference")
    net, heads = _load_lpips(_lpips_backbone_path(backbone))
    shift = torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1)
    with torch.no_grad():
        a = net((image.float() * 2 - 1 - shift) / scale)
        b = net((reference.float() * 2 - 1 - shift) / scale)
        total = torch.zeros(image.shape[0])
        for fa, fb, head in zip(a, b, heads, strict=True):
            fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total += F.conv2d((fa - fb) ** 2, head).mean(dim=(1, 2, 3))
    return total.double()


CLIPIQA_PROMPTS = ("Good photo.", "Bad photo.")


def clipiqa(
    image: torch.Tensor, reference: torch.Tensor | None = None, clip_model: str | None = None, **_: Any
) -> torch.Tensor:
    """CLIP-IQA (Wang et al. 2023), zero-shot form: softmax over the antonym prompts "Good photo." / "Bad photo."
    of 100 × cosine similarity; the score is the probability of "good", (B,) in [0, 1] (higher is better).

    The paper's CLIP-IQA+ (learned prompts) needs its fine-tuned prompt weights and is not reproduced.
    """
    _check(image, "image")
    model, tokenizer = _load_clip(_clip_model_path(clip_model))
    with torch.no_grad():
        text = _clip_text_embeds(model, tokenizer, CLIPIQA_PROMPTS)
        logits = 100 * _clip_image_embeds(model, image) @ text.T
        return logits.softmax(dim=-1)[:, 0].double()


def clip_image_features(
    images: torch.Tensor, clip_model: str | None = None, batch_size: int = 16
) -> torch.Tensor:
    """Normalised CLIP image embeddings, (N, D), for set-level metrics (``fd_clip``)."""
    _check(images, "images")
    model, _tok = _load_clip(_clip_model_path(clip_model))
    with torch.no_grad():
        return torch.cat(
            [_clip_image_embeds(model, images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        )


# ------------------------------------------------------------------------------- MUSIQ and MANIQA (pyiqa)

# pyiqa's architectures, with the user's KonIQ-10k checkpoints: the optional extra `pyiqa` (PolyForm Noncommercial)
PYIQA_METRICS = {
    "musiq": "MUSIQ (Ke et al. 2021), KonIQ-10k model, about 0-100",
    "maniqa": "MANIQA (Yang et al. 2022), KonIQ-10k model, about 0-1",
}


def _iqa_weights_path(name: str, folder: str | None) -> str:
    import os

    folder = folder or os.environ.get("SPIRE_IQA_WEIGHTS")
    return _local_path(
        os.path.join(folder, f"{name}.safetensors") if folder else None, "", folder=False,
        message=f"{name}: needs pyiqa's {name} KonIQ-10k checkpoint converted to safetensors as {name}.safetensors "
        f"(spire convert-weights pyiqa CHECKPOINT DIR/{name}.safetensors): pass --iqa-weights DIR or set "
        "SPIRE_IQA_WEIGHTS=DIR; it also needs the optional extra: pip install torch==2.14.1 torchvision==0.29.1 "
        "'spire-ir[pyiqa]' (pyiqa's licence is non-commercial)",
    )  # fmt: skip


@lru_cache(maxsize=2)
def _load_pyiqa(name: str, path: str):
    from unittest import mock

    from safetensors.torch import load_file

    try:
        import pyiqa
        import timm
    except ImportError as error:
        raise MetricUnavailable(
            f"{name}: needs the optional extra pyiqa ({error}): pip install torch==2.14.1 torchvision==0.29.1 "
            "'spire-ir[pyiqa]' (pyiqa's licence is non-commercial)"
        ) from error
    create = timm.create_model
    # MANIQA's constructor asks timm for ImageNet ViT weights (a download) that its own checkpoint replaces whole
    with mock.patch.object(timm, "create_model", lambda *a, **k: create(*a, **{**k, "pretrained": False})):
        metric = pyiqa.create_metric(name, pretrained=False, device="cpu")
    try:
        metric.net.load_state_dict(load_file(path), strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} is not pyiqa's {name} network: {str(error)[:300]}") from error
    return metric.eval()


def _pyiqa_metric(name: str) -> Callable[..., torch.Tensor]:
    def score(image: torch.Tensor, reference: torch.Tensor | None = None, weights: str = "", **_: Any):
        _check(image, "image")
        metric = _load_pyiqa(name, weights)
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)  # MANIQA averages random crops: the same image always gets the same score
            return metric(image.float()).flatten().double()

    score.__name__ = name
    score.__doc__ = f"{PYIQA_METRICS[name]}; higher is better, (B,)."
    return score


def _fid_weights_path(weights: str | None) -> str:
    return _local_path(
        weights, "SPIRE_FID_WEIGHTS", folder=False,
        message="fid: needs the FID Inception weights pt_inception-2015-12-05-6726825d.pth (pytorch-fid's release; "
        "no package ships them) converted to safetensors with spire convert-weights inception: pass "
        "--fid-weights FILE or set SPIRE_FID_WEIGHTS",
    )  # fmt: skip


@lru_cache(maxsize=2)
def _load_inception(path: str):
    from safetensors.torch import load_file

    from spire_ir.evaluation.inception import FIDInceptionV3

    net = FIDInceptionV3()
    state = {k: v for k, v in load_file(path).items() if not k.startswith(("fc.", "AuxLogits."))}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path} is not the FID Inception-v3 in torchvision's layout: {len(missing)} missing tensors "
            f"({', '.join(missing[:3])}...), {len(unexpected)} unexpected ({', '.join(unexpected[:3])}...)"
        )
    return net.eval().requires_grad_(False)


def inception_features(
    images: torch.Tensor, weights: str | None = None, batch_size: int = 32
) -> torch.Tensor:
    """FID's Inception-v3 pool features of (N, 3, H, W) RGB images in [0, 1], (N, 2048) float64.

    ``weights``: the converted safetensors file (else ``$SPIRE_FID_WEIGHTS``); MetricUnavailable when absent.
    """
    _check(images, "images")
    net = _load_inception(_fid_weights_path(weights))
    with torch.no_grad():
        return torch.cat(
            [net(images[i : i + batch_size].float()).double() for i in range(0, len(images), batch_size)]
        )


def frechet_distance(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula), (N, D) and (M, D).

    ||μa − μb||² + tr(Σa + Σb − 2 (Σa Σb)^½); the matrix square root's tiny imaginary part is dropped.
    """
    from scipy import linalg

    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature sets must be (N, D) and (M, D) with the same D, got {a.shape} and {b.shape}"
        )
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a Fréchet distance needs at least two feature vectors per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # singular product: regularise as pytorch-fid does
        offset = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root.real))


# Set-level metrics, computed by `spire bench run` over the merged set (not per image).
SET_METRICS = {
    "fid": "FID: Fréchet distance between Inception-v3 pool features (pt_inception-2015-12-05) of the outputs and "
    "the clean images; pytorch-fid's input convention (bilinear resize to 299, no antialiasing)",
    "fd_clip": "Fréchet distance between CLIP image embeddings of the outputs and the clean images",
}
FID_MIN_IMAGES = 2048


# ------------------------------------------------------------------------------------------------ BRISQUE

BRISQUE_MODEL_DIRS = ("/usr/share/opencv4/quality", "/usr/share/opencv/quality")


def _brisque_files() -> tuple[str, str]:
    """OpenCV's BRISQUE model (LIVE-trained SVR) from Debian's ``opencv-data``."""
    import os

    for folder in (os.environ.get("SPIRE_BRISQUE_MODEL_DIR"), *BRISQUE_MODEL_DIRS):
        if folder and os.path.isfile(os.path.join(folder, "brisque_model_live.yml")):
            return os.path.join(folder, "brisque_model_live.yml"), os.path.join(
                folder, "brisque_range_live.yml"
            )
    raise MetricUnavailable(
        "brisque: needs OpenCV's BRISQUE model files brisque_model_live.yml and brisque_range_live.yml: "
        "apt-get install opencv-data (or set SPIRE_BRISQUE_MODEL_DIR to their folder)"
    )


def _brisque_available() -> None:
    try:
        import cv2

        cv2.quality.QualityBRISQUE_compute  # noqa: B018 - opencv-contrib only
    except (ImportError, AttributeError) as error:
        raise MetricUnavailable(
            "brisque: needs OpenCV's contrib quality module: pip install opencv-contrib-python-headless"
        ) from error
    _brisque_files()


def brisque(
    image: torch.Tensor, reference: torch.Tensor | None = None, crop_border: int = 0, y_channel: bool = False
) -> torch.Tensor:
    """BRISQUE (lower is better), no reference, with OpenCV's LIVE-trained model on 8-bit images.

    Args:
        image: (B, 3, H, W) RGB in [0, 1].

    Returns:
        (B,) float64.
    """
    import cv2

    _check(image, "image")
    model, ranges = _brisque_files()
    scores = []
    for item in image:
        if crop_border:
            item = item[:, crop_border:-crop_border, crop_border:-crop_border]
        bgr = item.flip(0).permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().cpu().numpy()
        scores.append(float(cv2.quality.QualityBRISQUE_compute(bgr, model, ranges)[0]))
    return torch.tensor(scores, dtype=torch.float64)


@dataclass(frozen=True)
class MetricSettings:
    """Where the metrics that need weights find them (each also reads its ``SPIRE_*`` environment variable): one
    object from the command line to ``create_metric`` and ``run_bench``."""

    clip_model: str | None = None  # a local CLIP folder: clip_i, clip_t, clipiqa, fd_clip
    lpips_backbone: str | None = None  # torchvision AlexNet features.* as safetensors: lpips
    fid_weights: str | None = None  # pytorch-fid's Inception as safetensors: fid
    iqa_weights: str | None = None  # a folder of pyiqa checkpoints as safetensors: musiq, maniqa


def _clip_conventions(name: str, settings: MetricSettings) -> dict:
    return {"clip_model": _clip_model_path(settings.clip_model)}


def _lpips_conventions(name: str, settings: MetricSettings) -> dict:
    return {"backbone": _lpips_backbone_path(settings.lpips_backbone)}


def _pyiqa_conventions(name: str, settings: MetricSettings) -> dict:
    path = _iqa_weights_path(name, settings.iqa_weights)
    _load_pyiqa(name, path)  # the extra's absence or a wrong checkpoint is reported now, not per image
    return {"weights": path}


@dataclass(frozen=True)
class MetricSpec:
    """A per-image metric's registry entry.

    Attributes:
        function: ``(image, reference=None, **conventions) -> (B,)``.
        lower_better / full_reference: pyiqa-style metadata.
        weights: ``(name, settings) -> conventions`` for metrics that need weights; it finds them (or raises
            ``MetricUnavailable`` naming what to pass) before any image is read. None: the metric takes
            ``crop_border`` and ``y_channel`` instead.
        luma: the usual ``y_channel`` convention (NIQE reads luma).
        needs_caption: compares an image with its caption (CLIP-T).
        requires: raises ``MetricUnavailable`` when a system part is missing (BRISQUE's OpenCV model files).
        scale: the unit and range of a score (recorded in every results file).
    """

    function: Callable[..., torch.Tensor]
    lower_better: bool
    full_reference: bool
    weights: Callable[[str, MetricSettings], dict] | None = None
    luma: bool = False
    needs_caption: bool = False
    requires: Callable[[], None] | None = None
    scale: str = ""


METRICS: dict[str, MetricSpec] = {
    "psnr": MetricSpec(psnr, lower_better=False, full_reference=True, scale="dB"),
    "ssim": MetricSpec(ssim, lower_better=False, full_reference=True, scale="[-1, 1], 1 = identical"),
    "niqe": MetricSpec(niqe, lower_better=True, full_reference=False, luma=True, scale="about 2-10 on photos"),
    "brisque": MetricSpec(brisque, lower_better=True, full_reference=False, requires=_brisque_available,
                          scale="about 0-100"),
    "clip_i": MetricSpec(clip_i, lower_better=False, full_reference=True, weights=_clip_conventions,
                         scale="cosine, [-1, 1]"),
    "clip_t": MetricSpec(clip_t, False, False, weights=_clip_conventions, needs_caption=True,
                         scale="cosine, [-1, 1] (the paper's Table 1: 0.285-0.308)"),
    "clipiqa": MetricSpec(clipiqa, lower_better=False, full_reference=False, weights=_clip_conventions,
                          scale="[0, 1]; zero-shot CLIP-IQA (Good/Bad photo), not the paper's CLIP-IQA+"),
    "lpips": MetricSpec(lpips, lower_better=True, full_reference=True, weights=_lpips_conventions,
                        scale="distance, about 0-1"),
    "musiq": MetricSpec(_pyiqa_metric("musiq"), False, False, weights=_pyiqa_conventions, scale="about 0-100"),
    "maniqa": MetricSpec(_pyiqa_metric("maniqa"), False, False, weights=_pyiqa_conventions, scale="about 0-1"),
}  # fmt: skip


def list_metrics() -> list[str]:
    """Names accepted by ``create_metric``."""
    return sorted(METRICS)


def create_metric(
    name: str, crop_border: int = 0, y_channel: bool | None = None, settings: MetricSettings | None = None
) -> Metric:
    """A metric by name with explicit conventions, e.g. ``create_metric("psnr", crop_border=4, y_channel=True)``.

    ``y_channel=None`` takes the metric's usual convention: RGB for PSNR/SSIM, luma for NIQE. Metrics that need
    weights find them through ``settings`` (or their environment variable) now, and say what is missing.
    """
    if name in SET_METRICS:
        raise ValueError(
            f"{name} is a set-level metric (one number over a set of images), not a per-image one: use "
            f"`spire bench run --metrics {name}`, or spire_ir.evaluation.metrics.frechet_distance on the features"
        )
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(list_metrics())}")
    spec = METRICS[name]
    if spec.requires is not None:
        spec.requires()
    if spec.weights is not None:
        conventions = spec.weights(name, settings or MetricSettings())
    else:
        conventions = {"crop_border": crop_border, "y_channel": spec.luma if y_channel is None else y_channel}
    return Metric(
        name, spec.function, spec.lower_better, spec.full_reference, conventions, spec.needs_caption, spec.scale
    )
