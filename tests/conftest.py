"""Shared fixtures (tiny, seeded, offline)."""

from __future__ import annotations

import pytest
import torch

from helpers import make_photo


@pytest.fixture
def photo() -> torch.Tensor:
    return make_photo(64, 64)
