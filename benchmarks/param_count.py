"""Parameter counts of the SPIRE adaptor on a Stable Diffusion UNet config (no weights needed: meta tensors).

    python benchmarks/param_count.py                # SD 1.5's shipped UNet config
    python benchmarks/param_count.py --base sd21

Prints the frozen UNet, the adaptor in total, and the adaptor's parts: the ControlNet copy of the UNet encoder
(with its conditioning embedding E') and the modulation-fusion 1x1 convs.
"""

from __future__ import annotations

import argparse
import json
from importlib.resources import files

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="sd15", choices=("sd15", "sd21", "sd21-base"))
    args = parser.parse_args()

    from diffusers import UNet2DConditionModel

    from spire_ir.models.adaptor import SpireAdaptor

    config = json.loads((files("spire_ir") / "configs" / args.base / "unet" / "config.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
        adaptor = SpireAdaptor.from_unet(unet)
    parts: dict[str, int] = {}
    for name, parameter in adaptor.named_parameters():
        parts[name.split(".")[0]] = parts.get(name.split(".")[0], 0) + parameter.numel()
    print(f"{args.base} UNet (frozen): {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M")
    print(f"adaptor (trainable): {sum(parts.values()) / 1e6:.2f} M")
    for name, count in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"  {name}: {count / 1e6:.2f} M")


if __name__ == "__main__":
    main()
