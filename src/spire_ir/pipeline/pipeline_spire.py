"""``SpirePipeline``: dual-prompt restoration, one sampling loop, classifier-free guidance on the semantic prompt.

Paper §3.1-3.3. The frozen text-to-image UNet reads the semantic prompt c_s; the adaptor reads the degraded image
y, the noisy sample and the restoration prompt c_r, and modulates the UNet's skip features. Sampling (one readable
loop in ``__call__``; the scheduler decides how it starts and steps):

    out = out(x_t, t, ∅ | y, c_r) + w·[out(x_t, t, c_s | y, c_r) − out(x_t, t, ∅ | y, c_r)]

where out is ε̂ or v̂ for a noise scheduler (DDIM, Euler, DPM++, UniPC on SD models) or the x̂₀ residual of a bridge
model (``ResShiftScheduler``, spire-tiny). y and c_r go to both halves. The adaptor's inputs (x_t, t, y, c_r) do not
depend on c_s, so it runs *once* per step and its (γ, β) serve both halves (half the ControlNet cost of diffusers'
ControlNet pipeline under CFG).

Large images are sampled in overlapping latent tiles blended with Gaussian weights (each tile paired with its crop
of y), and a VAE encodes and decodes in tiles, so memory stays roughly flat as the image grows.
"""

from __future__ import annotations

import inspect
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from spire_ir.models.adaptor import SpireAdaptor, modulate_unet
from spire_ir.models.attention import attention_windows
from spire_ir.models.autoencoder import (  # SpireAutoencoderKL imported so that folders naming it load
    SpireAutoencoderKL,
    from_model_latents,
    to_model_latents,
    vae_scale_factor,
)
from spire_ir.models.builtin import BUILTIN_MODELS, installed_builtin_model
from spire_ir.models.numeric import restoration_numbers
from spire_ir.models.pixel_space import SpaceToDepthAutoencoder
from spire_ir.models.text import encode_text, load_reference
from spire_ir.pipeline.color import color_fix as apply_color_fix
from spire_ir.pipeline.consistency import data_consistency
from spire_ir.pipeline.ensemble import SELF_ENSEMBLE_SIZES, dihedral
from spire_ir.prompts import canonical, restoration_prompt_variant
from spire_ir.schedulers import ResShiftScheduler  # noqa: F401 - folders naming it load
from spire_ir.utils.images import pil_to_tensor, tensor_to_pil

logger = logging.getLogger(__name__)

__all__ = ["SpirePipeline", "SpirePipelineOutput"]

COMPONENTS = ("vae", "text_encoder", "tokenizer", "unet", "adaptor", "scheduler")
COLOR_FIXES = ("wavelet", "adain", "none")
ImageInput = torch.Tensor | Image.Image | np.ndarray | Sequence[Image.Image]


@dataclass
class SpirePipelineOutput(BaseOutput):
    """Restored images: a list of PIL images, an (N, H, W, 3) array or an (N, 3, H, W) tensor in [0, 1]."""

    images: list[Image.Image] | np.ndarray | torch.Tensor


def _as_list(value: str | Sequence[str] | None, n: int, name: str) -> list[str]:
    if value is None:
        return [""] * n
    if isinstance(value, str):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries for {n} images; give one string or one per image")
    return value


def _check_self_ensemble(n: int, name: str) -> None:
    if n not in SELF_ENSEMBLE_SIZES:
        raise ValueError(f"{name} must be one of {', '.join(map(str, SELF_ENSEMBLE_SIZES))} (views averaged), got {n}")


def _check_attention_window(pixels: int, name: str) -> None:
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 0:
        raise ValueError(f"{name} must be a whole number of pixels >= 0 (0: attend over the whole image), got {pixels!r}")


def _offset_callback(callback: Callable[[int, int], None], view: int, views: int) -> Callable[[int, int], None]:
    """``callback(step, total)`` counted over all the views of a self-ensemble, not restarted per view."""
    return lambda step, total: callback(view * total + step, views * total)


def _to_tensor(image: ImageInput) -> torch.Tensor:
    """Any supported image input -> (B, 3, H, W) float32 in [0, 1]."""
    if isinstance(image, Image.Image):
        return pil_to_tensor(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        array = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(f"numpy images must be (H, W, 3) or (B, H, W, 3), got {image.shape}")
        return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()
    if isinstance(image, torch.Tensor):
        tensor = image.unsqueeze(0) if image.dim() == 3 else image
        if tensor.dim() != 4 or tensor.shape[1] != 3:
            raise ValueError(f"image tensors must be (B, 3, H, W) RGB in [0, 1], got {tuple(image.shape)}")
        if tensor.min() < 0 or tensor.max() > 1:
            raise ValueError(
                f"image values must lie in [0, 1], got [{tensor.min().item():.3f}, {tensor.max().item():.3f}]"
            )
        return tensor.float()
    if isinstance(image, (list, tuple)) and image and all(isinstance(i, Image.Image) for i in image):
        sizes = {i.size for i in image}
        if len(sizes) > 1:
            raise ValueError(
                f"a batch of PIL images must share one size, got {sorted(sizes)}; pass them one by one"
            )
        return torch.cat([pil_to_tensor(i.convert("RGB")) for i in image])
    raise TypeError(f"unsupported image type {type(image).__name__}; pass a PIL image, numpy array or tensor")


def tile_windows(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """Start/end pairs of the fewest windows that cover [0, length) with at most ``tile`` each and neighbours
    overlapping by at least ``overlap``. The windows share one size, the smallest that reaches, and are spread
    evenly, so no pair overlaps more than it must; sizes and starts are multiples of ``multiple`` (``length`` and
    ``tile`` must be). 1024 px in tiles of 512 overlapping 64 gives three windows of 384, not three of 512."""
    if length % multiple or tile % multiple:
        raise ValueError(f"length {length} and tile {tile} must be multiples of {multiple}")
    if length <= tile:
        return [(0, length)]
    n, t = length // multiple, tile // multiple  # in units of `multiple` from here on
    o = min(-(-overlap // multiple), t - 1)
    count = -(-(n - o) // (t - o))  # the fewest windows of t that overlap by o
    size = -(-(n + (count - 1) * o) // count)  # the smallest size that still reaches; <= t
    starts = [i * (n - size) // (count - 1) for i in range(count)]  # gaps differ by at most 1, each <= size - o
    return [(s * multiple, (s + size) * multiple) for s in starts]


def gaussian_weights(height: int, width: int, device, dtype) -> torch.Tensor:
    """Separable Gaussian blending weights for a (height, width) tile, peak 1 at the centre (var = 0.01·size²)."""

    def axis(n: int) -> torch.Tensor:
        x = torch.arange(n, dtype=torch.float64)
        mid = (n - 1) / 2
        return torch.exp(-((x - mid) ** 2) / (n * n) / (2 * 0.01))

    return torch.outer(axis(height), axis(width)).to(device=device, dtype=dtype)


def resolve_model_path(path: str | Path) -> Path:
    """A local folder as given, or a built-in model's packaged folder for a built-in name (e.g. "spire-tiny")."""
    if str(path) in BUILTIN_MODELS and not Path(path).exists():
        return installed_builtin_model(str(path))
    return Path(path)


class SpirePipeline(DiffusionPipeline):
    r"""Semantic prompt-driven image restoration (SPIRE).

    Components:
        vae (`AutoencoderKL`): frozen; images <-> latents.
        text_encoder: frozen transformers encoder (CLIP for Stable Diffusion); reads both prompts.
        tokenizer: its tokenizer.
        unet (`UNet2DConditionModel`): the frozen text-to-image prior; reads the semantic prompt.
        adaptor (`SpireAdaptor`): the trainable ControlNet + modulation fusion; reads y, z_t and c_r.
        scheduler: a diffusers scheduler, DDIM by default.

    Config (saved in ``model_index.json``): ``default_steps`` and ``default_guidance`` are what a call uses when it
    does not say; a model folder sets them to what suits it (a small CPU model may want fewer steps).

    Example::

        pipe = SpirePipeline.from_pretrained("path/to/spire-model")
        out = pipe(image, prompt="a zebra on grass", restoration_prompt="Deblur with sigma 2.0",
                   generator=torch.Generator().manual_seed(0)).images[0]
    """

    model_cpu_offload_seq = "text_encoder->adaptor->unet->vae"

    def __init__(
        self,
        vae: AutoencoderKL | SpireAutoencoderKL | SpaceToDepthAutoencoder,
        text_encoder: torch.nn.Module,
        tokenizer: Any,
        unet: UNet2DConditionModel,
        adaptor: SpireAdaptor,
        scheduler: Any,
        default_steps: int = 20,
        default_guidance: float = 4.0,
        default_strength: float = 1.0,
        default_color_fix: str = "wavelet",
        default_consistency: bool = False,
        default_self_ensemble: int = 1,
        default_attention_window: int = 0,
        default_tile_size: int = 0,
    ) -> None:
        super().__init__()
        adaptor.check_fits(unet)
        if not 0 < default_strength <= 1:
            raise ValueError(f"default_strength must be in (0, 1], got {default_strength}")
        if default_color_fix not in COLOR_FIXES:
            raise ValueError(f"default_color_fix must be one of {', '.join(COLOR_FIXES)}, got {default_color_fix!r}")
        _check_self_ensemble(default_self_ensemble, "default_self_ensemble")
        _check_attention_window(default_attention_window, "default_attention_window")
        if isinstance(default_tile_size, bool) or not isinstance(default_tile_size, int) or default_tile_size < 0:
            raise ValueError(
                f"default_tile_size must be a whole number of pixels >= 0 (0: untiled), got {default_tile_size!r}"
            )
        self.register_to_config(
            default_steps=default_steps, default_guidance=default_guidance, default_strength=default_strength,
            default_color_fix=default_color_fix, default_consistency=bool(default_consistency),
            default_self_ensemble=int(default_self_ensemble), default_attention_window=int(default_attention_window),
            default_tile_size=int(default_tile_size),
        )  # fmt: skip
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            adaptor=adaptor,
            scheduler=scheduler,
        )
        self.vae_scale_factor = vae_scale_factor(vae)
        # latent sizes must divide by the UNet's total downsampling
        self.latent_multiple = 2 ** (len(unet.config.block_out_channels) - 1)

    # ------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> SpirePipeline:  # type: ignore[override]
        """Load a pipeline folder (``vae/``, ``unet/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``,
        ``adaptor/``, ``model_index.json``) from a local path. A hub is never contacted.

        ``"spire-tiny"`` (when no folder of that name exists) loads the small default model that ships inside the
        package, when its weights are installed (``$SPIRE_IR_WEIGHTS/spire-tiny`` overrides the location).

        Raises:
            FileNotFoundError: the folder or one of its components is missing (the message names what was expected).
        """
        path = resolve_model_path(path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"{path}: no such model folder. A SPIRE model folder holds model_index.json and the folders "
                f"{', '.join(c + '/' for c in COMPONENTS)}; make one with `spire new-model`, `spire train` or "
                "SpirePipeline.from_base(...).save_pretrained(DIR)"
            )
        index = path / "model_index.json"
        if not index.is_file():
            raise FileNotFoundError(f"{index}: missing; {path} is not a diffusers-style pipeline folder")
        listed = json.loads(index.read_text())
        missing = [c for c in COMPONENTS if c not in listed or not (path / c).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"{path}: missing component folder(s) {', '.join(m + '/' for m in missing)}; a SPIRE model folder "
                f"needs all of {', '.join(c + '/' for c in COMPONENTS)}"
            )
        for component in ("tokenizer", "text_encoder"):  # a reference to an installed package's encoder
            if component not in kwargs:
                loaded = load_reference(path / component, component)
                if loaded is not None:
                    kwargs[component] = loaded
        kwargs.setdefault("local_files_only", True)
        if "dtype" not in kwargs and "torch_dtype" not in kwargs:
            # weights stored in fp16 still run in fp32 unless a dtype is asked for
            kwargs["dtype"] = torch.float32
        return super().from_pretrained(str(path), **kwargs)

    @classmethod
    def from_base(
        cls,
        base_path: str | Path,
        adaptor: SpireAdaptor | str | Path | None = None,
        fusion: str = "modulation",
        prediction_type: str | None = None,
        torch_dtype: torch.dtype | None = None,
        base_config: str | Path | None = None,
    ) -> SpirePipeline:
        """Build a pipeline on a local Stable Diffusion (or our own small) base model.

        Args:
            base_path: a diffusers folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``)
                or a single ``.safetensors`` SD 1.5 / 2.x checkpoint (loaded with the configs shipped in this
                package, so no hub is needed).
            adaptor: a trained adaptor (or its folder); a fresh one is made from the UNet when None.
            fusion: fusion mode of a fresh adaptor.
            prediction_type: override the scheduler's ("epsilon" or "v_prediction"; SD 2.x 768 uses v).
            torch_dtype: dtype to load the weights in.
            base_config: for a single-file checkpoint, a diffusers-layout folder of component configs to use
                instead of the shipped SD ones.
        """
        from spire_ir.models.loading import load_base_components

        components = load_base_components(
            Path(base_path), prediction_type=prediction_type, torch_dtype=torch_dtype, config=base_config
        )
        vae_factor = 2 ** (len(components["vae"].config.block_out_channels) - 1)
        if adaptor is None:
            adaptor = SpireAdaptor.from_unet(components["unet"], fusion=fusion, vae_scale_factor=vae_factor)
        elif not isinstance(adaptor, SpireAdaptor):
            adaptor = SpireAdaptor.from_pretrained(str(adaptor), local_files_only=True)
        if torch_dtype is not None and adaptor.dtype != torch_dtype:
            adaptor = adaptor.to(dtype=torch_dtype)
        return cls(adaptor=adaptor, **components)

    # ------------------------------------------------------------------------------------------ pieces

    @property
    def train_ranges(self) -> dict[str, list[float]] | None:
        """Each op's range of values in the adaptor's training ({"deblur": [0.2, 4.0]}), as ``spire train``
        records it; None for adaptors trained before it did (the prompt parser then uses Table 2's ranges)."""
        return getattr(self.adaptor.config, "train_ranges", None)

    def restoration_as_trained(self, texts: Sequence[str]) -> list[str]:
        """c_r in the form the adaptor was trained on: canonical text (``prompts.canonical``: "deblur σ=2" ->
        "Deblur with sigma 2.0", "" -> "Remove all degradation"), then the variant of
        ``adaptor.config.restoration_prompt`` (an adaptor trained on op types only reads "Deblur"). Warns when
        the variant rewrites a prompt, and (``PromptWarning``) about text the grammar cannot read and values
        outside ``train_ranges``."""
        variant = getattr(self.adaptor.config, "restoration_prompt", "with_params")
        texts = [canonical(text, self.train_ranges) for text in texts]
        rewritten = [restoration_prompt_variant(text, variant) for text in texts]
        changed = sorted({f"{a!r} -> {b!r}" for a, b in zip(texts, rewritten, strict=True) if a != b})
        if changed:
            warnings.warn(
                f"this adaptor was trained on restoration prompts written {variant!r}, so it reads "
                f"{', '.join(changed)}",
                UserWarning,
                stacklevel=3,
            )
        return rewritten

    def encode_prompt(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, L, D) text embeddings for B prompts (identical prompts are encoded once)."""
        unique = list(dict.fromkeys(texts))
        embeds = encode_text(self.tokenizer, self.text_encoder, unique, device=self._execution_device,
                             warn_truncation=True)  # fmt: skip
        lookup = {text: embeds[i] for i, text in enumerate(unique)}
        return torch.stack([lookup[t] for t in texts])

    def _encode_latents(self, image: torch.Tensor) -> torch.Tensor:
        """VAE posterior mean of a [0, 1] image, scaled; image: (B, 3, H, W)."""
        latent = self.vae.encode(image.to(self.vae.dtype) * 2 - 1).latent_dist.mode()
        return to_model_latents(self.vae, latent)

    def _decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        image = self.vae.decode(from_model_latents(self.vae, latents.to(self.vae.dtype))).sample.float()
        return image.add_(1).div_(2).clamp_(0, 1)

    def _set_vae_tiling(self, tile_size: int | None, tile_overlap: int) -> dict | None:
        """Turn on diffusers' tiled VAE with our tile size; returns the old settings to restore."""
        vae = self.vae
        if tile_size is None or not hasattr(vae, "tile_sample_min_size"):  # a pixel-space map needs no tiling
            return None
        old = {
            k: getattr(vae, k)
            for k in ("use_tiling", "tile_sample_min_size", "tile_latent_min_size", "tile_overlap_factor")
        }
        vae.use_tiling = True
        vae.tile_sample_min_size = tile_size
        vae.tile_latent_min_size = tile_size // self.vae_scale_factor
        vae.tile_overlap_factor = min(0.5, max(0.0625, tile_overlap / tile_size))
        return old

    def _model_output(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        condition: torch.Tensor,
        prompt_embeds: torch.Tensor,
        restoration_embeds: torch.Tensor,
        numeric: torch.Tensor | None,
        guidance_scale: float,
        adaptor_scale: float,
    ) -> torch.Tensor:
        """The model output (ε̂, v̂, or a bridge model's x̂₀ residual) with CFG on the semantic prompt when
        ``prompt_embeds`` holds both halves [∅, c_s]; the adaptor runs once for both."""
        model_input = self.scheduler.scale_model_input(latents, t)
        modulation = self.adaptor(
            model_input.to(self.adaptor.dtype),
            t,
            condition.to(self.adaptor.dtype),
            restoration_embeds.to(self.adaptor.dtype),
            scale=adaptor_scale,
            numeric=numeric,
        )
        do_cfg = prompt_embeds.shape[0] == 2 * latents.shape[0]
        if do_cfg:
            model_input = torch.cat([model_input, model_input])
            modulation = modulation.repeat(2)
        with modulate_unet(self.unet, modulation.to(self.unet.dtype)):
            output = self.unet(model_input.to(self.unet.dtype), t, encoder_hidden_states=prompt_embeds).sample
        if do_cfg:
            uncond, cond = output.chunk(2)
            output = uncond + guidance_scale * (cond - uncond)
        return output.float()

    # ------------------------------------------------------------------------------------------ sampling

    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput,
        prompt: str | Sequence[str] = "",
        restoration_prompt: str | Sequence[str] = "Remove all degradation",
        negative_prompt: str | Sequence[str] = "",
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_images_per_prompt: int = 1,
        start: str = "noised_lq",
        strength: float | None = None,
        adaptor_scale: float = 1.0,
        color_fix: str | None = None,
        consistency: bool | None = None,
        self_ensemble: int | None = None,
        attention_window: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int = 64,
        tile_vae: bool = True,
        output_type: str = "pil",
        return_dict: bool = True,
        callback: Callable[[int, int], None] | None = None,
    ) -> SpirePipelineOutput | tuple:
        r"""Restore images.

        Args:
            image: (B, 3, H, W) tensor in [0, 1], a PIL image, a list of same-size PIL images, or an (H, W, 3) array.
                Any size: it is padded to the model's multiple and cropped back.
            prompt: the semantic prompt c_s (what the picture shows); one, or one per image. "" = none.
            restoration_prompt: c_r (what to fix and how strongly), e.g. "Deblur with sigma 2.0, Denoise with
                sigma 0.05"; "Remove all degradation" for blind restoration.
            negative_prompt: the unconditional half of CFG (∅ = "" as in training).
            num_inference_steps: sampling steps K (default: the model's ``default_steps``, 20 unless it says
                otherwise).
            guidance_scale: w for classifier-free guidance on c_s; <= 1 disables CFG (one UNet pass per step).
                CFG is skipped, as it changes nothing, when every semantic prompt equals its negative prompt
                (e.g. both ""). Default: the model's ``default_guidance`` (4.0 unless it says otherwise).
            generator: randomness for the starting noise and stochastic steps (one, or one per output image).
            num_images_per_prompt: samples per input image.
            start: for noise schedulers (DDIM, Euler, DPM++, UniPC): "noised_lq" starts from the latent of y
                noised to the first timestep (keeps global colour); "noise" starts from pure noise, as the paper
                describes. A bridge scheduler (``ResShiftScheduler``) always starts at y + κε.
            strength: the fraction of the restoration applied, in (0, 1]. With a noise scheduler and "noised_lq",
                the fraction of the schedule run (img2img); with ``ResShiftScheduler``, the bridge stops at
                t_stop = 1 − strength and returns x̂₀ + t_stop·(y − x̂₀). Default: the model's
                ``default_strength`` (1.0 unless its folder sets one).
            adaptor_scale: multiplies (γ, β); 1.0 = as trained.
            color_fix: "wavelet", "adain" or "none" (take low frequencies from y). Default: the model's
                ``default_color_fix`` ("wavelet" for VAE models; "none" for pixel-space spire-tiny).
            consistency: make each output agree with the degradation its restoration prompt states (blur and
                down-up resampling by a linear solve, a lone JPEG op by projection onto its quantisation bins;
                ``spire_ir.pipeline.consistency``). Applies at strength 1 only; blind prompts and denoise alone
                are left as sampled. Default: the model's ``default_consistency`` (on for spire-tiny).
            self_ensemble: restore this many flips and quarter-turns of each image (1, 2, 4 or 8) and average
                them, before the colour fix and data consistency (``spire_ir.pipeline.ensemble``); costs that many
                times the sampling. Default: the model's ``default_self_ensemble`` (1 unless its folder sets one).
            attention_window: run the prior's and the adaptor's self-attention in windows of at most this many
                pixels a side (``spire_ir.models.attention``); 0 = over the whole image. Set it to the training crop
                size: it then matches what the weights saw and keeps the cost linear in the image's area. Default:
                the model's ``default_attention_window`` (0 unless its folder sets one; 128 for spire-tiny).
            tile_size: latent-tiled sampling and tiled VAE with tiles of at most this many pixels a side when the
                image is larger: the fewest tiles that overlap by ``tile_overlap``, all one size, spread evenly
                (``tile_windows``); 0 = untiled. Default: the model's ``default_tile_size`` (0 unless its folder
                sets one; 512 for spire-tiny, which, trained on 128² crops, restores noise better in smaller
                tiles than in one piece, for more time: MODEL_CARD.md).
            tile_overlap: the least overlap between tiles, pixels.
            tile_vae: also encode/decode in tiles when tiling (turn off to trade memory for seamless VAE passes).
            output_type: "pil", "np" or "pt".
            callback: called as callback(step, total) after each step.

        Returns:
            ``SpirePipelineOutput`` with B·num_images_per_prompt images of the input size (or a tuple).
        """
        # 1. check and normalise inputs
        pixels = _to_tensor(image)
        batch = pixels.shape[0]
        if start not in ("noised_lq", "noise"):
            raise ValueError(f"start must be 'noised_lq' or 'noise', got {start!r}")
        if strength is None:
            strength = float(self.config.default_strength)
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        if num_inference_steps is None:
            num_inference_steps = int(self.config.default_steps)
        if guidance_scale is None:
            guidance_scale = float(self.config.default_guidance)
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if color_fix is None:
            color_fix = str(self.config.get("default_color_fix", "wavelet"))
        if consistency is None:
            consistency = bool(self.config.get("default_consistency", False))
        if self_ensemble is None:
            self_ensemble = int(self.config.get("default_self_ensemble", 1))
        _check_self_ensemble(self_ensemble, "self_ensemble")
        if attention_window is None:
            attention_window = int(self.config.get("default_attention_window", 0))
        _check_attention_window(attention_window, "attention_window")
        semantic = _as_list(prompt, batch, "prompt")
        stated = _as_list(restoration_prompt, batch, "restoration_prompt")
        restoration = self.restoration_as_trained(stated)
        negative = _as_list(negative_prompt, batch, "negative_prompt")
        repeat = num_images_per_prompt
        semantic, restoration, negative, stated = (
            [p for p in ps for _ in range(repeat)] for ps in (semantic, restoration, negative, stated)
        )
        device = self._execution_device
        pixels = (pixels.repeat_interleave(repeat, dim=0) if repeat > 1 else pixels).to(device)
        total = batch * repeat

        # 2. check the tiling options
        multiple = self.vae_scale_factor * self.latent_multiple
        if tile_size is None:
            tile_size = int(self.config.get("default_tile_size", 0))
        if tile_size:
            if tile_size % multiple:
                raise ValueError(
                    f"tile_size must be a multiple of {multiple} pixels for this model, got {tile_size}"
                )
            if not 0 <= tile_overlap < tile_size:
                raise ValueError(f"tile_overlap must be in [0, tile_size), got {tile_overlap}")

        # 3. encode both prompts; CFG batch is [negative, semantic] (skipped when they are the same texts)
        do_cfg = guidance_scale > 1.0 and semantic != negative
        prompt_embeds = self.encode_prompt(semantic)
        if do_cfg:
            prompt_embeds = torch.cat([self.encode_prompt(negative), prompt_embeds])
        prompt_embeds = prompt_embeds.to(self.unet.dtype)
        restoration_embeds = self.encode_prompt(restoration)
        numeric = restoration_numbers(restoration).to(device) if self.adaptor.config.numeric_channel else None

        # 4-7. sample each view of the images (the images themselves unless self_ensemble > 1), average the views
        restored = torch.zeros(pixels.shape, dtype=torch.float32, device=device)
        window = attention_window // self.vae_scale_factor  # in latent cells
        with attention_windows([self.unet, self.adaptor.controlnet], window):
            for view in range(self_ensemble):
                sampled = self._sample(
                    dihedral(pixels, view), prompt_embeds, restoration_embeds, numeric, num_inference_steps,
                    guidance_scale, adaptor_scale, start, strength, generator, tile_size, tile_overlap, tile_vae,
                    None if callback is None else _offset_callback(callback, view, self_ensemble),
                )  # fmt: skip
                restored += dihedral(sampled, view, inverse=True)
        restored /= self_ensemble
        restored = apply_color_fix(restored, pixels.float(), color_fix)
        if consistency and strength == 1:  # the degradation c_r states as written, before any ablation variant
            restored = torch.cat([
                data_consistency(restored[i : i + 1], pixels[i : i + 1].float(), stated[i]) for i in range(total)
            ])  # fmt: skip

        # 8. output
        self.maybe_free_model_hooks()
        if output_type == "pt":
            images: Any = restored.cpu()
        elif output_type == "np":
            images = restored.permute(0, 2, 3, 1).cpu().numpy()
        else:
            images = [tensor_to_pil(img) for img in restored]
        return SpirePipelineOutput(images=images) if return_dict else (images,)

    def _sample(
        self, pixels, prompt_embeds, restoration_embeds, numeric, num_inference_steps, guidance_scale, adaptor_scale,
        start, strength, generator, tile_size, tile_overlap, tile_vae, callback,
    ) -> torch.Tensor:
        """Sample one (B, 3, H, W) batch in [0, 1] to its restoration, (B, 3, H, W) float32: steps 4-7 of
        ``__call__`` (pad to the latent multiple, timesteps, starting latents, the denoising loop, decode)."""
        total, _, height, width = pixels.shape
        device = pixels.device
        multiple = self.vae_scale_factor * self.latent_multiple
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        condition = F.pad(pixels, (0, pad_w, 0, pad_h), mode=mode) if pad_h or pad_w else pixels
        tiled = bool(tile_size) and max(condition.shape[-2:]) > tile_size
        old_tiling = self._set_vae_tiling(tile_size if tiled and tile_vae else None, tile_overlap)
        bridge = getattr(self.scheduler, "starts_from_condition", False)

        try:
            # 4. timesteps: a bridge runs from y to t_stop = 1 − strength; a noise schedule runs its last
            # `strength` fraction from the noised input (img2img)
            order = getattr(self.scheduler, "order", 1)
            if bridge:
                self.scheduler.set_timesteps(num_inference_steps, device=device, t_stop=1.0 - strength)
                timesteps = self.scheduler.timesteps
            else:
                self.scheduler.set_timesteps(num_inference_steps, device=device)
                timesteps = self.scheduler.timesteps
                if start == "noised_lq":
                    keep = min(max(round(num_inference_steps * strength), 1), num_inference_steps)
                    begin = (num_inference_steps - keep) * order
                    timesteps = timesteps[begin:]
                    if hasattr(self.scheduler, "set_begin_index"):
                        self.scheduler.set_begin_index(begin)

            # 5. starting latents
            latent_shape = (
                total,
                self.unet.config.in_channels,
                condition.shape[-2] // self.vae_scale_factor,
                condition.shape[-1] // self.vae_scale_factor,
            )
            lq_latents = self._encode_latents(condition).float() if bridge or start == "noised_lq" else None
            if bridge:
                latents = self.scheduler.start(lq_latents, generator=generator)
            else:
                noise = randn_tensor(latent_shape, generator=generator, device=device, dtype=torch.float32)
                if start == "noised_lq":
                    latents = self.scheduler.add_noise(lq_latents, noise, timesteps[:1])
                else:
                    latents = noise * self.scheduler.init_noise_sigma
            step_kwargs = self._step_kwargs(generator, lq_latents)

            # 6. the denoising loop
            windows = self._windows(latent_shape[-2:], tile_size, tile_overlap) if tiled else None
            for step, t in enumerate(self.progress_bar(timesteps)):
                args = (prompt_embeds, restoration_embeds, numeric, guidance_scale, adaptor_scale)
                if windows is None:
                    output = self._model_output(latents, t, condition, *args)
                else:
                    output = self._tiled_model_output(latents, t, condition, windows, *args)
                latents = self.scheduler.step(output, t, latents, **step_kwargs).prev_sample
                if callback is not None:
                    callback(step + 1, len(timesteps))

            # 7. decode, crop the padding
            return self._decode_latents(latents)[..., :height, :width].float()
        finally:
            if old_tiling is not None:
                for key, value in old_tiling.items():
                    setattr(self.vae, key, value)

    def _step_kwargs(self, generator, condition_latents: torch.Tensor | None) -> dict[str, Any]:
        """The keyword arguments this scheduler's ``step`` takes: DDIM's eta = 0, a generator for stochastic
        schedulers, and y's latents for a bridge (diffusers' ``prepare_extra_step_kwargs``, extended)."""
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in accepted:
            kwargs["eta"] = 0.0
        if "generator" in accepted:
            kwargs["generator"] = generator
        if "condition" in accepted:
            kwargs["condition"] = condition_latents
        return kwargs

    def tiles(self, height: int, width: int, tile_size: int, tile_overlap: int) -> list[tuple[int, int, int, int]]:
        """(top, bottom, left, right) pixel windows in which an image of (height, width) is sampled: the image
        padded to the model's multiple, cut by ``tile_windows`` when it is larger than ``tile_size`` (0: never)."""
        multiple = self.vae_scale_factor * self.latent_multiple
        padded = [-(-side // multiple) * multiple for side in (height, width)]
        if not tile_size or max(padded) <= tile_size:
            return [(0, padded[0], 0, padded[1])]
        rows, cols = (tile_windows(side, tile_size, tile_overlap, multiple) for side in padded)
        return [(r0, r1, c0, c1) for r0, r1 in rows for c0, c1 in cols]

    def _windows(self, latent_hw: tuple[int, int], tile_size: int, tile_overlap: int):
        """``tiles`` in latent cells."""
        f = self.vae_scale_factor
        windows = self.tiles(latent_hw[0] * f, latent_hw[1] * f, tile_size, tile_overlap)
        return [(r0 // f, r1 // f, c0 // f, c1 // f) for r0, r1, c0, c1 in windows]

    def _tiled_model_output(
        self, latents, t, condition, windows, prompt_embeds, restoration_embeds, numeric, guidance, adaptor_scale
    ):
        """Model output per latent tile (paired with its crop of y), blended with Gaussian weights."""
        f = self.vae_scale_factor
        accumulated = torch.zeros_like(latents)
        weight_sum = torch.zeros_like(latents[:1, :1])
        for r0, r1, c0, c1 in windows:
            tile_out = self._model_output(
                latents[..., r0:r1, c0:c1],
                t,
                condition[..., r0 * f : r1 * f, c0 * f : c1 * f],
                prompt_embeds,
                restoration_embeds,
                numeric,
                guidance,
                adaptor_scale,
            )
            weight = gaussian_weights(r1 - r0, c1 - c0, latents.device, latents.dtype)
            accumulated[..., r0:r1, c0:c1] += tile_out * weight
            weight_sum[..., r0:r1, c0:c1] += weight
        return accumulated / weight_sum

    # convenient for `spire new-model` and tests
    @property
    def num_parameters(self) -> dict[str, int]:
        return {
            name: sum(p.numel() for p in getattr(self, name).parameters())
            for name in ("vae", "text_encoder", "unet", "adaptor")
        }
