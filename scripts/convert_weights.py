"""Convert third-party PyTorch pickles to safetensors once, outside the library (which loads safetensors only).

    python scripts/convert_weights.py lpips-heads  PATH/TO/lpips/weights/v0.1/alex.pth  OUT.safetensors
    python scripts/convert_weights.py alexnet      PATH/TO/alexnet-owt-7be5be79.pth     OUT.safetensors

`lpips-heads` turns the LPIPS v0.1 linear heads (pip `lpips`, BSD-2) into the file spire-ir ships in
`spire_ir/assets/`. `alexnet` keeps the `features.*` tensors of torchvision's ImageNet AlexNet (obtained elsewhere),
which `spire_ir.metrics.lpips` needs as `--lpips-backbone`. Both use `torch.load(weights_only=True)`.
"""

import sys

import torch
from safetensors.torch import save_file


def main() -> None:
    kind, source, target = sys.argv[1:4]
    state = torch.load(source, map_location="cpu", weights_only=True)
    if kind == "alexnet":
        state = {k: v for k, v in state.items() if k.startswith("features.")}
    elif kind != "lpips-heads":
        raise SystemExit(f"unknown kind {kind!r}: use lpips-heads or alexnet")
    save_file({k: v.contiguous() for k, v in state.items()}, target)
    print(f"{len(state)} tensors -> {target}")


if __name__ == "__main__":
    main()
