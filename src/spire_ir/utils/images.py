"""The one place where images cross the library boundary.

Inside ``spire_ir`` every image is a ``(B, 3, H, W)`` float tensor, RGB, in ``[0, 1]``. This module converts
to and from PIL / numpy / files, and nothing else in the package does. It also holds the safe-write helper that
every command uses: outputs are written to a temporary file beside the target and moved into place with
``os.replace``, so a crash never leaves a half-written file and an input is never overwritten.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# the largest input the commands decode by default (--max-pixels): 50 MP holds any camera photo up to 8,000 ×
# 6,000, and refuses a decompression bomb (a 14,000² PNG of 223 KB) before it is decoded
DEFAULT_MAX_PIXELS = 50_000_000


class ImageLoadError(ValueError):
    """An input file could not be decoded as an image."""


class ImageTooLargeError(ImageLoadError):
    """An input is larger than the pixel limit; found from its header, before decoding."""

    def __init__(self, message: str, width: int, height: int) -> None:
        super().__init__(message)
        self.width, self.height = width, height


@dataclass
class LoadedImage:
    """An image read from disk, converted to the canonical format.

    Attributes:
        tensor: (1, 3, H, W) float32 in [0, 1], RGB.
        path: where it was read from.
        conversions: human-readable notes on every conversion applied (EXIF rotation, mode changes).
        alpha: (1, 1, H, W) float32 in [0, 1], the file's transparency, or None when it has none. ``tensor`` is
            then the colour composited onto white; ``save_image(..., alpha=loaded.alpha)`` writes it back.
    """

    tensor: torch.Tensor
    path: Path
    conversions: list[str] = field(default_factory=list)
    alpha: torch.Tensor | None = None

    def conversions_for(self, output: str | os.PathLike) -> list[str]:
        """``conversions``, and a note when ``output``'s format cannot keep this image's alpha channel."""
        suffix = Path(output).suffix or ".png"
        if self.alpha is None or keeps_alpha(suffix):
            return list(self.conversions)
        return [*self.conversions, f"alpha dropped: {suffix.lstrip('.').upper()} has no alpha channel"]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every file in ``folder`` (not recursive) whose extension looks like an image, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image to a (1, 3, H, W) float32 tensor in [0, 1]."""
    if image.mode != "RGB":
        raise ValueError(f"pil_to_tensor expects an RGB image, got mode {image.mode!r}; use load_image().")
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """A (3, H, W) or (1, 3, H, W) tensor in [0, 1] to an (H, W, 3) uint8 array (rounded, clipped)."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"tensor_to_uint8 takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
    return image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """A (3, H, W) or (1, 3, H, W) tensor in [0, 1] to an RGB PIL image."""
    return Image.fromarray(tensor_to_uint8(image))


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """Round a [0, 1] tensor to the 256 levels an 8-bit file can hold (any shape)."""
    return image.clamp(0, 1).mul(255).round().div(255)


def _to_rgb(image: Image.Image, conversions: list[str]) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, noting what was done."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image).astype(np.float64)
        peak = 65535.0 if (mode.startswith("I;16") or array.max() > 255) else 255.0
        gray = np.clip(np.round(array / peak * 255.0), 0, 255).astype(np.uint8)
        conversions.append(f"{'16' if peak > 255 else '32'}-bit grayscale ({mode}) scaled to 8-bit RGB")
        return Image.fromarray(np.stack([gray] * 3, axis=-1))
    if mode == "F":
        array = np.clip(np.asarray(image), 0, 1)
        gray = np.round(array * 255).astype(np.uint8)
        conversions.append("32-bit float grayscale clipped to [0, 1] and converted to 8-bit RGB")
        return Image.fromarray(np.stack([gray] * 3, axis=-1))
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        conversions.append(f"{mode}: colour composited onto white, alpha kept apart")
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("L", "1"):
        conversions.append(f"grayscale ({mode}) replicated to RGB")
    elif mode == "CMYK":
        conversions.append("CMYK converted to RGB (no colour profile applied)")
    else:
        conversions.append(f"{mode} converted to RGB")
    return image.convert("RGB")


def _bits_per_sample(image: Image.Image) -> int:
    """The bit depth per channel the file stores (Pillow decodes 16-bit RGB PNG and TIFF to 8-bit "RGB")."""
    if image.format == "PNG" and image.fp is not None:
        position = image.fp.tell()
        image.fp.seek(24)  # the IHDR chunk's bit-depth byte: 8-byte signature, 8-byte chunk head, 8 bytes of size
        depth = image.fp.read(1)
        image.fp.seek(position)
        return depth[0] if depth else 8
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, (8,))
        return int(bits[0] if isinstance(bits, tuple) else bits)
    return 8


def load_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file into the canonical format, converting explicitly.

    EXIF orientation is applied, and grayscale, palette, RGBA, CMYK and 16-bit files are converted to 8-bit RGB.
    Every conversion is listed in ``LoadedImage.conversions`` so that callers can record it.

    Args:
        path: an image file.
        max_pixels: refuse a larger image from its header, before it is decoded (None: no limit of ours; Pillow's
            decompression-bomb limit is raised to it when it is higher).

    Returns:
        A ``LoadedImage`` whose tensor is (1, 3, H, W) float32 in [0, 1].

    Raises:
        ImageLoadError: the file is missing, empty, not a decodable image, or larger than ``max_pixels``.
    """
    path = Path(path)
    conversions: list[str] = []
    if max_pixels is not None and (Image.MAX_IMAGE_PIXELS or 0) < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow refuses twice its limit at open; ours is checked below
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLargeError(
                    f"{path}: the image is {width} × {height} ({width * height / 1e6:.0f} MP); the limit is "
                    f"{max_pixels / 1e6:.0f} MP: set --max-pixels to allow it, or downscale it first",
                    width, height,
                )  # fmt: skip
            bits = _bits_per_sample(opened)
            opened.load()
            transposed = ImageOps.exif_transpose(opened)
            orientation = opened.getexif().get(0x0112, 1)
            if orientation not in (None, 1):
                conversions.append(f"EXIF orientation {orientation} applied")
            rgb = _to_rgb(transposed, conversions)
            alpha = _alpha(transposed)
            # 16-bit RGB PNG and TIFF files are decoded by Pillow as 8-bit RGB: note that precision was dropped
            if opened.mode in ("RGB", "RGBA") and bits == 16:
                conversions.append(f"16-bit {opened.mode} reduced to 8 bits per channel")
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        import re

        found = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(found.group(1)) / 1e6:.0f} MP" if found else "too large"
        raise ImageLoadError(
            f"{path}: the image is {size}, refused before decoding (a possible decompression bomb); the limit is "
            f"{(max_pixels or Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} MP: set --max-pixels to decode it"
        ) from error
    except FileNotFoundError as error:
        raise ImageLoadError(f"{path}: no such file") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(
            f"{path}: cannot decode as an image ({error}); check that the file is a complete PNG/JPEG/WebP/TIFF"
        ) from error
    return LoadedImage(tensor=pil_to_tensor(rgb), path=path, conversions=conversions, alpha=alpha)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _alpha(image: Image.Image) -> torch.Tensor | None:
    """The (1, 1, H, W) [0, 1] alpha channel of an image with transparency, else None."""
    if not _has_alpha(image):
        return None
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    return torch.from_numpy(alpha.astype(np.float32) / 255.0)[None, None]


def _file_mode() -> int:
    """The mode a new file gets from the process umask (0o644 under the usual 022), as open() would give."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename, with the umask's file mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fchmod(stream.fileno(), _file_mode())  # mkstemp makes 0600 files
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def guard_not_input(output: Path, inputs: list[Path] | tuple[Path, ...]) -> None:
    """Raise if ``output`` is one of ``inputs`` (we never overwrite an input)."""
    resolved = output.resolve()
    for item in inputs:
        if item.resolve() == resolved:
            raise ValueError(f"refusing to overwrite the input {item}; choose another output path with -o")


def encode_image(image: torch.Tensor, fmt: str, quality: int = 95, alpha: torch.Tensor | None = None) -> bytes:
    """Encode a (1, 3, H, W) / (3, H, W) [0, 1] tensor as PNG, JPEG or WebP bytes.

    ``alpha`` ((1, 1, H, W) / (H, W) in [0, 1], the image's size) makes a PNG or WebP with transparency. ``image``
    is then taken as the colour composited onto white, as ``load_image`` gives it, and written as the straight
    colour c = (image − (1 − α)) / α, so that the file shown on white looks like ``image`` (c is clipped to
    [0, 1], and white where α = 0). JPEG has no alpha channel, so there ``alpha`` is left out (see
    ``keeps_alpha``).
    """
    fmt = fmt.lower().lstrip(".")
    buffer = io.BytesIO()
    if alpha is not None and keeps_alpha(fmt):
        plane = alpha.detach().float().cpu().reshape(1, 1, *alpha.shape[-2:]).clamp(0, 1)
        rgb = image.detach().float().cpu().reshape(1, 3, *image.shape[-2:])
        if plane.shape[-2:] != rgb.shape[-2:]:
            raise ValueError(f"alpha is {tuple(plane.shape[-2:])} but the image is {tuple(rgb.shape[-2:])}")
        plane = (plane * 255).round() / 255  # the α the file will hold
        straight = torch.where(plane > 0, (rgb - (1 - plane)) / plane.clamp_min(1 / 255), torch.ones_like(rgb))
        pil = tensor_to_pil(straight.clamp(0, 1))
        pil.putalpha(Image.fromarray((plane[0, 0] * 255).round().to(torch.uint8).numpy(), "L"))
    else:
        pil = tensor_to_pil(image)
    if fmt == "png":
        pil.save(buffer, format="PNG")
    elif fmt in ("jpg", "jpeg"):
        pil.save(buffer, format="JPEG", quality=quality)
    elif fmt == "webp":
        pil.save(buffer, format="WEBP", lossless=True)
    else:
        raise ValueError(f"unsupported output format {fmt!r}; use png, jpg or webp")
    return buffer.getvalue()


def keeps_alpha(fmt: str) -> bool:
    """Whether ``encode_image`` writes an alpha channel in this format (png and webp do, jpg does not)."""
    return fmt.lower().lstrip(".") in ("png", "webp")


def save_image(
    image: torch.Tensor, path: str | os.PathLike, quality: int = 95, alpha: torch.Tensor | None = None
) -> Path:
    """Write an image atomically; the format follows the file extension (png, jpg, webp).

    Args:
        image: (1, 3, H, W) or (3, H, W) float in [0, 1], RGB.
        path: destination; its parent folders are created.
        quality: JPEG quality when the extension is .jpg/.jpeg.
        alpha: optional (1, 1, H, W) transparency in [0, 1] of the image's size, written to PNG and WebP files
            (``image`` is then the colour composited onto white: ``encode_image`` says how it is written).
    """
    path = Path(path)
    write_atomic(path, encode_image(image, path.suffix or ".png", quality=quality, alpha=alpha))
    return path


def save_json(data: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically (UTF-8, indented, keys in insertion order)."""
    path = Path(path)
    write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return path


def append_jsonl(data: Any, path: str | os.PathLike) -> None:
    """Append one JSON line; the line is written with a single ``write`` call and flushed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(data, ensure_ascii=False) + "\n")
        stream.flush()


def image_grid(
    rows: list[list[torch.Tensor | Image.Image]],
    cell_labels: list[list[str]] | None = None,
    row_labels: list[str] | None = None,
    headers: list[str] | None = None,
) -> Image.Image:
    """A labelled grid: optional column headers on top, a label under each cell, a caption under each row.

    Args:
        rows: rows of cells, each a PIL image or a (3, H, W) / (1, 3, H, W) tensor in [0, 1]; cells are pasted at
            the size of the first one.
        cell_labels: text under each cell (wrapped).
        row_labels: text under each row (wrapped over the row's width).
        headers: one title per column.
    """
    import textwrap

    from PIL import ImageDraw, ImageFont

    images = [[c if isinstance(c, Image.Image) else tensor_to_pil(c) for c in row] for row in rows]
    width, height = images[0][0].size
    columns = max(len(row) for row in images)
    font = ImageFont.load_default()
    line = 13

    def wrap(text: str, pixels: int) -> list[str]:
        return textwrap.wrap(text, max(8, pixels // 7)) or [""]

    header_h = line + 6 if headers else 0
    cell_lines = [[wrap(t, width) for t in labels] for labels in cell_labels] if cell_labels else None
    cell_h = (
        [line * max(len(w) for w in lines) + 6 for lines in cell_lines] if cell_lines else [0] * len(images)
    )
    row_lines = [wrap(t, width * columns) for t in row_labels] if row_labels else None
    row_h = [line * len(w) + 6 for w in row_lines] if row_lines else [0] * len(images)
    total = header_h + sum(height + a + b for a, b in zip(cell_h, row_h, strict=True))
    grid = Image.new("RGB", (width * columns, total), "white")
    draw = ImageDraw.Draw(grid)
    for column, title in enumerate(headers or []):
        draw.text((column * width + 4, 3), title, fill="black", font=font)
    y = header_h
    for index, row in enumerate(images):
        for column, cell in enumerate(row):
            grid.paste(
                cell.resize((width, height)) if cell.size != (width, height) else cell, (column * width, y)
            )
            if cell_lines:
                for k, text in enumerate(cell_lines[index][column]):
                    draw.text((column * width + 4, y + height + 3 + line * k), text, fill="black", font=font)
        y += height + cell_h[index]
        if row_lines:
            for k, text in enumerate(row_lines[index]):
                draw.text((4, y + 3 + line * k), text, fill="black", font=font)
        y += row_h[index]
    return grid


def save_pil(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write a PIL image atomically (format from the extension; PNG if none)."""
    path = Path(path)
    buffer = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")
    image.save(buffer, format=fmt)
    write_atomic(path, buffer.getvalue())
    return path


def save_image_grid(rows: list[tuple[list, str]], headers: list[str], path: str | os.PathLike) -> Image.Image:
    """Rows of (cells, caption) with column headers, written atomically to ``path``; returns the grid."""
    grid = image_grid(
        [cells for cells, _ in rows], row_labels=[caption for _, caption in rows], headers=headers
    )
    save_pil(grid, path)
    return grid
