"""Explicit randomness: generators and derived seeds.

Library code never touches a global RNG. Every random function takes a ``torch.Generator``; batched helpers derive
one generator per item from ``(seed, key...)`` so that results do not depend on batch size, worker count or the
order items are processed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch

__all__ = ["SampleRandom", "choice", "coin", "derive_seed", "make_generator", "randint", "uniform"]


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed that depends only on ``seed`` and ``keys`` (stable across runs and platforms).

    >>> derive_seed(0, "photo.png") == derive_seed(0, "photo.png")
    True
    """
    text = "\x1f".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One draw from U(low, high)."""
    return low + (high - low) * torch.rand((), generator=generator).item()


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """One integer from U{low, ..., high} (both ends included)."""
    return int(torch.randint(int(low), int(high) + 1, (), generator=generator).item())


def coin(generator: torch.Generator, p: float) -> bool:
    """True with probability ``p``."""
    return bool(torch.rand((), generator=generator).item() < p)


def choice(
    generator: torch.Generator, options: list | tuple, probs: list[float] | tuple[float, ...] | None = None
):
    """One element of ``options``, uniformly or with the given probabilities."""
    if probs is None:
        return options[randint(generator, 0, len(options) - 1)]
    weights = torch.tensor(probs, dtype=torch.float64)
    index = torch.multinomial(weights, 1, generator=generator).item()
    return options[int(index)]


class SampleRandom:
    """One generator per sample of a batch, each seeded from ``(seed, *namespace, key)``.

    A sample's draws (its training noise, timestep, σ) then depend on the sample alone, not on the batch it came
    in, the batch size or the process that holds it: one process with batch 2B draws exactly what two processes
    with batch B draw between them. Each method returns one row per sample, in key order.
    """

    def __init__(self, seed: int, keys: Iterable[object], *namespace: object) -> None:
        self.generators = [make_generator(derive_seed(seed, *namespace, key)) for key in keys]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        """Standard normal draws of ``shape`` = (B, ...), float32 on the CPU; row i from sample i's generator."""
        if shape[0] != len(self):
            raise ValueError(f"shape {tuple(shape)} does not start with the batch size {len(self)}")
        return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in self.generators])

    def rand(self) -> torch.Tensor:
        """One U[0, 1) draw per sample, (B,) float32."""
        return torch.cat([torch.rand(1, generator=g) for g in self.generators])

    def randint(self, low: int, high: int) -> torch.Tensor:
        """One integer in [low, high) per sample, (B,) int64."""
        return torch.cat([torch.randint(int(low), int(high), (1,), generator=g) for g in self.generators])
