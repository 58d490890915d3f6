"""Explicit randomness: generators and derived seeds.

Library code never touches a global RNG. Every random function takes a ``torch.Generator``; batched helpers derive
one generator per item from ``(seed, key...)`` so that results do not depend on batch size, worker count or the
order items are processed in.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["choice", "coin", "derive_seed", "make_generator", "randint", "uniform"]


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
