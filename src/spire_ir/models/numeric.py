"""The numeric channel of the restoration prompt: the numbers ``prompts.parse`` reads, as a vector for the adaptor.

spire-tiny's design note, §2 and §4: frozen MiniLM token states do carry the numbers of c_r, but faintly once
pooled (a cosine of 0.985 between neighbouring noise prompts), while an explicit noise-level input is what gives
FFDNet and SRMD their monotone strength control. So beside cross-attention on e_r, the adaptor may read the parse
of c_r: per op (in ``prompts.OP_KINDS`` order) a "named" flag, a "has a value" flag and the value normalised to
about [0, 1] with a Fourier embedding, plus a "blind" flag. A prompt that does not parse gives the blind code.
:class:`NumericEmbedding` maps the vector into the ControlNet's time embedding (``class_embed_type="identity"``);
its last layer starts at zero, so a fresh adaptor is unchanged by it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from spire_ir import prompts

__all__ = ["NUMERIC_DIM", "NumericEmbedding", "restoration_numbers"]

_FREQUENCIES = 4  # sin/cos of π·2^j·v, j < 4
_PER_OP = 3 + 2 * _FREQUENCIES
NUMERIC_DIM = len(prompts.OP_KINDS) * _PER_OP + 1


def _code(text: str) -> list[float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", prompts.PromptWarning)
        try:
            parsed = prompts.parse(text)
        except prompts.PromptError:
            parsed = prompts.RestorationPrompt(blind=True)
    code: list[float] = []
    by_kind = {op.kind: op for op in parsed.ops}
    for kind in prompts.OP_KINDS:
        op = by_kind.get(kind)
        value = 0.0 if op is None or op.value is None else prompts.OP_SPECS[kind].numeric(float(op.value))
        has_value = float(op is not None and op.value is not None)
        code += [float(op is not None), has_value, value]
        for j in range(_FREQUENCIES):
            angle = math.pi * 2**j * value
            code += [has_value * math.sin(angle), has_value * math.cos(angle)]
    blind = parsed.blind or not parsed.ops
    return [*code, float(blind)]


def restoration_numbers(texts: Sequence[str]) -> torch.Tensor:
    """(B, NUMERIC_DIM) float32 codes of B restoration prompts (see the module docstring)."""
    return torch.tensor([_code(t) for t in texts], dtype=torch.float32)


class NumericEmbedding(nn.Module):
    """(B, NUMERIC_DIM) codes -> (B, time_embed_dim), added to the ControlNet's time embedding. Zero at start."""

    def __init__(self, time_embed_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(NUMERIC_DIM, hidden), nn.SiLU(), nn.Linear(hidden, time_embed_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code)
