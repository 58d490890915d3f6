"""A lossless "autoencoder" for pixel-space models: space-to-depth and back.

spire-tiny's design replaces the lossy VAE by
S = PixelUnshuffle(f): 3 × H × W -> 3f² × H/f × W/f, and S⁻¹ = PixelShuffle(f). It has no round-trip ceiling (the
first recipe's f = 8 VAE lost 1-3 dB on every degraded input before any model ran), needs no colour fix, and costs
nothing. It fills the ``vae/`` slot of a pipeline folder with the diffusers ``encode`` / ``decode`` interface:

    encode(2x − 1).latent_dist.mode() = S(x)        decode(S(x)).sample = 2x − 1

The latents are in *pixel units*, x in [0, 1], so a noise level σ means the same in the image and in the latent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput

__all__ = ["SpaceToDepthAutoencoder"]


class SpaceToDepthAutoencoder(ModelMixin, ConfigMixin):
    """Space-to-depth as a VAE component: (B, 3, H, W) in [-1, 1] <-> (B, 3f², H/f, W/f) in [0, 1].

    The posterior is deterministic (std 0), so ``latent_dist.mode()``, ``.mean`` and ``.sample()`` agree.
    ``scaling_factor`` is 1 and there are no latent statistics: the diffusion model sees pixels.

    Args:
        factor: f, the side of the square patch folded into channels (2 for spire-tiny).
    """

    @register_to_config
    def __init__(self, factor: int = 2, scaling_factor: float = 1.0) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        if scaling_factor != 1.0:
            raise ValueError(
                "a lossless pixel-space autoencoder keeps pixel units: scaling_factor must be 1.0"
            )
        # diffusers' pipeline machinery reads a module's dtype and device from its parameters
        self.register_buffer("_anchor", torch.zeros(1), persistent=False)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: str | None = None, **kwargs):  # type: ignore[override]
        """Build from a saved folder's ``config.json``: the map has no weights, so there is no weight file."""
        from pathlib import Path

        folder = Path(pretrained_model_name_or_path) / (subfolder or "")
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no config.json for a SpaceToDepthAutoencoder")
        return cls.from_config(cls.load_config(str(folder)))

    @property
    def latent_channels(self) -> int:
        return 3 * self.config.factor**2

    @property
    def scale_factor(self) -> int:
        """Pixels per latent cell along each side (the pipeline's VAE factor)."""
        return int(self.config.factor)

    def encode(self, sample: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        """sample: (B, 3, H, W) in [-1, 1], H and W multiples of f -> a deterministic posterior over S((x+1)/2)."""
        f = self.config.factor
        if sample.shape[-2] % f or sample.shape[-1] % f:
            raise ValueError(f"image size {tuple(sample.shape[-2:])} is not a multiple of the factor {f}")
        mean = F.pixel_unshuffle((sample + 1) / 2, f)
        posterior = DiagonalGaussianDistribution(
            torch.cat([mean, torch.zeros_like(mean)], 1), deterministic=True
        )
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, **_: object) -> DecoderOutput | tuple:
        """z: (B, 3f², h, w) pixel-unit latents -> (B, 3, h·f, w·f) in [-1, 1] (not clamped)."""
        image = F.pixel_shuffle(z, self.config.factor) * 2 - 1
        return DecoderOutput(sample=image) if return_dict else (image,)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(sample).latent_dist.mode()).sample
