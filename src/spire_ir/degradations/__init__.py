"""Degradation synthesis: the paper's parameterised pipeline, Real-ESRGAN's, the 50/50 mixer, and ``degrade``.

Each pipeline is a callable ``(image (1, 3, H, W), generator) -> (y, c_r, record)``. ``degrade_batch`` runs any of
them over a batch with one derived generator per image, so the same seed gives the same y and c_r whatever the
batch size or worker count. ``degrade`` applies exactly the operations a restoration prompt names.

Example::

    from spire_ir.degradations import DegradationMixer, degrade, degrade_batch
    y, c_r, record = degrade(x, "Deblur with sigma 2.0, Denoise with sigma 0.05", generator=torch.Generator().manual_seed(1))
    batch = degrade_batch(DegradationMixer(), x8, seed=0)   # batch.images, batch.prompts, batch.records
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from spire_ir import prompts
from spire_ir.degradations.parameterized import (
    ParameterizedConfig,
    ParameterizedDegradation,
    apply_ops,
    op_record,
)
from spire_ir.degradations.realesrgan import RealESRGANConfig, RealESRGANDegradation, StageConfig
from spire_ir.utils.seeding import coin, derive_seed, make_generator

__all__ = [
    "BatchResult",
    "DegradationConfig",
    "DegradationMixer",
    "ParameterizedConfig",
    "ParameterizedDegradation",
    "RealESRGANConfig",
    "RealESRGANDegradation",
    "StageConfig",
    "degrade",
    "degrade_batch",
    "get_degradation",
]

Degradation = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, str, dict]]


class DegradationMixer:
    """Picks the parameterised pipeline with probability ``p_parameterized`` (0.5) and Real-ESRGAN otherwise.

    The record of the result names the chosen pipeline in ``record["pipeline"]``.
    """

    name = "mixed"

    def __init__(
        self,
        parameterized: ParameterizedDegradation | None = None,
        realesrgan: RealESRGANDegradation | None = None,
        p_parameterized: float = 0.5,
    ) -> None:
        if not 0 <= p_parameterized <= 1:
            raise ValueError(f"p_parameterized must be in [0, 1], got {p_parameterized}")
        self.parameterized = parameterized or ParameterizedDegradation()
        self.realesrgan = realesrgan or RealESRGANDegradation()
        self.p_parameterized = p_parameterized

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, str, dict]:
        branch = self.parameterized if coin(generator, self.p_parameterized) else self.realesrgan
        return branch(image, generator)


@dataclass(frozen=True)
class DegradationConfig:
    """The training degradation (YAML ``data.degradation``): the paper's 50/50 mix of its parameterised pipeline
    (``parameterized``: Table 2 ranges, single-op oversampling) and Real-ESRGAN's (``realesrgan``: x4plus values)."""

    p_parameterized: float = 0.5  # parameterised vs Real-ESRGAN (paper §4.1: 50/50)
    parameterized: ParameterizedConfig = field(default_factory=ParameterizedConfig)
    realesrgan: RealESRGANConfig = field(default_factory=RealESRGANConfig)

    def build(self) -> DegradationMixer:
        """The mixer these settings describe."""
        return DegradationMixer(
            ParameterizedDegradation(self.parameterized),
            RealESRGANDegradation(self.realesrgan),
            p_parameterized=self.p_parameterized,
        )


def get_degradation(name: str) -> Degradation:
    """ "parameterized", "realesrgan" or "mixed" with default settings."""
    table: dict[str, Callable[[], Degradation]] = {
        "parameterized": ParameterizedDegradation,
        "realesrgan": RealESRGANDegradation,
        "mixed": DegradationMixer,
    }
    if name not in table:
        raise ValueError(f"unknown degradation {name!r}; choose one of {', '.join(table)}")
    return table[name]()


@dataclass
class BatchResult:
    """Degraded batch: images (B, 3, H, W) in [0, 1], one prompt, record and seed per image."""

    images: torch.Tensor
    prompts: list[str]
    records: list[dict]
    seeds: list[int]


def degrade_batch(
    degradation: Degradation,
    images: torch.Tensor,
    seed: int | None = None,
    seeds: Sequence[int] | None = None,
) -> BatchResult:
    """Degrade every image of a batch with its own generator.

    Image i uses ``seeds[i]`` if given, else ``derive_seed(seed, i)``. Since each image's randomness depends
    only on its own seed, splitting a batch differently (or across workers) does not change any result.

    Args:
        degradation: a pipeline, e.g. ``DegradationMixer()``.
        images: (B, 3, H, W) in [0, 1].
        seed: base seed (used when ``seeds`` is None).
        seeds: one seed per image.
    """
    if seeds is None:
        if seed is None:
            raise ValueError("degrade_batch needs seed= or seeds= (there is no hidden global RNG)")
        seeds = [derive_seed(seed, index) for index in range(images.shape[0])]
    if len(seeds) != images.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {images.shape[0]} images")
    outputs, texts, records = [], [], []
    for image, item_seed in zip(images, seeds, strict=True):
        y, c_r, record = degradation(image.unsqueeze(0), make_generator(item_seed))
        outputs.append(y)
        texts.append(c_r)
        records.append(record)
    return BatchResult(torch.cat(outputs), texts, records, list(seeds))


def degrade(
    image: torch.Tensor,
    prompt: str | prompts.RestorationPrompt,
    generator: torch.Generator,
    strict: bool = False,
) -> tuple[torch.Tensor, str, dict]:
    """Apply exactly the degradations a restoration prompt names, in its order.

    Ops given without a value ("Deblur") get one drawn from the training range; "Remove all degradation"
    applies the Real-ESRGAN pipeline. The returned prompt is the canonical text of what was applied (with every
    value), and the record lists each op.

    Args:
        image: (B, 3, H, W) in [0, 1].
        prompt: e.g. "Deblur with sigma 2.0, Denoise with sigma 0.05".
        generator: randomness for noise and for missing values.
        strict: reject fragments the grammar does not know (otherwise they are ignored with a warning).

    Returns:
        (y, canonical c_r, record).
    """
    # synthesis has no training range: any valid value is applied as asked, without the model's warning
    valid = {kind: spec.valid for kind, spec in prompts.OP_SPECS.items()}
    parsed = prompt if isinstance(prompt, prompts.RestorationPrompt) else prompts.parse(prompt, strict, valid)
    if not parsed.ops and not parsed.blind:
        raise ValueError(f"restoration prompt {prompt!r} names no degradation to apply")
    sampler = ParameterizedDegradation()
    applied = [op if op.value is not None else sampler.sample_value(op.kind, generator) for op in parsed.ops]
    record: dict = {"pipeline": "prompt", "ops": [op_record(op) for op in applied]}
    out = image
    if parsed.blind:
        out, _, blind_record = RealESRGANDegradation()(out, generator)
        record["realesrgan"] = blind_record["ops"] if "ops" in blind_record else blind_record
    out = apply_ops(out, applied, generator)
    text = prompts.format(prompts.RestorationPrompt(ops=tuple(applied), blind=parsed.blind))
    return out, text, record
