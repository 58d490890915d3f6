"""SPIRE's parameterised degradation (paper §4.1, Table 2), which writes its own restoration prompt.

Four stages, each applied independently with p = 0.5, always in the order blur → downsample → noise → JPEG:

==========  =======================  ============================
stage       parameter                prompt text
==========  =======================  ============================
blur        σ ~ U(0.2, 3.0) px       "Deblur with sigma 2.1"
downsample  factor ~ U(1, 7)         "Upsample to 3.4"
noise       σ ~ U(0, 0.12) ([0,1])   "Denoise with sigma 0.05"
JPEG        quality ~ U{30..92}      "Dejpeg with quality 61"
==========  =======================  ============================

Each applied stage is named in the prompt, with its parameter with p = 0.5 and as the bare type otherwise
("Deblur"). Parameters are rounded to the precision of the prompt text *before* they are applied, so the prompt
and the record describe exactly what was done; a value that rounds to a no-op (noise σ 0.00, factor 1.0) is
drawn again.

When no stage fires (probability 1/16) the default policy ``empty="resample"`` redraws the four coin flips, so
an identity pair with an empty prompt never reaches training; each stage then fires with probability 8/15.
``empty="keep"`` returns y = x with prompt "" and ``record["identity"] = True`` for callers that want it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from spire_ir import prompts
from spire_ir.ops.registry import OP_KINDS, OP_SPECS
from spire_ir.prompts import RestorationOp
from spire_ir.utils.seeding import choice, coin, randint, uniform

__all__ = ["ParameterizedConfig", "ParameterizedDegradation", "apply_ops"]


@dataclass(frozen=True)
class ParameterizedConfig:
    """Options of the parameterised pipeline; the defaults are the paper's Table 2."""

    stage_prob: float = 0.5  # each stage fires independently with this probability
    param_prob: float = 0.5  # a fired stage is described with its parameter with this probability
    # Each op's training range, by op name ({"deblur": [0.2, 3.0]}); an op left out draws from its table range
    # (``OP_SPECS[kind].train``, the paper's Table 2).
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    empty: Literal["resample", "keep"] = "resample"
    # With this probability exactly one stage fires, named with its value ("Denoise with sigma 0.07"): more
    # capacity for the single-op tasks users ask for most (spire-tiny's recipe). 0 keeps Table 2's draw.
    single_op_prob: float = 0.0
    # Relative weights of the ops in such a single-op draw, by op name ({"denoise": 2.0}); an op left out weighs
    # 1. Empty: every op equally likely. More weight gives the tasks a model is weakest on more of the steps.
    single_op_weights: dict[str, float] = field(default_factory=dict)
    # With this probability a noise stage draws σ from noise_sigma_high instead, beyond Table 2's 0.12, so that
    # a strength walk up to σ 0.24 stays inside what the model saw. 0 keeps Table 2's range.
    noise_high_prob: float = 0.0
    noise_sigma_high: tuple[float, float] = (0.12, 0.3)

    def __post_init__(self) -> None:
        if self.empty not in ("resample", "keep"):
            raise ValueError(f"empty must be 'resample' or 'keep', got {self.empty!r}")
        if not 0 < self.stage_prob <= 1:
            raise ValueError(f"stage_prob must be in (0, 1], got {self.stage_prob}")
        for name in ("single_op_prob", "noise_high_prob", "param_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for kind, weight in self.single_op_weights.items():
            if kind not in OP_SPECS:
                raise ValueError(f"single_op_weights: unknown op {kind!r}; the ops are {', '.join(OP_KINDS)}")
            if weight < 0:
                raise ValueError(f"single_op_weights.{kind} must be >= 0, got {weight:g}")
        if self.single_op_weights and not sum(self.single_op_weights.get(k, 1.0) for k in OP_KINDS) > 0:
            raise ValueError("single_op_weights: at least one op needs a weight above 0")
        for kind, (low, high) in self.ranges.items():
            if kind not in OP_SPECS:
                raise ValueError(f"ranges: unknown op {kind!r}; the ops are {', '.join(OP_KINDS)}")
            valid = OP_SPECS[kind].valid
            if not valid[0] <= low <= high <= valid[1]:
                raise ValueError(f"ranges.{kind}: [{low:g}, {high:g}] must be ordered and inside [{valid[0]:g}, {valid[1]:g}]")

    def range_of(self, kind: str) -> tuple[float, float]:
        """The range ``kind`` is drawn from: ``ranges[kind]``, or the table's training range."""
        return tuple(self.ranges.get(kind, OP_SPECS[kind].train))

    def trained_ranges(self) -> dict[str, list[float]]:
        """Every op's range of values in training, {kind: [low, high]}, the high-noise draws included."""
        ranges = {kind: list(self.range_of(kind)) for kind in OP_KINDS}
        if self.noise_high_prob > 0:
            low, high = ranges["denoise"]
            ranges["denoise"] = [min(low, self.noise_sigma_high[0]), max(high, self.noise_sigma_high[1])]
        return ranges


@dataclass(frozen=True)
class StageDraw:
    """One fired stage: the op (with its applied value) and whether the prompt names the value."""

    op: RestorationOp
    with_param: bool

    def prompt_op(self) -> RestorationOp:
        return self.op if self.with_param else RestorationOp(self.op.kind)


def apply_op(image: torch.Tensor, op: RestorationOp, generator: torch.Generator) -> torch.Tensor:
    """Apply one restoration op *as a degradation* (the op names what a restorer would undo).

    Args:
        image: (B, 3, H, W) in [0, 1].
        op: an op with a value (deblur σ → Gaussian blur, upsample f → down-up by f, denoise σ → Gaussian
            noise, dejpeg q → JPEG at quality q).
        generator: randomness for the noise.
    """
    if op.value is None:
        raise ValueError(f"op {op.kind!r} has no value to apply; sample one first")
    return op.spec.apply(image, op.value, generator)


def apply_ops(
    image: torch.Tensor, ops: list[RestorationOp] | tuple[RestorationOp, ...], generator: torch.Generator
):
    """Apply ops in order (each with a value). Returns the degraded (B, 3, H, W) image."""
    for op in ops:
        image = apply_op(image, op, generator)
    return image


def op_record(op: RestorationOp, with_param: bool = True) -> dict:
    """The JSON record of one applied op, e.g. {"op": "deblur", "sigma": 2.0, "in_prompt": "Deblur ..."}."""
    spec = op.spec
    value = int(op.value) if spec.decimals == 0 else op.value
    text = op.text() if with_param else RestorationOp(op.kind).text()
    return {"op": op.kind, spec.param: value, "in_prompt": text}


class ParameterizedDegradation:
    """The parameterised branch: ``sample_params`` draws stages, ``apply`` applies them, ``__call__`` does both."""

    name = "parameterized"

    def __init__(self, config: ParameterizedConfig | None = None) -> None:
        self.config = config or ParameterizedConfig()

    def _draw_value(self, kind: str, generator: torch.Generator) -> float:
        config = self.config
        low, high = config.range_of(kind)
        if kind == "denoise" and config.noise_high_prob > 0 and coin(generator, config.noise_high_prob):
            low, high = config.noise_sigma_high
        if OP_SPECS[kind].decimals == 0:
            return float(randint(generator, int(low), int(high)))
        return uniform(generator, low, high)

    def sample_value(self, kind: str, generator: torch.Generator) -> RestorationOp:
        """A value for ``kind`` drawn from its training range, rounded to prompt precision.

        A value that rounds to the op's no-op (noise σ 0.00, factor 1.0) is drawn again, so a stage named in the
        prompt always changes the image.
        """
        while True:
            op = RestorationOp(kind, self._draw_value(kind, generator))
            if op.value != op.spec.noop:
                return op

    def sample_params(self, generator: torch.Generator) -> list[StageDraw]:
        """Draw which stages fire and their parameters (the empty draw is handled by ``config.empty``)."""
        if self.config.single_op_prob > 0 and coin(generator, self.config.single_op_prob):
            weights = self.config.single_op_weights
            probs = [weights.get(k, 1.0) for k in OP_KINDS] if weights else None
            kind = choice(generator, OP_KINDS, probs)
            return [StageDraw(op=self.sample_value(kind, generator), with_param=True)]
        while True:
            fired = [kind for kind in OP_KINDS if coin(generator, self.config.stage_prob)]
            if fired or self.config.empty == "keep":
                break
        draws = []
        for kind in fired:
            op = self.sample_value(kind, generator)
            draws.append(StageDraw(op=op, with_param=coin(generator, self.config.param_prob)))
        return draws

    def apply(self, image: torch.Tensor, draws: list[StageDraw], generator: torch.Generator) -> torch.Tensor:
        """Apply drawn stages in order. image: (B, 3, H, W) in [0, 1]."""
        return apply_ops(image, [d.op for d in draws], generator)

    @staticmethod
    def prompt(draws: list[StageDraw]) -> str:
        """The restoration prompt c_r for the drawn stages."""
        return prompts.format([d.prompt_op() for d in draws])

    @staticmethod
    def record(draws: list[StageDraw]) -> dict:
        rec: dict = {"pipeline": "parameterized", "ops": [op_record(d.op, d.with_param) for d in draws]}
        if not draws:
            rec["identity"] = True
        return rec

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, str, dict]:
        """Degrade one image (or a batch with shared parameters). Returns (y, c_r, record)."""
        draws = self.sample_params(generator)
        return self.apply(image, draws, generator), self.prompt(draws), self.record(draws)
