"""spire-ir: an open implementation of SPIRE, semantic prompt-driven image restoration.

Importing the package does no work: heavy parts (diffusers, transformers) load on first use.

    from spire_ir import SpirePipeline
    pipe = SpirePipeline.from_pretrained("path/to/model")
    out = pipe(image, prompt="a zebra on grass", restoration_prompt="Deblur with sigma 2.0").images[0]
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SpirePipeline": "spire_ir.pipeline",
    "SpirePipelineOutput": "spire_ir.pipeline",
    "SpireAdaptor": "spire_ir.models.adaptor",
    "SpireAutoencoderKL": "spire_ir.models.autoencoder",
    "DegradationMixer": "spire_ir.degradations",
    "ParameterizedDegradation": "spire_ir.degradations",
    "RealESRGANDegradation": "spire_ir.degradations",
    "degrade": "spire_ir.degradations",
    "degrade_batch": "spire_ir.degradations",
    "parse_prompt": "spire_ir.prompts",
    "format_prompt": "spire_ir.prompts",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'spire_ir' has no attribute {name!r}")
