"""``spire train-vae``: a small ``AutoencoderKL`` for priors trained from scratch.

Loss: reconstruction (L1 or MSE) + ``kl_weight`` × KL(q(z|x) || N(0, I)) per latent element. No perceptual term
that would need downloaded weights. The result is a diffusers ``vae/`` folder for ``spire train-base``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from spire_ir.data import DataConfig, fixed_samples
from spire_ir.training.loop import LoopConfig, run_loop
from spire_ir.utils.seeding import SampleRandom

__all__ = ["VaeConfig", "VaeTask", "VaeTrainConfig", "train_vae", "vae_loss"]


@dataclass
class VaeConfig:
    """AutoencoderKL shape; the latent factor is 2^(len(block_out_channels) - 1)."""

    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8
    mid_attention: bool = True  # False drops the mid-block self-attention (O(N²) memory at large sizes)
    # SpireAutoencoderKL: a linear space-to-channel shortcut, started from the whitened PCA of training patches
    shortcut: bool = False
    pca_images: int = 256  # training crops whose patches give the PCA (shortcut only)
    # shortcut only: at export, per-channel latents_mean/latents_std so the diffusion model sees channel stds
    # proportional to (pixel std)^latent_power, measured on the PCA crops (0: whitened; 1: natural proportions)
    latent_power: float | None = None
    init: str | None = None  # continue from a saved vae folder
    recon: Literal["l1", "mse"] = "l1"
    kl_weight: float = 1e-4
    scaling_factor: float = 0.18215


def _no_degradation() -> DataConfig:
    return DataConfig(degrade=False, caption_dropout=0.0)


@dataclass
class VaeTrainConfig(LoopConfig):
    output_dir: str = "runs/vae"
    model: VaeConfig = field(default_factory=VaeConfig)
    data: DataConfig = field(default_factory=_no_degradation)


def build_vae(config: VaeConfig):
    from diffusers import AutoencoderKL

    from spire_ir.models.autoencoder import SpireAutoencoderKL, load_vae

    if config.init:
        return load_vae(config.init)
    levels = len(config.block_out_channels)
    shape = {
        "block_out_channels": tuple(config.block_out_channels),
        "down_block_types": ("DownEncoderBlock2D",) * levels,
        "up_block_types": ("UpDecoderBlock2D",) * levels,
        "layers_per_block": config.layers_per_block,
        "latent_channels": config.latent_channels,
        "norm_num_groups": config.norm_num_groups,
        "scaling_factor": config.scaling_factor,
        "mid_block_add_attention": config.mid_attention,
    }
    return SpireAutoencoderKL(**shape) if config.shortcut else AutoencoderKL(**shape)


def vae_loss(vae, batch: dict, rng: SampleRandom, config: VaeConfig) -> torch.Tensor:
    """Reconstruction + KL for x in batch["x"] ((B, 3, H, W) in [0, 1]); the posterior sample draws from ``rng``."""
    x = batch["x"].to(vae.device, vae.dtype) * 2 - 1
    posterior = vae.encode(x).latent_dist
    z = posterior.mean + posterior.std * rng.randn(posterior.mean.shape).to(x.device, x.dtype)
    recon = vae.decode(z).sample
    error = F.l1_loss if config.recon == "l1" else F.mse_loss
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return error(recon.float(), x.float()) + config.kl_weight * kl.float()


def _pca_images(data: DataConfig, count: int) -> torch.Tensor:
    """``count`` training crops spread evenly over the dataset (epoch 0's draws), (count, 3, R, R) in [0, 1]."""
    from spire_ir.data import map_dataset

    if data.source == "webdataset":
        raise ValueError("model.shortcut: the PCA start needs a folder, coco or scenes source")
    dataset = map_dataset(data)
    picks = torch.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().long().unique()
    samples = [dataset[(0, int(i))] for i in picks]
    return torch.stack([s["x"] for s in samples if s is not None])


class VaeTask:
    def __init__(self, config: VaeTrainConfig) -> None:
        self.config = config
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            self.trainable = build_vae(config.model).float()
        if config.model.shortcut and not config.model.init:
            self.trainable.init_from_patches(_pca_images(config.data, config.model.pca_images))
        if config.gradient_checkpointing:
            self.trainable.enable_gradient_checkpointing()

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        self.trainable.to(device)

    def loss(self, model, batch: dict, rng: SampleRandom) -> torch.Tensor:
        return vae_loss(model, batch, rng, self.config.model)

    def validate(self, model, step: int, run_dir: Path) -> dict[str, Any]:
        from spire_ir.utils.images import save_image_grid

        samples = fixed_samples(self.config.data, self.config.num_validation)
        if not samples:
            return {}
        x = torch.stack([s["x"] for s in samples]).to(model.device)
        recon = ((model.decode(model.encode(x * 2 - 1).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)
        from spire_ir.evaluation.metrics import psnr as psnr_db

        psnr = float(psnr_db(recon, x).clamp(max=100).mean())
        rows = [([x[i], recon[i]], s["c_s"]) for i, s in enumerate(samples)]
        grid = save_image_grid(
            rows, ["input", "reconstruction"], run_dir / "validation" / f"step-{step:07d}.png"
        )
        return {"psnr": psnr, "grid": grid}

    def export(self, model, run_dir: Path) -> Path:
        power = self.config.model.latent_power
        if power is not None:
            from spire_ir.models.autoencoder import set_latent_scaling

            model.eval()
            set_latent_scaling(model, _pca_images(self.config.data, self.config.model.pca_images), power)
        model.save_pretrained(run_dir / "vae")
        return run_dir / "vae"


def train_vae(config: VaeTrainConfig, argv: list[str] | None = None, resume: str | None = None) -> Path:
    """Run ``spire train-vae``; returns the ``vae/`` folder."""
    return run_loop(config, VaeTask(config), argv=argv, resume=resume)
