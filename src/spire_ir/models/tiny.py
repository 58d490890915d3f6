"""Tiny SPIRE components built from configs in well under a second, with no downloads.

Real diffusers/transformers classes at tiny sizes, randomly initialised and seeded: a factor-8 VAE (so E'
downsamples exactly as in production), a 2-level UNet, a 2-layer CLIP text encoder and a byte-level BPE tokenizer
written to disk on the spot; and the bridge variant (lossless f = 2 pixel space, ``ResShiftScheduler``). They back
``spire new-model --preset tiny``, priors trained from scratch (``spire train-base``) and the test suite.
``SD_SCHEDULER`` is Stable Diffusion's DDIM configuration.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["SD_SCHEDULER", "TINY_UNET", "TINY_VAE", "tiny_bridge_components", "tiny_components"]

TINY_UNET: dict[str, Any] = {
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "norm_num_groups": 8,
    "attention_head_dim": 8,
}
TINY_VAE: dict[str, Any] = {
    "block_out_channels": (8, 8, 8, 8),
    "layers_per_block": 1,
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "norm_num_groups": 2,
    "sample_size": 64,
}
SD_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


def tiny_components(
    seed: int = 0,
    fusion: str = "modulation",
    tokenizer_dir: str | Path | None = None,
    prediction_type: str = "epsilon",
) -> dict[str, Any]:
    """vae, text_encoder, tokenizer, unet, adaptor and scheduler of a tiny pipeline (random weights, seeded).

    Args:
        seed: each component is built after ``torch.manual_seed(seed)`` in a forked RNG (the caller's RNG is untouched).
        fusion: the adaptor's fusion mode.
        tokenizer_dir: where to write the tokenizer files (a temporary folder by default).
        prediction_type: "epsilon" or "v_prediction".
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from spire_ir.models.adaptor import SpireAdaptor
    from spire_ir.models.text import write_byte_bpe_tokenizer

    if tokenizer_dir is None:
        tokenizer_dir = tempfile.mkdtemp(prefix="spire-tiny-tokenizer-")
    tokenizer = write_byte_bpe_tokenizer(tokenizer_dir)
    vocab = len(tokenizer)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        vae = AutoencoderKL(**TINY_VAE)
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**TINY_UNET)
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=vocab,
                max_position_embeddings=77,
                bos_token_id=vocab - 2,
                eos_token_id=vocab - 1,
                pad_token_id=vocab - 1,
            )
        )
        torch.manual_seed(seed)
        adaptor = SpireAdaptor.from_unet(unet, fusion=fusion, vae_scale_factor=8)
    for module in (vae, unet, text_encoder):
        module.requires_grad_(False).eval()
    scheduler = DDIMScheduler(**{**SD_SCHEDULER, "prediction_type": prediction_type})
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "unet": unet,
        "adaptor": adaptor,
        "scheduler": scheduler,
    }


def tiny_bridge_components(
    seed: int = 0, kappa: float = 0.05, stochastic: bool = False, layers_per_block: int | None = None
) -> dict[str, Any]:
    """Components of a tiny spire-tiny-style pipeline (random weights, seeded): the lossless f = 2 pixel space,
    a 12-channel residual UNet prior, the tiny CLIP, a ``ResShiftScheduler`` and an adaptor with the unshuffle stem
    and the numeric channel. The prior's output conv is random (not zero) so that the prior does something.
    ``layers_per_block`` overrides ``TINY_UNET``'s resnets per level (the adaptor follows the prior)."""
    from diffusers import UNet2DConditionModel

    from spire_ir.models.adaptor import SpireAdaptor
    from spire_ir.models.pixel_space import SpaceToDepthAutoencoder
    from spire_ir.schedulers import ResShiftScheduler

    components = tiny_components(seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet_config = {**TINY_UNET, "in_channels": 12, "out_channels": 12}
        if layers_per_block is not None:
            unet_config["layers_per_block"] = layers_per_block
        unet = UNet2DConditionModel(**unet_config).requires_grad_(False)
        torch.manual_seed(seed)
        adaptor = SpireAdaptor.from_unet(
            unet, vae_scale_factor=2, condition_stem="unshuffle", stem_channels=16, numeric_channel=True
        )
    vae = SpaceToDepthAutoencoder(factor=2)
    adaptor.init_condition_stem(vae)
    components.update(
        vae=vae, unet=unet.eval(), adaptor=adaptor, scheduler=ResShiftScheduler(kappa=kappa, stochastic=stochastic)
    )
    return components
