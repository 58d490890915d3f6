"""An ``AutoencoderKL`` with a linear space-to-channel shortcut, for small VAEs trained from scratch on a CPU.

Small convolutional VAEs converge slowly: after ten CPU minutes an f = 4 design reconstructs photos at about 23 dB.
A linear map of each f × f patch already does far better (the top 12 principal components of 4 × 4 RGB patches
keep about 34 dB on photos), so this VAE adds one (as DC-AE does with its space-to-channel residuals):

    mean(x)  = W_in · unshuffle_f(x) + b_in + encoder(x)[:C]        (latent mean, C channels at H/f × W/f)
    decode(z) = shuffle_f(W_out · z + b_out) + decoder(z)

``init_from_patches`` sets W_in / W_out to the whitened principal components of training patches and zeroes the
last convolutions of the encoder and decoder, so training starts from the linear autoencoder and the networks learn
what it misses. With ``shortcut=False`` it is exactly diffusers' ``AutoencoderKL``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    ModelMixin,  # noqa: F401 - diffusers' pipeline loader looks base classes up in this module
)
from diffusers.configuration_utils import register_to_config
from torch import nn

__all__ = [
    "SpireAutoencoderKL",
    "from_model_latents",
    "load_vae",
    "set_latent_scaling",
    "to_model_latents",
    "vae_latent_channels",
    "vae_scale_factor",
]


def vae_scale_factor(vae) -> int:
    """Pixels per latent cell along each side: a ``SpaceToDepthAutoencoder``'s factor, else 2^(levels − 1)."""
    config = vae.config
    if "factor" in config:
        return int(config.factor)
    return 2 ** (len(config.block_out_channels) - 1)


def vae_latent_channels(vae) -> int:
    """Latent channels of an ``AutoencoderKL`` or a ``SpaceToDepthAutoencoder`` (3f²)."""
    config = vae.config
    return 3 * int(config.factor) ** 2 if "factor" in config else int(config.latent_channels)


class _ShortcutEncoder(nn.Module):
    """encoder(x) with W_in · unshuffle(x) added to the mean half of its moments."""

    def __init__(self, body: nn.Module, factor: int, latent_channels: int) -> None:
        super().__init__()
        self.body = body
        self.factor = factor
        self.proj = nn.Conv2d(3 * factor * factor, latent_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        moments = self.body(x)
        mean, logvar = moments.chunk(2, dim=1)
        return torch.cat([mean + self.proj(F.pixel_unshuffle(x, self.factor)), logvar], dim=1)


class _ShortcutDecoder(nn.Module):
    """decoder(z) + shuffle(W_out · z)."""

    def __init__(self, body: nn.Module, factor: int, latent_channels: int) -> None:
        super().__init__()
        self.body = body
        self.factor = factor
        self.proj = nn.Conv2d(latent_channels, 3 * factor * factor, 1)

    def forward(self, z: torch.Tensor, latent_embeds: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(z, latent_embeds) + F.pixel_shuffle(self.proj(z), self.factor)


class SpireAutoencoderKL(AutoencoderKL):
    """``AutoencoderKL`` plus the linear shortcut above; same ``encode`` / ``decode`` / tiling API.

    Images are (B, 3, H, W) in [-1, 1] (diffusers' convention), H and W multiples of the factor
    2^(len(block_out_channels) - 1); latents are (B, latent_channels, H / f, W / f).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 32,
        scaling_factor: float = 1.0,
        shift_factor: float | None = None,
        latents_mean: tuple[float] | None = None,
        latents_std: tuple[float] | None = None,
        force_upcast: bool = False,
        use_quant_conv: bool = False,
        use_post_quant_conv: bool = False,
        mid_block_add_attention: bool = False,
        shortcut: bool = True,
    ) -> None:
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, down_block_types=down_block_types,
            up_block_types=up_block_types, block_out_channels=block_out_channels,
            layers_per_block=layers_per_block, act_fn=act_fn, latent_channels=latent_channels,
            norm_num_groups=norm_num_groups, sample_size=sample_size, scaling_factor=scaling_factor,
            shift_factor=shift_factor, latents_mean=latents_mean, latents_std=latents_std,
            force_upcast=force_upcast, use_quant_conv=use_quant_conv, use_post_quant_conv=use_post_quant_conv,
            mid_block_add_attention=mid_block_add_attention,
        )  # fmt: skip
        if shortcut:
            factor = 2 ** (len(block_out_channels) - 1)
            self.encoder = _ShortcutEncoder(self.encoder, factor, latent_channels)
            self.decoder = _ShortcutDecoder(self.decoder, factor, latent_channels)

    @torch.no_grad()
    def init_from_patches(self, images: torch.Tensor, logvar: float = -12.0) -> torch.Tensor:
        """Start as the whitened-PCA linear autoencoder of the f × f patches of ``images``.

        Args:
            images: (N, 3, H, W) in [0, 1], H and W multiples of the factor.
            logvar: initial posterior log-variance (small, so early samples are close to the mean).

        Returns:
            the explained-variance fraction of each kept component, (latent_channels,).
        """
        if not self.config.shortcut:
            raise ValueError("init_from_patches needs shortcut=True")
        factor, channels = self.encoder.factor, self.config.latent_channels
        patches = (
            F.pixel_unshuffle(images.double() * 2 - 1, factor).permute(0, 2, 3, 1).reshape(-1, 3 * factor**2)
        )
        mean = patches.mean(0)
        covariance = torch.cov((patches - mean).T)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        order = eigenvalues.argsort(descending=True)[:channels]
        values, vectors = eigenvalues[order].clamp(min=1e-8), eigenvectors[:, order]  # (D,), (D, C)
        w_in = vectors.T / values.sqrt()[:, None]  # whitened: unit variance per latent channel
        w_out = vectors * values.sqrt()[None, :]
        encoder, decoder = self.encoder, self.decoder
        encoder.proj.weight.copy_(w_in[:, :, None, None].float())
        encoder.proj.bias.copy_((-w_in @ mean).float())
        decoder.proj.weight.copy_(w_out[:, :, None, None].float())
        decoder.proj.bias.copy_(mean.float())
        conv_out = encoder.body.conv_out
        conv_out.weight.zero_()
        conv_out.bias.zero_()
        conv_out.bias[channels:] = logvar
        decoder.body.conv_out.weight.zero_()
        decoder.body.conv_out.bias.zero_()
        return values / eigenvalues.clamp(min=0).sum()


def to_model_latents(vae: AutoencoderKL, z: torch.Tensor) -> torch.Tensor:
    """VAE latents (B, C, h, w) -> the diffusion model's latents, diffusers' convention.

    ``(z - latents_mean) * scaling_factor / latents_std`` per channel when the VAE config sets ``latents_mean`` /
    ``latents_std`` (as SDXL-era VAEs do), else ``z * scaling_factor``.
    """
    config = vae.config
    if config.get("latents_std") is None:
        return z * config.scaling_factor
    mean, std = _channel_stats(config, z)
    return (z - mean) * config.scaling_factor / std


def from_model_latents(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """The inverse of ``to_model_latents``: the diffusion model's latents -> the VAE decoder's input."""
    config = vae.config
    if config.get("latents_std") is None:
        return latents / config.scaling_factor
    mean, std = _channel_stats(config, latents)
    return latents * std / config.scaling_factor + mean


def _channel_stats(config, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    channels = len(config.latents_std)
    mean = config.latents_mean if config.latents_mean is not None else [0.0] * channels
    shape = (1, channels, 1, 1)
    return (
        torch.tensor(mean, dtype=like.dtype, device=like.device).view(shape),
        torch.tensor(config.latents_std, dtype=like.dtype, device=like.device).view(shape),
    )


@torch.no_grad()
def set_latent_scaling(vae: SpireAutoencoderKL, images: torch.Tensor, power: float) -> torch.Tensor:
    """Set ``latents_mean`` / ``latents_std`` so the diffusion model sees channels with *partial* whitening.

    A whitened latent gives every channel unit variance, so a diffusion loss spends as much effort on a channel
    that adds faint texture as on one that carries the picture's layout. With ``power`` p each model-space channel
    gets standard deviation proportional to n_c^p, where n_c is the pixel-space standard deviation the channel
    contributes (its latent std times the norm of its linear decoder column): p = 0 keeps whitening, p = 1 gives
    natural (PCA) proportions. The stds are normalised to a mean variance of 1; ``scaling_factor`` becomes 1.

    Args:
        vae: a ``SpireAutoencoderKL`` with the shortcut.
        images: (N, 3, H, W) in [0, 1], H and W multiples of the factor.
        power: p in [0, 1].

    Returns:
        the model-space standard deviation of each channel, (C,).
    """
    if not getattr(vae.config, "shortcut", False):
        raise ValueError("set_latent_scaling needs a SpireAutoencoderKL with shortcut=True")
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"power must lie in [0, 1], got {power}")
    z = vae.encode(images.to(vae.device, vae.dtype) * 2 - 1).latent_dist.mean.double()
    mean, std = z.mean(dim=(0, 2, 3)), z.std(dim=(0, 2, 3)).clamp(min=1e-8)
    pixel_std = std * vae.decoder.proj.weight.double()[:, :, 0, 0].norm(dim=0)
    target = pixel_std.pow(power)
    target = target / target.pow(2).mean().sqrt()
    vae.register_to_config(
        latents_mean=mean.tolist(), latents_std=(std / target).tolist(), scaling_factor=1.0
    )
    return target.float()


@torch.no_grad()
def latent_pixel_weights(vae: AutoencoderKL) -> torch.Tensor | None:
    """How much pixel-space energy a unit step in each diffusion-model latent channel carries, mean 1, (C,).

    For a ``SpireAutoencoderKL`` the decoder's linear shortcut gives it: a unit step in model-space channel c moves
    the raw latent by ``latents_std[c] / scaling_factor`` and the image by that times the norm of decoder column c.
    A diffusion loss weighted by these numbers approximates the pixel-space MSE of the predicted x₀, so a small
    model spends its capacity where PSNR is decided instead of on faint texture channels. ``None`` for a VAE
    without the shortcut.
    """
    if not getattr(vae.config, "shortcut", False):
        return None
    columns = vae.decoder.proj.weight.double()[:, :, 0, 0].norm(dim=0)
    channels = columns.numel()
    std = torch.tensor(vae.config.latents_std or [1.0] * channels, dtype=torch.float64)
    energy = (std / vae.config.scaling_factor * columns).pow(2)
    return (energy / energy.mean()).float()


def load_vae(path, **kwargs) -> AutoencoderKL:
    """Load a local VAE folder as the class its config names (``SpireAutoencoderKL`` or ``AutoencoderKL``)."""
    import json
    from pathlib import Path

    from spire_ir.models.pixel_space import SpaceToDepthAutoencoder

    config = Path(path) / "config.json"
    name = json.loads(config.read_text()).get("_class_name") if config.is_file() else None
    classes = {"SpireAutoencoderKL": SpireAutoencoderKL, "SpaceToDepthAutoencoder": SpaceToDepthAutoencoder}
    cls = classes.get(name, AutoencoderKL)
    kwargs.setdefault("local_files_only", True)
    return cls.from_pretrained(path, **kwargs)
