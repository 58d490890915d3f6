"""Random Stable Diffusion 1.x / 2.x bases: diffusers folders and single-file checkpoints in the original layout.

Test-only: the key names are the inverse of diffusers' single-file conversion (CLIP for SD 1.x, OpenCLIP for
SD 2.x); shapes come from diffusers models built from the configs spire-ir ships, or from a copy of them scaled
down in width (``scaled_config``), so nothing is downloaded.
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


def _open_clip_keys(text_state: dict) -> dict:
    """CLIPTextModel keys -> OpenCLIP's (``cond_stage_model.model.*``), q/k/v fused into ``in_proj``."""
    prefix, out, fused = "cond_stage_model.model.", {}, {}
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}  # fmt: skip
    for key, value in text_state.items():
        key = key.removeprefix("text_model.")
        if key.endswith("position_ids"):
            continue
        if key == "embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = value
        elif key == "embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key.startswith("final_layer_norm."):
            out[prefix + "ln_final." + key.split(".")[-1]] = value
        else:
            layer, rest = key.removeprefix("encoder.layers.").split(".", 1)
            block = f"{prefix}transformer.resblocks.{layer}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                kind = rest.split(".")[-1]  # weight | bias
                fused.setdefault(f"{block}attn.in_proj_{kind}", {})[rest.split(".")[1]] = value
                continue
            for old, new in names.items():
                rest = rest.replace(old, new)
            out[block + rest] = value
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    return out


def _models(config: Path):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    def load(name: str) -> dict:
        data = json.loads((config / name / "config.json").read_text())
        return {k: v for k, v in data.items() if not k.startswith("_")}

    return (UNet2DConditionModel(**load("unet")), AutoencoderKL(**load("vae")),
            CLIPTextModel(CLIPTextConfig(**load("text_encoder"))))  # fmt: skip


def scaled_config(kind: str, out: Path) -> Path:
    """A copy of the shipped ``kind`` configs (sd15, sd21, sd21-base) at a CPU test's width: the same blocks,
    layers, attention layout, sample size and scheduler, with 32-128 channels and a 2-layer text encoder."""
    import shutil

    from spire_ir.models.loading import shipped_config_dir

    shutil.copytree(shipped_config_dir(kind), out)

    def edit(name: str, **changes) -> None:
        path = out / name / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))

    heads = (
        2 if kind == "sd15" else [1, 2, 4, 4]
    )  # SD 1.x: heads; SD 2.x: head dims per block (as diffusers reads)
    edit("unet", block_out_channels=[32, 64, 128, 128], attention_head_dim=heads, cross_attention_dim=64)
    edit("vae", block_out_channels=[32, 32, 64, 64])
    edit("text_encoder", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
         projection_dim=64)  # fmt: skip
    return out


def write_random_base_folder(config: Path, out: Path, seed: int = 0) -> Path:
    """A diffusers base folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/) of random weights."""
    import shutil

    from spire_ir.models.loading import shipped_config_dir
    from spire_ir.models.text import clip_tokenizer_from_bpe

    torch.manual_seed(seed)  # test-only: diffusers and transformers initialise from the global generator
    for model, name in zip(_models(config), ("unet", "vae", "text_encoder"), strict=True):
        model.save_pretrained(out / name)
    shutil.copytree(config / "scheduler", out / "scheduler")
    pad = json.loads((config / "tokenizer" / "tokenizer_config.json").read_text())["pad_token"]
    bpe = shipped_config_dir("clip") / "bpe_simple_vocab_16e6.txt.gz"
    clip_tokenizer_from_bpe(bpe, out / "bpe", pad_token=pad).save_pretrained(out / "tokenizer")
    shutil.rmtree(out / "bpe")
    return out


def write_random_sd_checkpoint(
    path: str | Path, config: Path, seed: int = 0, dtype: torch.dtype = torch.float16
) -> dict:
    """Write ``path`` (.safetensors) in the original layout for the models of ``config`` (a diffusers-layout
    config folder); SD 2.x (an OpenCLIP ``gelu`` text encoder) gets OpenCLIP keys. Returns a few keys' tensors."""
    from safetensors.torch import save_file

    open_clip = json.loads((config / "text_encoder" / "config.json").read_text())["hidden_act"] == "gelu"
    with torch.device("meta"):
        unet, vae, text = _models(config)
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
    text_state = {k: v for k, v in text.state_dict().items()}
    if open_clip:
        state.update({k: rand(v.shape) for k, v in _open_clip_keys(text_state).items()})
    else:
        for key, value in text_state.items():
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


def write_random_sd15_checkpoint(path: str | Path, seed: int = 0, dtype: torch.dtype = torch.float16) -> dict:
    """A full-size SD 1.5 checkpoint (the shipped configs) of random weights; see ``write_random_sd_checkpoint``."""
    from spire_ir.models.loading import shipped_config_dir

    return write_random_sd_checkpoint(path, shipped_config_dir("sd15"), seed, dtype)
