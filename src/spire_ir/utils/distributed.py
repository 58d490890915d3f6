"""Process launches: what accelerate needs to be told for N processes on machines without a GPU."""

from __future__ import annotations

import os

import torch

__all__ = ["cpu_launch"]


def cpu_launch() -> bool:
    """True under a multi-process launch (``torchrun``, ``accelerate launch``) on a machine without CUDA.

    accelerate then needs ``cpu=True`` to join the processes over gloo; without it every process believes it is
    rank 0 of 1, trains or scores everything, and writes the same files. A single process keeps accelerate's own
    device choice (CUDA, MPS or CPU).
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
