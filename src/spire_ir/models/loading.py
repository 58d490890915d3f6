"""Loading frozen base models (Stable Diffusion 1.5 / 2.x or our own small ones) from local paths only.

A diffusers folder is read component by component. A single-file ``.safetensors`` checkpoint in the original
Stable Diffusion layout is converted with diffusers' single-file loader, using the component configs shipped in
``spire_ir/configs/`` instead of looking them up on a hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["load_base_components", "shipped_config_dir"]

BASE_COMPONENTS = {
    "unet": "UNet2DConditionModel weights + config.json",
    "vae": "AutoencoderKL (or SpireAutoencoderKL) weights + config.json",
    "text_encoder": "a transformers text encoder (config.json + weights)",
    "tokenizer": "its tokenizer files (e.g. vocab.json + merges.txt for CLIP)",
    "scheduler": "scheduler_config.json",
}


def shipped_config_dir(name: str) -> Path:
    """The packaged diffusers-layout config folder for "sd15", "sd21" or "sd21-base" ("clip": the CLIP BPE file)."""
    from importlib.resources import files

    path = Path(str(files("spire_ir") / "configs" / name))
    if not path.is_dir():
        raise ValueError(f"no shipped config {name!r}; choose sd15, sd21, sd21-base or clip")
    return path


def _scheduler(config: dict, prediction_type: str | None):
    from diffusers import DDIMScheduler

    if config.get("_class_name") == "ResShiftScheduler":  # a pixel-space bridge base (spire train-base, denoise)
        from spire_ir.schedulers import ResShiftScheduler

        if prediction_type is not None:
            raise ValueError("prediction_type applies to DDIM bases; a ResShift base predicts x̂₀")
        return ResShiftScheduler.from_config(config)

    scheduler = DDIMScheduler.from_config(config)
    if prediction_type is not None:
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")
        scheduler = DDIMScheduler.from_config(scheduler.config, prediction_type=prediction_type)
    return scheduler


def _from_folder(base: Path, prediction_type: str | None, torch_dtype: torch.dtype | None) -> dict[str, Any]:
    from diffusers import UNet2DConditionModel
    from transformers import AutoModel, AutoTokenizer

    from spire_ir.models.autoencoder import load_vae

    missing = [f"{name}/ ({what})" for name, what in BASE_COMPONENTS.items() if not (base / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{base}: not a complete diffusers base model; missing {'; '.join(missing)}")
    kwargs: dict[str, Any] = {"local_files_only": True}
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    from diffusers import DDIMScheduler

    from spire_ir.models.text import load_reference

    # a shipped model folder names an installed package's encoder (spire_reference.json) instead of a copy
    text_encoder = load_reference(base / "text_encoder", "text_encoder")
    if text_encoder is None:
        text_encoder = AutoModel.from_pretrained(base / "text_encoder", **kwargs)
    elif torch_dtype is not None:
        text_encoder = text_encoder.to(torch_dtype)
    tokenizer = load_reference(base / "tokenizer", "tokenizer")
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(base / "tokenizer", local_files_only=True)
    unet = UNet2DConditionModel.from_pretrained(base / "unet", **kwargs)
    if torch_dtype is None:
        unet = unet.float()  # weights stored in fp16 (a shipped model) train and run in fp32 unless asked
    return {
        "unet": unet,
        "vae": load_vae(base / "vae", **kwargs),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": _scheduler(DDIMScheduler.load_config(base / "scheduler"), prediction_type),
    }


def _detect_single_file_kind(path: Path) -> str:
    """"sd15" (CLIP text encoder) or "sd21" (OpenCLIP) for a checkpoint in the original Stable Diffusion layout."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
    unet_key = "model.diffusion_model.input_blocks.0.0.weight"
    if unet_key not in keys:
        raise ValueError(f"{path}: not a Stable Diffusion 1.x/2.x checkpoint in the original layout (no {unet_key})")
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd21"  # OpenCLIP (SD 2.x)
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd15"  # CLIP ViT-L (SD 1.x)
    raise ValueError(f"{path}: no text encoder (cond_stage_model.*); SD 1.x and 2.x checkpoints hold one")


def _from_single_file(
    path: Path, prediction_type: str | None, torch_dtype: torch.dtype | None, config: Path | None = None
) -> dict[str, Any]:
    from diffusers import StableDiffusionPipeline

    from spire_ir.models.text import clip_tokenizer_from_bpe

    kind = _detect_single_file_kind(path)
    if config is None:
        if kind == "sd21" and prediction_type is None:
            raise ValueError(
                f"{path} is an SD 2.x checkpoint: pass prediction_type='v_prediction' (SD 2.x 768) or 'epsilon' "
                "(SD 2.x base 512); the weights do not say which"
            )
        config = shipped_config_dir(kind if prediction_type != "epsilon" or kind == "sd15" else "sd21-base")
    missing = [name for name in ("unet", "vae", "text_encoder", "scheduler") if not (config / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{config}: a base config folder needs {', '.join(missing)}/ (diffusers layout)")
    if (config / "tokenizer" / "vocab.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(config / "tokenizer", local_files_only=True)
    else:  # SD 1.x pads with <|endoftext|>; SD 2.x (OpenCLIP) pads with "!" (id 0)
        bpe = shipped_config_dir("clip") / "bpe_simple_vocab_16e6.txt.gz"
        pad = "<|endoftext|>" if kind == "sd15" else "!"
        tokenizer = clip_tokenizer_from_bpe(bpe, _cache_dir(kind), pad_token=pad)
    kwargs: dict[str, Any] = {"config": str(config), "local_files_only": True, "tokenizer": tokenizer}
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    pipe = StableDiffusionPipeline.from_single_file(str(path), safety_checker=None, **kwargs)
    return {
        "unet": pipe.unet,
        "vae": pipe.vae,
        "text_encoder": pipe.text_encoder,
        "tokenizer": pipe.tokenizer,
        "scheduler": _scheduler(dict(pipe.scheduler.config), prediction_type),
    }


def _cache_dir(kind: str) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"spire-ir-clip-tokenizer-{kind}-"))


def load_base_components(
    base: Path,
    prediction_type: str | None = None,
    torch_dtype: torch.dtype | None = None,
    config: Path | None = None,
) -> dict[str, Any]:
    """Load vae, unet, text_encoder, tokenizer and a DDIM scheduler from a local base model.

    Args:
        base: a diffusers folder, or a single ``.safetensors`` SD checkpoint.
        prediction_type: override the scheduler's prediction type.
        torch_dtype: dtype for the weights.
        config: for a single-file checkpoint, a diffusers-layout folder of component configs (``unet/``,
            ``vae/``, ``text_encoder/``, ``scheduler/``, optionally ``tokenizer/``) to use instead of the shipped
            SD 1.5 / 2.1 ones: a checkpoint of another width, or one whose scheduler differs.

    Raises:
        FileNotFoundError: the path or a component folder is missing (named in the message).
    """
    base = Path(base)
    if not base.exists():
        raise FileNotFoundError(
            f"{base}: no such base model (a diffusers folder or a .safetensors checkpoint)"
        )
    if base.is_file():
        if base.suffix != ".safetensors":
            raise ValueError(
                f"{base}: only .safetensors checkpoints are loaded (never pickle .ckpt/.bin files)"
            )
        return _from_single_file(base, prediction_type, torch_dtype, None if config is None else Path(config))
    if config is not None:
        raise ValueError(f"{base} is a diffusers folder with its own configs; a base config is for single files")
    return _from_folder(base, prediction_type, torch_dtype)
