"""``spire train``: the SPIRE adaptor on a frozen prior (paper §3.3, §4.1, Eq. 1).

Two objectives (``model.objective``):

* ``diffusion`` (the paper's): L = E ||ε − ε_θ(z_t, t, c_s | y, c_r)||², MSE on ε, or on v when the base model is
  v-prediction, with z_t drawn from the DDPM schedule.
* ``bridge`` (spire-tiny, design note §4): the residual shift of ``ResShiftScheduler``,
  x_t = x + η(y − x) + κ√η·ε with η ~ p·δ(1) + (1 − p)·U(0, 1] (InDI's mixture: the δ(1) part trains the one-step
  restorer), and L1 between x̂₀ = x_t + D(x_t, 1000κ√η, c_s | y, c_r) and x, in the base's lossless pixel space.

The VAE, UNet and text encoder are frozen (``requires_grad_(False)``, eval mode, cast to the mixed-precision dtype);
only the adaptor trains.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from spire_ir.data import fixed_samples
from spire_ir.models.adaptor import SpireAdaptor, modulate_unet
from spire_ir.models.autoencoder import latent_pixel_weights, vae_scale_factor
from spire_ir.models.text import encode_text
from spire_ir.training.loop import LoopConfig, diffusion_target, frozen_dtype, move, run_loop, sample_latents
from spire_ir.utils.seeding import SampleRandom

logger = logging.getLogger(__name__)

__all__ = [
    "ModelConfig",
    "SpireTask",
    "TrainConfig",
    "bridge_loss",
    "restrict_training",
    "sample_etas",
    "sample_timesteps",
    "spire_loss",
    "train",
]


@dataclass
class ModelConfig:
    """The frozen base and the adaptor to train."""

    base: str = (
        "tiny"  # a diffusers SD folder, a .safetensors checkpoint, or "tiny" (random tiny prior, smoke tests)
    )
    # a single-file base whose layout differs from the shipped SD 1.5 / 2.1 configs: a diffusers-layout folder
    # of its component configs (unet/, vae/, text_encoder/, scheduler/, optionally tokenizer/)
    base_config: str | None = None
    adaptor: str | None = None  # continue from a saved adaptor folder
    fusion: Literal["modulation", "additive"] = "modulation"  # "additive" = the paper's ControlNet-SR
    prediction_type: str | None = None  # override the base scheduler's ("epsilon" | "v_prediction")
    condition_stem: Literal["conv", "unshuffle"] = "conv"  # E': diffusers' stride-2 convs, or space-to-depth
    stem_channels: int = 64  # width of the "unshuffle" stem; its projection starts as the VAE's patch encoder
    # "pixel": weight each latent channel's loss by the pixel energy it carries (latent_pixel_weights), so the loss
    # approximates the pixel-space error of x̂₀; "uniform": the paper's plain MSE
    loss_weighting: Literal["uniform", "pixel"] = "uniform"
    # draw training timesteps from [0, max_timestep) instead of the whole schedule: for a model sampled from the
    # noised input at low strength (``SpirePipeline(default_strength=…)``), which only ever runs the low-noise end
    max_timestep: int | None = None
    # "diffusion": the paper's ε/v loss on the DDPM schedule; "bridge": the residual-shift x̂₀ loss (module
    # docstring), for a base trained with `spire train-base` objective: denoise (its scheduler is ResShift)
    objective: Literal["diffusion", "bridge"] = "diffusion"
    # bridge: the share of the batch at η = 1 (the one-step restorer K = 1 uses); the rest is U(0, 1]. Lower it
    # to give multi-step sampling (K > 1) more of the training signal
    p_t_one: float = 0.5
    # the adaptor also reads the numbers of c_r through its time embedding (models.numeric); off is the
    # text-only ablation
    numeric_channel: bool = False
    # the prior during adaptor training: "frozen" (the paper's), "joint" (trained with the adaptor from its
    # pretrained weights) or "none" (trained with the adaptor from a fresh start): Table 5's prior ablation
    prior: Literal["frozen", "joint", "none"] = "frozen"
    # bridge: κ, the noise scale of the residual shift (start y + κε), overriding the base's scheduler; saved in
    # the exported pipeline. A small κ costs less at K = 1, where the start noise must be removed with the
    # degradation; the prior is trained on σ down to 0, so any κ up to its sigma_uniform_max stays in range
    kappa: float | None = None
    # train only the parameters whose names match one of these fnmatch patterns, the rest stay as loaded; names
    # are "adaptor.<name>" and, with prior: joint or none, "unet.<name>". ["unet.*.attn2.*"]: the prior's
    # cross-attention (what reads the semantic prompt) alone. None: every parameter of the adaptor (and prior)
    train_only: list[str] | None = None


@dataclass
class TrainConfig(LoopConfig):
    """``spire train`` config: loop options + model."""

    model: ModelConfig = field(default_factory=ModelConfig)


def sample_timesteps(rng: SampleRandom, scheduler: Any, max_timestep: int | None = None) -> torch.Tensor:
    """(B,) int64 training timesteps, one per sample of ``rng``, uniform on [0, max_timestep); on the scheduler's
    whole training schedule [0, num_train_timesteps) when max_timestep is None. scheduler: DDPM-style."""
    return rng.randint(0, max_timestep or scheduler.config.num_train_timesteps)


@dataclass
class FrozenParts:
    """The frozen components an adaptor trains on.

    Attributes:
        vae, text_encoder, tokenizer: the prior's autoencoder and text side.
        unet: the frozen prior; None when it trains with the adaptor (``model.prior``: joint or none), where the
            trainable module holds it.
        scheduler: the training scheduler (DDPM for a diffusion base, the base's ResShift for the bridge).
        sampling_scheduler: what the exported pipeline samples with (the base's own scheduler).
    """

    vae: Any
    text_encoder: Any
    tokenizer: Any
    unet: Any | None
    scheduler: Any
    sampling_scheduler: Any

    def modules(self) -> list[torch.nn.Module]:
        """The frozen networks (vae, unet when present, text_encoder)."""
        return [m for m in (self.vae, self.unet, self.text_encoder) if m is not None]

    def encode_prompts(self, batch: dict, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """(e_s in ``dtype``, e_r in float32) text embeddings of the batch's c_s and c_r, (B, L, D) each."""
        with torch.no_grad():
            e_s = encode_text(self.tokenizer, self.text_encoder, batch["c_s"], device).to(dtype)
            e_r = encode_text(self.tokenizer, self.text_encoder, batch["c_r"], device)
        return e_s, e_r


def spire_loss(
    frozen: FrozenParts,
    adaptor: torch.nn.Module,
    batch: dict,
    rng: SampleRandom,
    max_timestep: int | None = None,
    loss_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 1 on one batch: the ε (or v) MSE of the modulated frozen UNet.

    Args:
        frozen: the frozen prior (``frozen.scheduler`` a DDPM-style scheduler).
        batch: x, y (B, 3, H, W) in [0, 1]; c_s, c_r lists of B strings.
        rng: one generator per sample (the VAE sample, the noise and t draw from it).
        max_timestep: t is drawn uniformly from [0, max_timestep); the whole schedule when None.
        loss_weights: (C,) per latent channel (``ModelConfig.loss_weighting``); uniform when None.
    """
    vae, unet, scheduler = frozen.vae, frozen.unet, frozen.scheduler
    device, dtype = unet.device, unet.dtype
    latents = sample_latents(vae, batch["x"], rng, device)
    e_s, e_r = frozen.encode_prompts(batch, device, dtype)
    noise = rng.randn(latents.shape).to(device)
    t = sample_timesteps(rng, scheduler, max_timestep).to(device)
    noisy = scheduler.add_noise(latents, noise, t)
    adaptor_dtype = next(adaptor.parameters()).dtype
    modulation = adaptor(
        noisy.to(adaptor_dtype), t, batch["y"].to(device, adaptor_dtype), e_r.to(adaptor_dtype)
    )
    with modulate_unet(unet, modulation.to(dtype)):
        prediction = unet(noisy.to(dtype), t, encoder_hidden_states=e_s).sample
    target = diffusion_target(scheduler, latents, noise, t)
    if loss_weights is None:
        return F.mse_loss(prediction.float(), target.float())
    error = (prediction.float() - target.float()).pow(2).mean(dim=(0, 2, 3))
    return (error * loss_weights.to(error.device)).mean()


def sample_etas(rng: SampleRandom, p_one: float) -> torch.Tensor:
    """(B,) bridge times, one per sample of ``rng``: 1 with probability ``p_one``, else U(0, 1]."""
    uniform = 1.0 - rng.rand()  # (0, 1]
    return torch.where(rng.rand() < p_one, torch.ones(len(rng)), uniform)


def bridge_loss(
    frozen: FrozenParts,
    adaptor: torch.nn.Module,
    batch: dict,
    rng: SampleRandom,
    p_one: float = 0.5,
    unet: torch.nn.Module | None = None,
) -> torch.Tensor:
    """L1 of x̂₀ on one batch with the residual-shift bridge (``model.objective: bridge``).

    frozen: the frozen prior: a lossless vae, the residual denoiser unet and a ``ResShiftScheduler``. batch: x, y
    (B, 3, H, W) in [0, 1]; c_s, c_r lists of B strings. ``unet`` replaces ``frozen.unet`` when the prior trains
    too (``model.prior``).
    """
    from spire_ir.models.numeric import restoration_numbers

    vae, scheduler = frozen.vae, frozen.scheduler
    unet = frozen.unet if unet is None else unet
    device, dtype = unet.device, unet.dtype
    with torch.no_grad():
        x = vae.encode(batch["x"].to(device, vae.dtype) * 2 - 1).latent_dist.mode().float()
        y = vae.encode(batch["y"].to(device, vae.dtype) * 2 - 1).latent_dist.mode().float()
    e_s, e_r = frozen.encode_prompts(batch, device, dtype)
    noise = rng.randn(x.shape).to(device)
    etas = sample_etas(rng, p_one).to(device)
    noisy = scheduler.add_noise(x, y, noise, etas)
    t = scheduler.timestep_for(etas).to(device)
    adaptor_dtype = next(adaptor.parameters()).dtype
    config = getattr(adaptor, "module", adaptor).config  # the adaptor may come wrapped in DDP
    numeric = restoration_numbers(batch["c_r"]) if config.numeric_channel else None
    modulation = adaptor(
        noisy.to(adaptor_dtype), t, batch["y"].to(device, adaptor_dtype), e_r.to(adaptor_dtype), numeric=numeric
    )
    with modulate_unet(unet, modulation.to(dtype)):
        residual = unet(noisy.to(dtype), t, encoder_hidden_states=e_s).sample
    return F.l1_loss(noisy + residual.float(), x)


def load_frozen_parts(model: ModelConfig, seed: int = 0) -> FrozenParts:
    """The frozen prior ``model.base`` names, with its training scheduler (DDPM, or the base's ResShift)."""
    from diffusers import DDPMScheduler

    from spire_ir.schedulers import ResShiftScheduler

    if model.base == "tiny":
        from spire_ir.models.tiny import tiny_components

        components = tiny_components(seed=seed, prediction_type=model.prediction_type or "epsilon")
    else:
        from spire_ir.models.loading import load_base_components

        components = load_base_components(
            Path(model.base), prediction_type=model.prediction_type, config=model.base_config
        )
    sampling = scheduler = components["scheduler"]
    bridge = isinstance(scheduler, ResShiftScheduler)
    if bridge != (model.objective == "bridge"):
        raise ValueError(
            f"model.objective: {model.objective} does not fit the base {model.base} (its scheduler is "
            f"{type(scheduler).__name__}); a base trained with `spire train-base` objective: denoise "
            "takes objective: bridge, a diffusion base takes objective: diffusion"
        )
    if not bridge:
        scheduler = DDPMScheduler.from_config(scheduler.config)
    elif model.kappa is not None:
        sampling = scheduler = ResShiftScheduler.from_config(scheduler.config, kappa=model.kappa)
    frozen = FrozenParts(
        vae=components["vae"], text_encoder=components["text_encoder"], tokenizer=components["tokenizer"],
        unet=components["unet"], scheduler=scheduler, sampling_scheduler=sampling,
    )  # fmt: skip
    for module in frozen.modules():
        module.requires_grad_(False).eval()
    return frozen


class AdaptorAndPrior(torch.nn.Module):
    """The trainable module when the prior trains with the adaptor (``model.prior``: joint or none)."""

    def __init__(self, adaptor: SpireAdaptor, unet: torch.nn.Module) -> None:
        super().__init__()
        self.adaptor = adaptor
        self.unet = unet

    def forward(self, step: Callable[[SpireAdaptor, torch.nn.Module], torch.Tensor]) -> torch.Tensor:
        """``step(adaptor, unet)``: the loss runs inside this forward, so a DDP wrapper syncs both networks'
        gradients (DDP only reduces what ran through its own forward)."""
        return step(self.adaptor, self.unet)


def restrict_training(trainable: torch.nn.Module, patterns: list[str]) -> int:
    """Freeze every parameter of ``trainable`` (a SpireAdaptor or an AdaptorAndPrior) whose name, written
    "adaptor.<name>" or "unet.<name>", matches none of the fnmatch ``patterns``. Returns how many parameter
    elements stay trainable; raises ValueError, naming the parameter names, when a pattern matches nothing."""
    if not patterns:
        raise ValueError("model.train_only is empty, which would train nothing: list patterns or leave it out")
    prefix = "" if isinstance(trainable, AdaptorAndPrior) else "adaptor."
    names = {prefix + name: parameter for name, parameter in trainable.named_parameters()}
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            heads = sorted({".".join(name.split(".")[:2]) for name in names})
            raise ValueError(
                f"model.train_only: {pattern!r} matches no parameter; names start with {', '.join(heads[:12])}"
                + (" …" if len(heads) > 12 else "")
                + ' (the prior\'s are "unet.…" only with model.prior: joint or none)'
            )
    kept = 0
    for name, parameter in names.items():
        train = any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
        parameter.requires_grad_(train)
        kept += parameter.numel() if train else 0
    return kept


class SpireTask:
    """The adaptor on a frozen prior (or, for the prior ablation, with the prior training too)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.frozen = load_frozen_parts(config.model, seed=config.seed)
        vae_factor = vae_scale_factor(self.frozen.vae)
        if config.model.adaptor:
            adaptor = SpireAdaptor.from_pretrained(config.model.adaptor, local_files_only=True)
            adaptor.check_fits(self.frozen.unet)
        else:
            with torch.random.fork_rng():  # E' and the fusion convs are initialised from the run's seed
                torch.manual_seed(config.seed)
                adaptor = SpireAdaptor.from_unet(
                    self.frozen.unet, fusion=config.model.fusion, vae_scale_factor=vae_factor,
                    restoration_prompt=config.data.restoration_prompt,
                    condition_stem=config.model.condition_stem, stem_channels=config.model.stem_channels,
                    numeric_channel=config.model.numeric_channel,
                )  # fmt: skip
                adaptor.init_condition_stem(self.frozen.vae)
        # what the pipeline reads back: the prompt form, and the op ranges it warns outside of (the ranges of
        # the last run that trained this adaptor)
        adaptor.register_to_config(
            restoration_prompt=config.data.restoration_prompt,
            train_ranges=config.data.trained_ranges(),
        )
        self.loss_weights: torch.Tensor | None = None  # (C,) per latent channel; None: uniform
        if config.model.loss_weighting == "pixel":
            weights = latent_pixel_weights(self.frozen.vae)
            if weights is None:
                raise ValueError(
                    "model.loss_weighting: pixel needs a VAE with the linear shortcut (SpireAutoencoderKL, as "
                    "`spire train-vae` makes); use loss_weighting: uniform for other VAEs"
                )
            self.loss_weights = weights
        if config.model.max_timestep is not None:
            total = self.frozen.scheduler.config.num_train_timesteps
            if not 1 <= config.model.max_timestep <= total:
                raise ValueError(
                    f"model.max_timestep must be in [1, {total}] (the base's training schedule), "
                    f"got {config.model.max_timestep}"
                )
        self.max_timestep: int | None = config.model.max_timestep
        adaptor = adaptor.float().requires_grad_(True)
        if config.model.prior == "frozen":
            self.trainable: torch.nn.Module = adaptor
        else:
            if config.model.objective != "bridge":
                raise ValueError(f"model.prior: {config.model.prior} is an ablation of the bridge objective")
            unet, self.frozen.unet = self.frozen.unet, None
            if config.model.prior == "none":  # the same network from a fresh start: no pretrained prior
                from diffusers import UNet2DConditionModel

                with torch.random.fork_rng():
                    torch.manual_seed(config.seed)
                    unet = UNet2DConditionModel.from_config(unet.config)
                torch.nn.init.zeros_(unet.conv_out.weight)
                torch.nn.init.zeros_(unet.conv_out.bias)
            self.trainable = AdaptorAndPrior(adaptor, unet.float().requires_grad_(True).train())
        if config.model.train_only is not None:
            kept = restrict_training(self.trainable, config.model.train_only)
            total = sum(p.numel() for p in self.trainable.parameters())
            logger.info("model.train_only: training %d of %d parameter elements", kept, total)
        if config.gradient_checkpointing:
            self.prior_of(self.trainable).enable_gradient_checkpointing()
            self.adaptor_of(self.trainable).controlnet.enable_gradient_checkpointing()
        self._validation: list[dict] | None = None

    def adaptor_of(self, model: torch.nn.Module) -> SpireAdaptor:
        return model.adaptor if isinstance(model, AdaptorAndPrior) else model

    def prior_of(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.unet if isinstance(model, AdaptorAndPrior) else self.frozen.unet

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        for module in self.frozen.modules():
            move(module, device, frozen_dtype(device, dtype))
        self.trainable.to(device)

    def loss(self, model: torch.nn.Module, batch: dict, rng: SampleRandom) -> torch.Tensor:
        if self.config.model.objective == "bridge":
            p_one = self.config.model.p_t_one
            if self.config.model.prior == "frozen":
                return bridge_loss(self.frozen, model, batch, rng, p_one)
            return model(lambda adaptor, unet: bridge_loss(self.frozen, adaptor, batch, rng, p_one, unet=unet))
        return spire_loss(self.frozen, model, batch, rng, self.max_timestep, self.loss_weights)

    def pipeline(self, model: torch.nn.Module):
        from spire_ir.pipeline import SpirePipeline

        pipe = SpirePipeline(
            vae=self.frozen.vae, text_encoder=self.frozen.text_encoder, tokenizer=self.frozen.tokenizer,
            unet=self.prior_of(model), adaptor=self.adaptor_of(model), scheduler=self.frozen.sampling_scheduler,
            default_color_fix="none" if self.config.model.objective == "bridge" else "wavelet",
        )  # fmt: skip
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(self, model: torch.nn.Module, step: int, run_dir: Path) -> dict[str, Any]:
        """degraded | restored | clean for fixed samples, both prompts under each row; saved as a PNG."""
        from spire_ir.utils.images import save_image_grid

        if self._validation is None:
            self._validation = fixed_samples(self.config.data, self.config.num_validation)
        samples = self._validation
        if not samples:
            return {}
        pipe = self.pipeline(model)
        from spire_ir.evaluation.metrics import psnr

        rows, psnrs = [], []
        for index, sample in enumerate(samples):
            restored = pipe(
                sample["y"].unsqueeze(0), prompt=sample["c_s"], restoration_prompt=sample["c_r"],
                num_inference_steps=self.config.validation_steps, generator=torch.Generator().manual_seed(index),
                output_type="pt",
            ).images[0]  # fmt: skip
            psnrs.append(float(psnr(restored.unsqueeze(0), sample["x"].unsqueeze(0)).clamp(max=100)))
            rows.append(
                ([sample["y"], restored, sample["x"]], f"c_s: {sample['c_s']!r}  c_r: {sample['c_r']!r}")
            )
        grid = save_image_grid(
            rows, ["degraded", "restored", "clean"], run_dir / "validation" / f"step-{step:07d}.png"
        )
        return {"psnr": sum(psnrs) / len(psnrs), "grid": grid}

    def export(self, model: torch.nn.Module, run_dir: Path) -> Path:
        self.adaptor_of(model).save_pretrained(run_dir / "adaptor")
        self.pipeline(model).save_pretrained(run_dir / "pipeline")
        return run_dir / "pipeline"


def train(config: TrainConfig, argv: list[str] | None = None, resume: str | None = None) -> Path:
    """Run ``spire train``; returns the pipeline folder (usable by ``spire restore --model``)."""
    if not config.data.degrade:
        raise ValueError("spire train needs data.degrade: true (pairs of clean and degraded images)")
    return run_loop(config, SpireTask(config), argv=argv, resume=resume)
