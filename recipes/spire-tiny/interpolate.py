"""Interpolate the weights of two spire-tiny pipelines of one architecture (weight-space ensembling, WiSE-FT).

    python recipes/spire-tiny/interpolate.py runs/spire-tiny-v2/stage10-model runs/spire-tiny-v2/stage11d-model \
        --alpha 0.5 -o runs/spire-tiny-v2/stage11d-a050

Every trained component (``unet`` and ``adaptor``) becomes (1 − α)·A + α·B, computed in float32 and saved in B's
dtype; the rest of the folder (configs, scheduler, text encoder reference, sampler defaults) is B's. α = 0 gives A's
weights and α = 1 B's, exactly. Fine-tuning B from A on a narrow task and taking an α in between keeps part of
B's gain and part of what A did better, without training.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

COMPONENTS = ("unet", "adaptor")
WEIGHTS = "diffusion_pytorch_model.safetensors"


def interpolate(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 − alpha)·a + alpha·b per tensor, in float32, cast to b's dtype; the two must hold the same keys and shapes."""
    if a.keys() != b.keys():
        missing = sorted(a.keys() ^ b.keys())[:5]
        raise ValueError(f"the two pipelines differ in architecture (keys only in one: {missing} …)")
    out = {}
    for key, tensor in b.items():
        if a[key].shape != tensor.shape:
            raise ValueError(f"{key}: shape {tuple(a[key].shape)} against {tuple(tensor.shape)}")
        mixed = torch.lerp(a[key].float(), tensor.float(), alpha) if tensor.is_floating_point() else tensor
        out[key] = mixed.to(tensor.dtype).contiguous()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="pipeline folder at α = 0")
    parser.add_argument("b", type=Path, help="pipeline folder at α = 1 (its configs are kept)")
    parser.add_argument("--alpha", type=float, required=True, help="weight of B, in [0, 1]")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.output.exists():
        parser.error(f"{args.output} exists; choose a new folder")
    from safetensors.torch import load_file, save_file

    tmp = args.output.with_name(args.output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(args.b, tmp)
    for component in COMPONENTS:
        mixed = interpolate(load_file(str(args.a / component / WEIGHTS)), load_file(str(args.b / component / WEIGHTS)),
                            args.alpha)  # fmt: skip
        save_file(mixed, str(tmp / component / WEIGHTS))
    tmp.rename(args.output)
    print(f"(1 - {args.alpha}) * {args.a} + {args.alpha} * {args.b} -> {args.output}")


if __name__ == "__main__":
    main()
