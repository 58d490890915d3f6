"""Geometric self-ensemble: restore the eight flips and quarter-turns of an image and average them.

A convolutional restorer is not exactly equivariant to flips and 90° rotations, so its errors on the eight
dihedral views of one image are partly independent, and their average is closer to the truth (EDSR's "+" models,
Lim et al. 2017). The views are ordered so that the first 2 and the first 4 are subgroups that keep the image's
shape: 2 = {identity, left-right flip}, 4 = those and their half turns, 8 = all.
"""

from __future__ import annotations

import torch

__all__ = ["SELF_ENSEMBLE_SIZES", "dihedral"]

# (quarter turns, left-right flip first) of each view, in the order a self-ensemble of n takes the first n
_VIEWS = ((0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True))
SELF_ENSEMBLE_SIZES = (1, 2, 4, 8)


def dihedral(image: torch.Tensor, view: int, inverse: bool = False) -> torch.Tensor:
    """One of the eight flips and quarter-turns of a batch of images, or its inverse.

    Args:
        image: (B, C, H, W).
        view: 0-7; 0 is the identity, 1 the left-right flip, 2-3 their half turns, 4-7 the quarter turns.
        inverse: undo ``view`` instead: ``dihedral(dihedral(x, v), v, inverse=True)`` equals x.

    Returns:
        (B, C, H, W) for views 0-3, (B, C, W, H) for views 4-7 (the inverse restores the input's shape).
    """
    if not 0 <= view < len(_VIEWS):
        raise ValueError(f"view must be in 0-{len(_VIEWS) - 1}, got {view}")
    turns, flip = _VIEWS[view]
    if inverse:
        image = torch.rot90(image, -turns, dims=(-2, -1))
        return image.flip(-1) if flip else image
    return torch.rot90(image.flip(-1) if flip else image, turns, dims=(-2, -1))
