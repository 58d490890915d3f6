"""Model components: the SPIRE adaptor and its modulation-fusion hooks, the autoencoders (SD's KL VAE and the
lossless space-to-depth one), the numeric prompt channel, the text encoders, loading of Stable Diffusion bases and
the tiny configs that tests and ``spire new-model`` build from.

Names load on first use, so that ``spire_ir.models.builtin`` answers without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Modulation": "spire_ir.models.adaptor",
    "SpireAdaptor": "spire_ir.models.adaptor",
    "modulate_unet": "spire_ir.models.adaptor",
    "skip_channels": "spire_ir.models.adaptor",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'spire_ir.models' has no attribute {name!r}")
