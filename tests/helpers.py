"""Test helpers: small synthetic photos and tar shards made on the fly (no binary test data, no downloads)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch


def make_photo(height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    """A deterministic photo-like (1, 3, H, W) image in [0, 1]: smooth gradients, edges and texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack(
        [
            0.5 + 0.4 * np.sin(xx / (5 + seed % 3)) * np.cos(yy / 7),
            (xx + yy) / (height + width),
            0.3 + 0.5 * ((xx // 12 + yy // 12) % 2),
        ]
    )
    circle = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) < (min(height, width) / 4) ** 2
    base[:, circle] = base[:, circle] * 0.3 + 0.6
    base += rng.normal(0, 0.02, size=base.shape)
    return torch.from_numpy(np.clip(base, 0, 1)).float().unsqueeze(0)


def write_photo_folder(folder, size: int = 48) -> dict[str, str]:
    """Write a folder of awkward but valid inputs plus one corrupt file; returns name -> expected note."""
    from pathlib import Path

    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rgb = (make_photo(size, size)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(folder / "plain.png")
    Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
    rgba = np.concatenate([rgb, np.full((size, size, 1), 128, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(folder / "alpha.png")
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(folder / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    Image.fromarray(rgb[:, : size // 2]).save(folder / "rotated.jpg", exif=exif, quality=95)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    return {
        "plain.png": "",
        "gray.png": "grayscale",
        "alpha.png": "alpha",
        "deep.png": "16-bit",
        "rotated.jpg": "EXIF orientation 6",
    }


def write_shards(root, shards=2, per_shard=4, corrupt=(), size=32):
    """Tar shards ``root/shard-{i}.tar`` of PNG + caption samples keyed ``s{shard}-{i}``; ``corrupt`` lists the
    (shard, i) whose image bytes are garbage. Returns the brace pattern."""
    import io

    from PIL import Image

    wds = pytest.importorskip("webdataset")
    root.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        with wds.TarWriter(str(root / f"shard-{shard}.tar")) as sink:
            for i in range(per_shard):
                buffer = io.BytesIO()
                photo = make_photo(size, size, seed=shard * per_shard + i)[0].permute(1, 2, 0).numpy()
                Image.fromarray((photo * 255).astype("uint8")).save(buffer, format="PNG")
                data = b"corrupt" if (shard, i) in corrupt else buffer.getvalue()
                sink.write({"__key__": f"s{shard}-{i}", "png": data, "txt": f"photo {shard}-{i}"})
    return str(root / f"shard-{{0..{shards - 1}}}.tar")


def write_tiny_captioner(folder):
    """A random-weight BLIP image-to-text model and its processor, saved as a captioner folder (no download)."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "a",
        "photo",
        "of",
        "cat",
        "dog",
        "on",
        "grass",
        "red",
    ]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"))
    tokenizer.bos_token = "[CLS]"
    text = dict(
        vocab_size=len(words),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=2,
        sep_token_id=3,
        pad_token_id=0,
    )
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)  # fmt: skip
    torch.manual_seed(0)  # test-only: transformers initialises from the global generator
    BlipForConditionalGeneration(
        BlipConfig(text_config=text, vision_config=vision, projection_dim=32)
    ).save_pretrained(folder)
    BlipProcessor(BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer).save_pretrained(folder)
    return folder


def write_captioned_photos(root, count: int, height: int, width: int, caption: str = "a test photo number {}"):
    """``count`` photos ``root/p{i}.png`` with ``p{i}.txt`` captions (``caption`` formatted with i); returns root."""
    from spire_ir.utils.images import save_image

    for i in range(count):
        save_image(make_photo(height, width, seed=i), root / f"p{i}.png")
        (root / f"p{i}.txt").write_text(caption.format(i))
    return root


def load_with_defaults(pipe, folder, **defaults):
    """``pipe`` saved to ``folder`` with its config's sampler ``defaults`` changed, and loaded back (progress bar
    off); ``pipe`` keeps its own defaults."""
    from spire_ir.pipeline import SpirePipeline

    old = {key: pipe.config[key] for key in defaults}
    pipe.register_to_config(**defaults)
    try:
        pipe.save_pretrained(folder)
    finally:
        pipe.register_to_config(**old)
    loaded = SpirePipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    return loaded


def load_recipe_script(name: str):
    """A script of recipes/spire-tiny/ (``name``: its file name) imported as a module, for testing its functions."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "recipes" / "spire-tiny" / name
    spec = importlib.util.spec_from_file_location(f"spire_tiny_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # as when run: the script may import its siblings
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module
