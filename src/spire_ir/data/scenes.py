"""Procedural captioned scenes: exact image–caption pairs without any download.

Each scene is one or two coloured shapes (circle, square, triangle, star; optionally striped) on a smooth
two-colour background, with a caption written from what was drawn, e.g. "a red striped star above a blue circle on
a green background". Given ``backgrounds`` (named texture photos such as grass or a brick wall), half the scenes
are drawn on a random crop of one of them instead ("... on grass"), and shapes may also be dotted or checked. Scene i of seed s is a pure function of (s, i). Used by the ``scenes`` data source for smoke
tests and small models; after heavy degradation a star and a circle look alike, which makes semantic prompting
measurable.
"""

from __future__ import annotations

import math

import torch

from spire_ir.utils.seeding import choice, coin, derive_seed, make_generator, uniform

__all__ = ["COLORS", "SHAPES", "render_scene"]

COLORS = {
    "red": (0.85, 0.15, 0.15),
    "green": (0.2, 0.7, 0.25),
    "blue": (0.15, 0.3, 0.85),
    "yellow": (0.95, 0.85, 0.2),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
    "purple": (0.55, 0.25, 0.7),
    "orange": (0.95, 0.55, 0.1),
}
SHAPES = ("circle", "square", "triangle", "star")


def _mask(shape: str, yy: torch.Tensor, xx: torch.Tensor, cy: float, cx: float, r: float, angle: float):
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if shape == "square":
        return (u.abs() <= r * 0.8) & (v.abs() <= r * 0.8)
    theta = torch.atan2(v, u)
    radius = torch.sqrt(u * u + v * v)
    if shape == "triangle":
        sector = torch.remainder(theta, 2 * math.pi / 3) - math.pi / 3
        return radius * torch.cos(sector) <= r * 0.5
    sector = torch.remainder(theta, 2 * math.pi / 5) - math.pi / 5  # star: radius varies with angle
    return radius <= r * (0.45 + 0.55 * (1 - sector.abs() / (math.pi / 5)) ** 2)


def _texture_crop(texture: torch.Tensor, size: int, g) -> torch.Tensor:
    """A random square crop of a (3, H, W) texture, resized to (3, size, size)."""
    height, width = texture.shape[-2:]
    side = max(8, round(min(height, width) * uniform(g, 0.3, 1.0)))
    top = round(uniform(g, 0, height - side))
    left = round(uniform(g, 0, width - side))
    crop = texture[None, :, top : top + side, left : left + side]
    return torch.nn.functional.interpolate(crop, size=(size, size), mode="area")[0]


def render_scene(
    seed: int, index: int, size: int = 64, backgrounds: dict[str, torch.Tensor] | None = None
) -> tuple[torch.Tensor, str]:
    """Scene ``index`` of ``seed``: ((1, 3, size, size) in [0, 1], caption).

    Args:
        backgrounds: optional {phrase: (3, H, W) texture in [0, 1]}, e.g. {"on grass": grass}; when given, half
            the scenes use a crop of one of them and its phrase ends the caption, and shapes may be dotted or
            checked as well as striped. Without it, scenes are exactly those of earlier versions.
    """
    g = make_generator(derive_seed(seed, "scene", index))
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    names = list(COLORS)
    back = choice(g, names)
    top = torch.tensor(COLORS[back]).view(3, 1, 1)
    bottom = top * uniform(g, 0.5, 0.9)
    image = top + (bottom - top) * (yy / size)
    image = image + 0.03 * torch.sin(xx / uniform(g, 2, 6)) * torch.cos(yy / uniform(g, 2, 6))
    ending = f"on a {back} background"
    if backgrounds and coin(g, 0.5):
        ending = choice(g, sorted(backgrounds))
        image = _texture_crop(backgrounds[ending], size, g)
    count = 2 if coin(g, 0.5) else 1
    described = []
    centres = (
        [(0.5, 0.5)]
        if count == 1
        else ([(0.3, 0.5), (0.72, 0.5)] if coin(g, 0.5) else [(0.5, 0.3), (0.5, 0.72)])
    )
    for cy, cx in centres:
        shape = choice(g, SHAPES)
        color = choice(g, [n for n in names if n != back])
        striped = coin(g, 0.3)
        pattern = "striped" if striped else None
        if backgrounds and not striped and coin(g, 0.3):
            pattern = choice(g, ["dotted", "checked"])
        r = size * uniform(g, 0.14, 0.22) * (1.25 if count == 1 else 1.0)
        mask = _mask(
            shape, yy, xx, cy * size + uniform(g, -2, 2), cx * size + uniform(g, -2, 2), r, uniform(g, 0, 6.3)
        )
        fill = torch.tensor(COLORS[color]).view(3, 1, 1).expand(3, size, size)
        unit = max(2.0, size / 16)
        if pattern == "striped":
            stripes = (torch.remainder(xx + yy, 8) < 4).float()
            fill = fill * (0.55 + 0.45 * stripes)
        elif pattern == "dotted":
            dots = (
                (torch.remainder(xx, 2 * unit) - unit) ** 2 + (torch.remainder(yy, 2 * unit) - unit) ** 2
            ) > (0.45 * unit) ** 2
            fill = fill * (0.35 + 0.65 * dots.float())
        elif pattern == "checked":
            checks = (
                torch.div(xx, unit, rounding_mode="floor") + torch.div(yy, unit, rounding_mode="floor")
            ) % 2
            fill = fill * (0.55 + 0.45 * checks)
        image = torch.where(mask, fill, image)
        words = f"{color}{' ' + pattern if pattern else ''} {shape}"
        described.append(("an " if words[0] in "aeiou" else "a ") + words)
    if count == 1:
        caption = f"{described[0]} {ending}"
    else:
        relation = "to the left of" if centres[0][1] < centres[1][1] else "above"
        caption = f"{described[0]} {relation} {described[1]} {ending}"
    return image.clamp(0, 1).unsqueeze(0), caption
