"""Grow a trained spire-tiny pipeline to two resnets per level without changing what it computes.

    python recipes/spire-tiny/grow.py runs/spire-tiny-v2/stage7-model -o runs/spire-tiny-v2/stage7-grown

The prior and the adaptor's ControlNet go from ``layers_per_block`` 1 to 2. Each new block starts as the identity
on what the old network passes through it, so the grown pipeline restores exactly as the source does and training
on adds capacity instead of starting again (function-preserving growth):

* a new down resnet r' follows the old one r; its last conv starts at zero, so r'(h) = h. In the cross-attention
  levels its transformer's ``proj_out`` starts at zero, so the attention adds nothing either;
* each up block consumes one more skip. The copied first up resnet reads the new skip r' (equal to r at the
  start); a new second resnet reads r, passes the hidden state through its 1×1 shortcut ([I | 0]) and adds its
  zero-initialised last conv; the copied old second resnet reads the downsampler's skip as before;
* the fusion conv of r is copied to both r and r', so every skip is modulated as the old one was.

The new layers' other weights take diffusers' usual random start (``--seed``). The script checks on random inputs
that the grown prior, steered by the grown adaptor, gives the source's output, and refuses to save otherwise.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import torch


def _up_key(key: str) -> str:
    """An old UNet key -> its place in the grown UNet: each up block's second resnet and attention become the third."""
    return re.sub(r"^(up_blocks\.\d+\.(?:resnets|attentions))\.1\.", r"\1.2.", key)


def _new_skip_index(old_index: int, num_levels: int) -> list[int]:
    """Old skip index -> indices in the grown skip list (layers_per_block 1 -> 2).

    Old order: conv_in, then per level [r, d] (no d on the last level), then mid. New order: conv_in, then per
    level [r, r', d]. The old r's fusion conv goes to both r and r'.
    """
    old = ["in"]
    new = ["in"]
    for level in range(num_levels):
        old += [f"r{level}"]
        new += [f"r{level}", f"r'{level}"]
        if level < num_levels - 1:
            old.append(f"d{level}")
            new.append(f"d{level}")
    old.append("mid")
    new.append("mid")
    name = old[old_index]
    if name.startswith("r"):
        return [new.index(name), new.index("r'" + name[1:])]
    return [new.index(name)]


@torch.no_grad()
def _identity_start(model: torch.nn.Module, up: bool) -> None:
    """Zero the last conv of each new resnet and the proj_out of each new transformer (index 1 in each block)."""
    for block in model.down_blocks:
        block.resnets[1].conv2.weight.zero_()
        block.resnets[1].conv2.bias.zero_()
        if getattr(block, "attentions", None):
            block.attentions[1].proj_out.weight.zero_()
            block.attentions[1].proj_out.bias.zero_()
    if not up:
        return
    for block in model.up_blocks:
        resnet = block.resnets[1]
        resnet.conv2.weight.zero_()
        resnet.conv2.bias.zero_()
        out = resnet.conv_shortcut.out_channels
        resnet.conv_shortcut.weight.zero_()
        resnet.conv_shortcut.weight[:, :out, 0, 0] = torch.eye(out)  # cat([h, skip]) -> h
        resnet.conv_shortcut.bias.zero_()
        if getattr(block, "attentions", None):
            block.attentions[1].proj_out.weight.zero_()
            block.attentions[1].proj_out.bias.zero_()


def grow(pipe, seed: int):
    """(grown UNet, grown adaptor) for a loaded fp32 SpirePipeline with layers_per_block 1."""
    from diffusers import UNet2DConditionModel

    from spire_ir.models.adaptor import SpireAdaptor, skip_channels

    unet, adaptor = pipe.unet, pipe.adaptor
    if unet.config.layers_per_block != 1:
        raise SystemExit(f"expects layers_per_block 1, the source has {unet.config.layers_per_block}")
    config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    a_config = {k: v for k, v in adaptor.config.items() if not k.startswith("_")}
    cn_config = {**a_config["controlnet_config"], "layers_per_block": 2}
    cn_config.pop("class_embed_type", None)  # the adaptor sets it again for the numeric channel
    with torch.random.fork_rng():  # the new layers' random start, leaving the caller's global RNG as it was
        torch.manual_seed(seed)
        new_unet = UNet2DConditionModel(**{**config, "layers_per_block": 2})
        new_adaptor = SpireAdaptor(
            **{
                **a_config,
                "controlnet_config": cn_config,
                "skip_channels": skip_channels(new_unet.config),
                "base_unet": {**a_config["base_unet"], "layers_per_block": 2},
            }
        )
    state = new_unet.state_dict()
    for key, value in unet.state_dict().items():
        state[_up_key(key)] = value
    new_unet.load_state_dict(state)
    _identity_start(new_unet, up=True)

    state = new_adaptor.state_dict()
    levels = len(config["block_out_channels"])
    for key, value in adaptor.state_dict().items():
        match = re.match(r"^fusion_convs\.(\d+)\.(.*)$", key)
        if match:
            for index in _new_skip_index(int(match.group(1)), levels):
                state[f"fusion_convs.{index}.{match.group(2)}"] = value
        else:
            state[key] = value
    new_adaptor.load_state_dict(state)
    _identity_start(new_adaptor.controlnet, up=False)
    return new_unet, new_adaptor


def steered_output(unet, adaptor, seed: int, size: int = 64) -> torch.Tensor:
    """The prior's output under the adaptor's modulation for fixed random inputs."""
    from spire_ir.models.adaptor import modulate_unet
    from spire_ir.models.numeric import NUMERIC_DIM

    g = torch.Generator().manual_seed(seed)
    channels = unet.config.in_channels
    sample = torch.randn(2, channels, size // 2, size // 2, generator=g)
    condition = torch.rand(2, 3, size, size, generator=g)
    text = torch.randn(2, 7, unet.config.cross_attention_dim, generator=g)
    restoration = torch.randn(2, 9, unet.config.cross_attention_dim, generator=g)
    numeric = torch.rand(2, NUMERIC_DIM, generator=g)
    t = torch.tensor([1000.0, 400.0])
    modulation = adaptor(sample, t, condition, restoration, numeric=numeric)
    with modulate_unet(unet, modulation):
        return unet(sample, t, encoder_hidden_states=text).sample


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="a spire-tiny pipeline folder with layers_per_block 1")
    parser.add_argument("-o", "--output", required=True, help="the grown pipeline folder to write (new)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the new layers' random start")
    args = parser.parse_args()
    from spire_ir.pipeline import SpirePipeline

    output = Path(args.output)
    if output.exists():
        raise SystemExit(f"{output} exists; give a new folder")
    pipe = SpirePipeline.from_pretrained(args.source)
    unet, adaptor = grow(pipe, args.seed)
    with torch.no_grad():
        before = steered_output(pipe.unet.eval(), pipe.adaptor.eval(), seed=1)
        after = steered_output(unet.eval(), adaptor.eval(), seed=1)
    error = (before - after).abs().max().item()
    if error > 1e-4:
        raise SystemExit(f"the grown network differs from the source by {error:.3g}; nothing saved")
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(args.source, tmp)
    for name, model in (("unet", unet), ("adaptor", adaptor)):
        shutil.rmtree(tmp / name)
        model.save_pretrained(tmp / name)
    tmp.rename(output)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    print(
        f"{args.source} -> {output}: prior {count(pipe.unet):.2f} -> {count(unet):.2f} M, adaptor "
        f"{count(pipe.adaptor):.2f} -> {count(adaptor):.2f} M parameters; max |difference| {error:.2e}"
    )


if __name__ == "__main__":
    main()
