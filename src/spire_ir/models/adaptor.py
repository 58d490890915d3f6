"""The SPIRE adaptor: a ControlNet-style encoder that steers a frozen UNet through modulation fusion.

Paper §3.2-3.4 and Fig. 2. Notation (variable -> paper):

* ``sample`` -> z_t, the noisy latent; ``timestep`` -> t
* ``condition`` -> y, the degraded image in pixel space, read by E' (``controlnet.controlnet_cond_embedding``)
* ``restoration_embeds`` -> e_r = text_encoder(c_r), read by the ControlNet's cross-attention
* ``fusion_convs[i]`` -> M, a zero-initialised 1x1 conv per skip feature (and one for the mid block)
* ``Modulation`` -> the (γ, β) pairs: the frozen UNet's skip i becomes f̂_i = (1 + γ_i)·f_i + β_i

**E' plus concatenation.** The paper feeds E'(y) alongside z_t. diffusers' ControlNet instead *adds* a zero-
initialised conv of a small conv downsampler's output to ``conv_in(z_t)``. Because a convolution is linear in its
input channels, conv_in([z_t ; E'(y)]) = conv_in_z(z_t) + conv_in_e(E'(y)); the zero-initialised output conv of the
embedding plays the role of conv_in_e (the new input channels of a concatenated conv_in, also zero at start). The
two are the same function class and the same initialisation, so we keep diffusers' additive form.

**Condition stems.** ``condition_stem="conv"`` is diffusers' E' (stride-2 3×3 convs, widths (16, 32, 96, 256)).
``condition_stem="unshuffle"`` is a space-to-depth stem: y is cut into f×f patches (``pixel_unshuffle``), a 1×1
conv projects each patch, a residual pair of 3×3 convs refines it and a zero-initialised conv gives E'(y). Every
pixel of y reaches the ControlNet through a linear path, and the projection can start as the VAE's own linear
patch encoder (:meth:`SpireAdaptor.init_condition_stem`), so a small adaptor trained briefly does not first have to
rediscover what the VAE already knows about the latent space. Both are small conv downsamplers of y.

**Fusion modes.** ``fusion="modulation"`` (SPIRE): each M_i is Conv2d(C, 2C, 1) split into (γ, β).
``fusion="additive"`` (the paper's "ControlNet-SR" ablation, plain ControlNet): M_i is Conv2d(C, C, 1) giving β,
with γ = 0, i.e. f + r. Both are zero-initialised, so a fresh adaptor leaves the frozen UNet's output unchanged.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn import functional as F

from spire_ir.models.numeric import NumericEmbedding

__all__ = ["Modulation", "SpireAdaptor", "UnshuffleConditioningEmbedding", "modulate_unet", "skip_channels"]

# UNet config keys that decide whether an adaptor fits a UNet (they fix the skip features' shapes and the text width).
_FIT_KEYS = (
    "in_channels",
    "block_out_channels",
    "down_block_types",
    "up_block_types",
    "layers_per_block",
    "cross_attention_dim",
)
DEFAULT_EMBEDDING_CHANNELS = (16, 32, 96, 256)


def skip_channels(unet_config: Any) -> list[int]:
    """Channel count of every skip feature of a UNet2DConditionModel, in production order, then the mid block.

    Derived from the config (never a hard-coded 13): conv_in, then per down block one entry per layer and one for
    its downsampler unless it is the last block; finally the mid block. SD 1.5 gives 12 skips + mid.
    """
    get = unet_config.get if isinstance(unet_config, dict) else lambda k: getattr(unet_config, k)
    channels = list(get("block_out_channels"))
    layers = get("layers_per_block")
    layers = [layers] * len(channels) if isinstance(layers, int) else list(layers)
    out = [channels[0]]
    for index, width in enumerate(channels):
        out += [width] * layers[index]
        if index < len(channels) - 1:
            out.append(width)
    return [*out, channels[-1]]


def _unet_fingerprint(unet_config: Any) -> dict:
    get = unet_config.get if isinstance(unet_config, dict) else lambda k: getattr(unet_config, k)
    result = {}
    for key in _FIT_KEYS:
        value = get(key)
        result[key] = list(value) if isinstance(value, (list, tuple)) else value
    return result


def _zero(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class UnshuffleConditioningEmbedding(nn.Module):
    """E' as a space-to-depth stem: y (B, 3, H, W) in [0, 1] -> (B, out_channels, H/f, W/f).

    h = proj(unshuffle_f(y)); E'(y) = conv_out(h + body(h)). ``body``'s last conv and ``conv_out`` start at zero,
    so a fresh stem adds nothing to the ControlNet (as diffusers' embedding) and h starts as a linear patch code.
    """

    def __init__(self, factor: int, channels: int, out_channels: int) -> None:
        super().__init__()
        self.factor = factor
        self.proj = nn.Conv2d(3 * factor**2, channels, 1)
        self.body = nn.Sequential(
            nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(), _zero(nn.Conv2d(channels, channels, 3, padding=1)),
        )  # fmt: skip
        self.conv_out = _zero(nn.Conv2d(channels, out_channels, 3, padding=1))

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        h = self.proj(F.pixel_unshuffle(condition, self.factor))
        return self.conv_out(h + self.body(h))


@dataclass
class Modulation:
    """Per-skip (γ, β) for one UNet call.

    Attributes:
        gammas: one (B, C_i, H_i, W_i) tensor per skip feature and the mid block, or None entries (additive mode).
        betas: same shapes as the skip features.
    """

    gammas: list[torch.Tensor | None]
    betas: list[torch.Tensor]

    def repeat(self, times: int) -> Modulation:
        """Repeat along the batch, e.g. ×2 for the [uncond, cond] halves of classifier-free guidance."""
        if times == 1:
            return self
        rep = lambda t: None if t is None else t.repeat(times, *([1] * (t.dim() - 1)))  # noqa: E731
        return Modulation([rep(g) for g in self.gammas], [rep(b) for b in self.betas])

    def to(self, dtype: torch.dtype) -> Modulation:
        cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
        return Modulation([cast(g) for g in self.gammas], [cast(b) for b in self.betas])

    def apply(self, index: int, feature: torch.Tensor) -> torch.Tensor:
        """f̂ = (1 + γ)·f + β for skip ``index``."""
        gamma, beta = self.gammas[index], self.betas[index]
        return feature + beta if gamma is None else feature * (1 + gamma) + beta


class SpireAdaptor(ModelMixin, ConfigMixin):
    """Trainable part of SPIRE: ControlNet encoder (copied from the UNet) + E' + fusion convs M.

    Build one for a UNet with :meth:`from_unet`; save and load with ``save_pretrained`` / ``from_pretrained``
    (safetensors + config.json). The config records the fusion mode, the restoration-prompt setting it was
    trained with, and the UNet config it fits; :meth:`check_fits` raises a clear error for a mismatched UNet.

    Args:
        controlnet_config: the full ``ControlNetModel`` config (from ``ControlNetModel.from_unet``).
        skip_channels: channels of each skip feature and the mid block (see :func:`skip_channels`).
        fusion: "modulation" ((1+γ)·f + β) or "additive" (f + β, plain ControlNet).
        restoration_prompt: how c_r was written in training: "with_params", "without_params" or "none"; the
            pipeline rewrites c_r to it (``SpirePipeline.restoration_as_trained``).
        base_unet: the fingerprint of the UNet config this adaptor fits.
        condition_stem: E', "conv" (diffusers' embedding) or "unshuffle" (:class:`UnshuffleConditioningEmbedding`).
        vae_scale_factor: f, pixels per latent cell (used by the "unshuffle" stem).
        stem_channels: width of the "unshuffle" stem.
        numeric_channel: also read the numbers of c_r (``models.numeric``) through the time embedding.
        train_ranges: each op's range of values in training, {kind: [low, high]} (``spire train`` records it);
            the pipeline warns about prompt values outside it. None: the paper's Table 2 ranges.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        controlnet_config: dict,
        skip_channels: list[int],
        fusion: str = "modulation",
        restoration_prompt: str = "with_params",
        base_unet: dict | None = None,
        condition_stem: str = "conv",
        vae_scale_factor: int = 8,
        stem_channels: int = 64,
        numeric_channel: bool = False,
        train_ranges: dict[str, list[float]] | None = None,
    ) -> None:
        super().__init__()
        if condition_stem not in ("conv", "unshuffle"):
            raise ValueError(f"condition_stem must be 'conv' or 'unshuffle', got {condition_stem!r}")
        if fusion not in ("modulation", "additive"):
            raise ValueError(f"fusion must be 'modulation' or 'additive', got {fusion!r}")
        if restoration_prompt not in ("with_params", "without_params", "none"):
            raise ValueError(
                f"restoration_prompt must be 'with_params', 'without_params' or 'none', got {restoration_prompt!r}"
            )
        config = {k: v for k, v in controlnet_config.items() if not k.startswith("_")}
        if numeric_channel:  # the numeric code enters as an extra term of the time embedding
            config["class_embed_type"] = "identity"
        self.controlnet = ControlNetModel(**config)
        self.numeric_embedding = (
            NumericEmbedding(4 * config["block_out_channels"][0]) if numeric_channel else None
        )
        # The ControlNet returns raw features f_con; its zero convs are replaced by the fusion convs M below.
        self.controlnet.controlnet_down_blocks = nn.ModuleList(
            [nn.Identity() for _ in self.controlnet.controlnet_down_blocks]
        )
        self.controlnet.controlnet_mid_block = nn.Identity()
        if condition_stem == "unshuffle":
            self.controlnet.controlnet_cond_embedding = UnshuffleConditioningEmbedding(
                vae_scale_factor, stem_channels, config["block_out_channels"][0]
            )
        factor = 2 if fusion == "modulation" else 1
        self.fusion_convs = nn.ModuleList([_zero(nn.Conv2d(c, factor * c, 1)) for c in skip_channels])

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_unet(
        cls,
        unet: UNet2DConditionModel,
        fusion: str = "modulation",
        vae_scale_factor: int = 8,
        restoration_prompt: str = "with_params",
        conditioning_embedding_out_channels: tuple[int, ...] | None = None,
        condition_stem: str = "conv",
        stem_channels: int = 64,
        numeric_channel: bool = False,
    ) -> SpireAdaptor:
        """A fresh adaptor whose ControlNet copies the UNet's encoder weights (``ControlNetModel.from_unet``).

        Args:
            unet: the frozen base UNet.
            fusion: "modulation" or "additive".
            vae_scale_factor: pixels per latent cell; E' downsamples y by this factor with stride-2 convs.
            restoration_prompt: the c_r variant used in training, which the pipeline rewrites prompts to.
            conditioning_embedding_out_channels: E' widths; default (16, 32, 96, 256) cut to log2(factor)+1.
            condition_stem: "conv" (diffusers' E') or "unshuffle" (space-to-depth E'; see the module docstring).
            stem_channels: width of the "unshuffle" stem.
            numeric_channel: add the numeric channel of c_r (zero-initialised; see ``models.numeric``).
        """
        steps = int(vae_scale_factor).bit_length() - 1
        if 2**steps != vae_scale_factor:
            raise ValueError(f"vae_scale_factor must be a power of two, got {vae_scale_factor}")
        if conditioning_embedding_out_channels is None:
            if steps + 1 > len(DEFAULT_EMBEDDING_CHANNELS):
                raise ValueError(
                    f"give conditioning_embedding_out_channels for vae_scale_factor {vae_scale_factor}"
                )
            conditioning_embedding_out_channels = DEFAULT_EMBEDDING_CHANNELS[: steps + 1]
        if len(conditioning_embedding_out_channels) != steps + 1:
            raise ValueError(
                f"{len(conditioning_embedding_out_channels)} embedding widths give a downsampling of "
                f"{2 ** (len(conditioning_embedding_out_channels) - 1)}, but the VAE factor is {vae_scale_factor}"
            )
        controlnet = ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=tuple(conditioning_embedding_out_channels)
        )
        adaptor = cls(
            controlnet_config=dict(controlnet.config),
            skip_channels=skip_channels(unet.config),
            fusion=fusion,
            restoration_prompt=restoration_prompt,
            base_unet=_unet_fingerprint(unet.config),
            condition_stem=condition_stem,
            vae_scale_factor=vae_scale_factor,
            stem_channels=stem_channels,
            numeric_channel=numeric_channel,
        )
        skip = ["controlnet_down_blocks", "controlnet_mid_block"]
        if condition_stem != "conv":  # the unshuffle stem keeps its own fresh weights
            skip.append("controlnet_cond_embedding")
        state = {k: v for k, v in controlnet.state_dict().items() if not k.startswith(tuple(skip))}
        if condition_stem != "conv":
            stem = adaptor.controlnet.controlnet_cond_embedding.state_dict()
            state.update({f"controlnet_cond_embedding.{k}": v for k, v in stem.items()})
        adaptor.controlnet.load_state_dict(state, strict=True)
        return adaptor if unet.dtype == adaptor.dtype else adaptor.to(dtype=unet.dtype)

    @torch.no_grad()
    def init_condition_stem(self, vae: nn.Module) -> bool:
        """Start the "unshuffle" stem's projection as the VAE's linear patch encoder (``SpireAutoencoderKL``).

        The VAE's shortcut maps unshuffle_f(2y - 1) to the latent mean. The copy reads y in [0, 1] and includes the
        VAE's latent scaling (``to_model_latents``), so at the start h holds the linear part of the diffusion
        model's latent of y in the first C_latent stem channels; the rest keep their random start. Returns False
        (and changes nothing) when the stem or the VAE has no such projection.
        """
        from spire_ir.models.autoencoder import to_model_latents
        from spire_ir.models.pixel_space import SpaceToDepthAutoencoder

        stem = self.controlnet.controlnet_cond_embedding
        if isinstance(vae, SpaceToDepthAutoencoder) and isinstance(stem, UnshuffleConditioningEmbedding):
            n = vae.latent_channels  # the latent *is* unshuffle(y): start the first n channels as the identity
            if stem.factor != vae.scale_factor or n > stem.proj.out_channels:
                return False
            stem.proj.weight[:n] = torch.eye(n, dtype=stem.proj.weight.dtype)[:, :, None, None]
            stem.proj.bias[:n] = 0
            return True
        source = getattr(getattr(vae, "encoder", None), "proj", None)
        if not isinstance(stem, UnshuffleConditioningEmbedding) or not isinstance(source, nn.Conv2d):
            return False
        if source.in_channels != stem.proj.in_channels or source.out_channels > stem.proj.out_channels:
            return False
        n = source.out_channels
        weight = source.weight.double()[:, :, 0, 0]  # (C, 3f²)
        bias = source.bias.double() if source.bias is not None else torch.zeros(n, dtype=torch.float64)
        # z = W(2y - 1) + b = 2W·y + (b - W·1); then the model latent is a·z + c per channel
        shift = to_model_latents(vae, torch.zeros(1, n, 1, 1, dtype=torch.float64)).flatten()
        scale = to_model_latents(vae, torch.ones(1, n, 1, 1, dtype=torch.float64)).flatten() - shift
        stem.proj.weight[:n] = (scale[:, None] * 2 * weight)[:, :, None, None].to(stem.proj.weight)
        stem.proj.bias[:n] = (scale * (bias - weight.sum(dim=1)) + shift).to(stem.proj.bias)
        return True

    def check_fits(self, unet: UNet2DConditionModel) -> None:
        """Raise ValueError if this adaptor was built for a UNet of another shape."""
        expected = self.config.base_unet
        if expected is None:
            return
        actual = _unet_fingerprint(unet.config)
        diffs = [
            f"{k}: adaptor expects {expected[k]}, UNet has {actual[k]}"
            for k in _FIT_KEYS
            if expected[k] != actual[k]
        ]
        if diffs:
            raise ValueError(
                "the adaptor does not fit this UNet ("
                + "; ".join(diffs)
                + "). Load it beside the base model it "
                "was trained for, or build a new one with SpireAdaptor.from_unet(unet)"
            )

    # ------------------------------------------------------------------ forward

    @property
    def num_skips(self) -> int:
        return len(self.fusion_convs)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        condition: torch.Tensor,
        restoration_embeds: torch.Tensor,
        scale: float = 1.0,
        numeric: torch.Tensor | None = None,
    ) -> Modulation:
        """Compute (γ, β) for every skip feature.

        Args:
            sample: z_t, (B, C_latent, h, w).
            timestep: t, scalar or (B,).
            condition: y, (B, 3, h·f, w·f) in [0, 1] (f = VAE factor).
            restoration_embeds: e_r, (B, L, D) from the frozen text encoder.
            scale: strength s; returns s·γ, s·β (1.0 = as trained).
            numeric: (B, NUMERIC_DIM) codes of c_r (``restoration_numbers``); required with ``numeric_channel``.

        Returns:
            A :class:`Modulation` with one (γ, β) per skip feature plus the mid block.
        """
        class_labels = None
        if self.numeric_embedding is not None:
            if numeric is None:
                raise ValueError("this adaptor reads the numeric channel: pass numeric=restoration_numbers(c_r)")
            class_labels = self.numeric_embedding(numeric.to(sample.device, sample.dtype))
        down, mid = self.controlnet(
            sample,
            timestep,
            encoder_hidden_states=restoration_embeds,
            controlnet_cond=condition,
            conditioning_scale=1.0,
            class_labels=class_labels,
            return_dict=False,
        )
        features = [*down, mid]
        if len(features) != self.num_skips:
            raise RuntimeError(f"ControlNet gave {len(features)} features for {self.num_skips} fusion convs")
        gammas: list[torch.Tensor | None] = []
        betas: list[torch.Tensor] = []
        for feature, conv in zip(features, self.fusion_convs, strict=True):
            out = conv(feature) * scale
            if self.config.fusion == "modulation":
                gamma, beta = out.chunk(2, dim=1)
                gammas.append(gamma)
                betas.append(beta)
            else:
                gammas.append(None)
                betas.append(out)
        return Modulation(gammas, betas)


# ---------------------------------------------------------------------- fusing into the frozen UNet

_HOOK_LOCK = threading.RLock()


def _up_block_ranges(unet: UNet2DConditionModel, num_down_skips: int) -> list[tuple[int, int]]:
    """Which skip indices each up block consumes: the last len(resnets) of what remains, in order."""
    ranges = []
    end = num_down_skips
    for block in unet.up_blocks:
        start = end - len(block.resnets)
        ranges.append((start, end))
        end = start
    if end != 0:
        raise RuntimeError(f"up blocks consume {num_down_skips - end} of {num_down_skips} skip features")
    return ranges


@contextlib.contextmanager
def modulate_unet(unet: UNet2DConditionModel, modulation: Modulation | None) -> Iterator[None]:
    """Within the block, every call of ``unet`` has its skips fused as f̂_i = (1 + γ_i)·f_i + β_i.

    Implemented with forward hooks on the up blocks (which receive the skips as ``res_hidden_states_tuple``) and
    on the mid block; the hooks are removed on exit. Calls are serialised by a lock, so two threads never see
    each other's modulation. ``modulation=None`` leaves the UNet unchanged.
    """
    if modulation is None:
        yield
        return
    num_down = len(modulation.betas) - 1
    ranges = _up_block_ranges(unet, num_down)
    handles = []

    def up_hook(start: int, end: int):
        def hook(module, args, kwargs):
            skips = kwargs["res_hidden_states_tuple"]
            kwargs["res_hidden_states_tuple"] = tuple(
                modulation.apply(start + offset, feature) for offset, feature in enumerate(skips)
            )
            return args, kwargs

        return hook

    def mid_hook(module, args, output):
        return modulation.apply(num_down, output)

    with _HOOK_LOCK:
        try:
            for block, (start, end) in zip(unet.up_blocks, ranges, strict=True):
                handles.append(block.register_forward_pre_hook(up_hook(start, end), with_kwargs=True))
            handles.append(unet.mid_block.register_forward_hook(mid_hook))
            yield
        finally:
            for handle in handles:
                handle.remove()
