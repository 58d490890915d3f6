"""Write a random Stable Diffusion 1.5 checkpoint in the original (CompVis / single-file) key layout.

Test-only: the key names are the inverse of diffusers' single-file conversion for SD 1.x; shapes come from the
diffusers models built on the meta device from the configs spire-ir ships, so nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def _unet_key(key: str) -> str:
    parts = key.split(".")
    renames = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}  # fmt: skip

    def resnet(rest: list[str]) -> str:
        return ".".join([renames.get(rest[0], rest[0]), *rest[1:]])

    head = parts[0]
    if head == "time_embedding":
        return f"time_embed.{ {'linear_1': 0, 'linear_2': 2}[parts[1]] }." + ".".join(parts[2:])
    if head == "conv_in":
        return "input_blocks.0.0." + ".".join(parts[1:])
    if head == "conv_norm_out":
        return "out.0." + ".".join(parts[1:])
    if head == "conv_out":
        return "out.2." + ".".join(parts[1:])
    if head == "down_blocks":
        i, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        if kind == "resnets":
            return f"input_blocks.{3 * i + j + 1}.0." + resnet(rest)
        if kind == "attentions":
            return f"input_blocks.{3 * i + j + 1}.1." + ".".join(rest)
        return f"input_blocks.{3 * (i + 1)}.0.op." + ".".join(rest[1:])  # downsamplers.0.conv.*
    if head == "mid_block":
        kind, j, rest = parts[1], int(parts[2]), parts[3:]
        if kind == "attentions":
            return "middle_block.1." + ".".join(rest)
        return f"middle_block.{2 * j}." + resnet(rest)
    if head == "up_blocks":
        i, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        if kind == "resnets":
            return f"output_blocks.{3 * i + j}.0." + resnet(rest)
        if kind == "attentions":
            return f"output_blocks.{3 * i + j}.1." + ".".join(rest)
        return f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.conv." + ".".join(
            rest[1:]
        )  # upsamplers.0.conv.*
    raise KeyError(key)


def _vae_key(key: str) -> tuple[str, bool]:
    """ldm key, and whether the weight is a 1x1 conv in ldm (attention projections)."""
    parts = key.split(".")
    if parts[0] in ("quant_conv", "post_quant_conv"):
        return key, False
    side, rest = parts[0], parts[1:]
    resnet_names = {"conv_shortcut": "nin_shortcut"}
    if rest[0] == "conv_norm_out":
        return f"{side}.norm_out." + ".".join(rest[1:]), False
    if rest[0] in ("conv_in", "conv_out"):
        return f"{side}." + ".".join(rest), False
    if rest[0] == "mid_block":
        if rest[1] == "resnets":
            return f"{side}.mid.block_{int(rest[2]) + 1}." + ".".join(rest[3:]), False
        names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
        tail = [names[rest[3]], *(rest[5:] if rest[3] == "to_out" else rest[4:])]
        return f"{side}.mid.attn_1." + ".".join(tail), rest[3] != "group_norm" and tail[-1] == "weight"
    i, kind = int(rest[1]), rest[2]
    level = i if side == "encoder" else 3 - i
    block = "down" if side == "encoder" else "up"
    if kind == "resnets":
        j = rest[3]
        return f"{side}.{block}.{level}.block.{j}." + ".".join(
            [resnet_names.get(rest[4], rest[4]), *rest[5:]]
        ), False
    sampler = "downsample" if side == "encoder" else "upsample"
    return f"{side}.{block}.{level}.{sampler}.conv." + ".".join(rest[5:]), False


def write_random_sd15_checkpoint(path: str | Path, seed: int = 0, dtype: torch.dtype = torch.float16) -> dict:
    """Write ``path`` (.safetensors); returns {ldm key: tensor} for a few keys used in checks."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from spire_ir.models.loading import shipped_config_dir

    config = shipped_config_dir("sd15")

    def load(name: str) -> dict:
        data = json.loads((config / name / "config.json").read_text())
        return {k: v for k, v in data.items() if not k.startswith("_")}

    with torch.device("meta"):
        unet = UNet2DConditionModel(**load("unet"))
        vae = AutoencoderKL(**load("vae"))
        text = CLIPTextModel(CLIPTextConfig(**load("text_encoder")))
    generator = torch.Generator().manual_seed(seed)

    def rand(shape):
        return (torch.randn(shape, generator=generator) * 0.02).to(dtype)

    state: dict[str, torch.Tensor] = {}
    for key, value in unet.state_dict().items():
        state["model.diffusion_model." + _unet_key(key)] = rand(value.shape)
    for key, value in vae.state_dict().items():
        ldm, conv = _vae_key(key)
        shape = (*value.shape, 1, 1) if conv else value.shape
        state["first_stage_model." + ldm] = rand(shape)
    for key, value in text.state_dict().items():
        # original checkpoints keep transformers' older "text_model." nesting (flattened in transformers >= 5.6)
        ldm = "cond_stage_model.transformer." + (
            key if key.startswith("text_model.") else "text_model." + key
        )
        state[ldm] = torch.arange(77).unsqueeze(0) if key.endswith("position_ids") else rand(value.shape)
    save_file(state, str(path))
    return {
        k: state[k]
        for k in ("model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.encoder.conv_in.weight")
    }
