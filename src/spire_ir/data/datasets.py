"""Image–caption data for training: folders, COCO captions, WebDataset shards; degraded on the fly.

Every sample is a pure function of ``(seed, epoch, index)``: its crop, caption choice, caption dropout and
degradation all draw from a generator derived from those numbers, so a run is reproducible whatever the worker
count, and resuming at a batch index continues the exact stream. Each sample is::

    {"x": (3, R, R) clean in [0, 1], "y": (3, R, R) degraded, "c_s": semantic prompt, "c_r": restoration prompt,
     "record": degradation record}

Files that cannot be decoded are skipped; each batch reports how many were (``batch["skipped"]``) and the training
loop logs the running count.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from spire_ir.degradations import DegradationConfig
from spire_ir.prompts import restoration_prompt_variant
from spire_ir.utils.images import IMAGE_EXTENSIONS, ImageLoadError, load_image, quantize_8bit
from spire_ir.utils.seeding import coin, derive_seed, make_generator, randint, uniform

logger = logging.getLogger(__name__)

__all__ = [
    "DataConfig",
    "EpochBatchSampler",
    "SpireDataset",
    "build_dataloader",
    "coco_items",
    "collate",
    "fixed_samples",
    "folder_items",
    "folders_items",
    "map_dataset",
    "restoration_prompt_variant",
]


@dataclass
class DataConfig:
    """Where the images come from and how samples are made (paper §4.1 defaults)."""

    source: Literal["folder", "coco", "webdataset", "scenes"] = "folder"
    path: str = ""  # folder of images | COCO image folder | shard pattern, e.g. "shards/{0000..0099}.tar"
    # source: folder may name several folders, comma-separated; repeats[i] lists folder i's images that many times
    # per epoch (e.g. "photos,scenes" with repeats [4, 1] to see each photo four times as often as a scene)
    repeats: tuple[int, ...] = ()
    num_scenes: int = 256  # source: scenes (procedural captioned scenes, no files needed)
    captions: str | None = None  # COCO captions JSON (source: coco)
    resolution: int = 512
    crop_scale: tuple[float, float] = (0.5, 1.0)  # random square crop side, as a fraction of the short side
    caption_dropout: float = 0.1  # semantic prompt -> "" (paper: 10%)
    restoration_prompt: Literal["with_params", "without_params", "none"] = "with_params"
    semantic_prompt: bool = True  # False: always "" (the "w/o semantic prompt" ablation)
    degrade: bool = True  # False for VAE / base-model training (no y, no c_r)
    # the synthesiser: p_parameterized, parameterized.* (Table 2 ranges) and realesrgan.* (x4plus values)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    # source: folder. {folder of data.path: its own synthesiser}, used for that folder's images instead of
    # `degradation`; a folder's section starts from the synthesiser's defaults, not from `degradation`.
    # spire-tiny's stage 11 degrades its captioned scenes by ×10–16 only, where the input has lost the shape and
    # the caption has to supply it, while the photos keep the card recipe's mix
    folder_degradation: dict[str, DegradationConfig] = field(default_factory=dict)
    # random flips and 90° rotations of x before degrading (8 orientations; photos have no preferred one at 128²)
    flip_rotate: bool = False
    # round y to 8 bits, as `spire bench build` and every saved input are: the model then never sees finer
    # values than users give it
    quantize: bool = False
    num_workers: int = 0
    seed: int = 0
    # validation images: a folder or a shard pattern; "" uses the training data (map-style sources: a fixed epoch
    # of it; webdataset: the first `holdout` samples of the first shard, which training then never sees)
    validation_path: str = ""
    holdout: int = 8
    # source: webdataset. Every pass over the shards visits them in a new seeded order (shard_shuffle), and a
    # buffer of undecoded samples mixes the shards being read: 1000 samples of ~100 KB is ~100 MB per worker and
    # spans several shards of the usual 1-10k samples; shuffle_initial samples fill it before the first batch.
    shard_shuffle: bool = True
    shuffle_buffer: int = 1000
    shuffle_initial: int = 100
    # resuming a webdataset run: "exact" re-reads (without decoding) what each worker had read, so the run sees
    # exactly the samples an uninterrupted one does; "fast" starts a new seeded stream at once (not those samples)
    resume: Literal["exact", "fast"] = "exact"

    def trained_ranges(self) -> dict[str, list[float]]:
        """Each op's range of values over every synthesiser of this data, {kind: [low, high]}."""
        ranges = self.degradation.parameterized.trained_ranges()
        for degradation in self.folder_degradation.values():
            for kind, (low, high) in degradation.parameterized.trained_ranges().items():
                ranges[kind] = [min(ranges[kind][0], low), max(ranges[kind][1], high)]
        return ranges


# ------------------------------------------------------------------------------------------------ sources


def folder_items(path: str | Path) -> list[tuple[Path, list[str]]]:
    """Images of a folder with captions from ``metadata.jsonl`` (file_name, text) or ``NAME.txt`` sidecars.

    Images without any caption get [""] (they still train the restoration side).
    """
    root = Path(path)
    if not root.is_dir():
        hint = "; WebDataset shards need data.source: webdataset" if ".tar" in str(root) else ""
        raise FileNotFoundError(
            f"{root}: no such image folder; set data.path (--set data.path=DIR) to a folder of images{hint}"
        )
    captions: dict[str, list[str]] = {}
    metadata = root / "metadata.jsonl"
    if metadata.is_file():
        for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                captions.setdefault(entry["file_name"], []).append(str(entry["text"]))
            except (json.JSONDecodeError, KeyError) as error:
                raise ValueError(
                    f"{metadata}:{number}: expected {{'file_name': ..., 'text': ...}} ({error})"
                ) from error
    items = []
    for image in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        relative = image.relative_to(root).as_posix()
        texts = captions.get(relative)
        if texts is None and image.with_suffix(".txt").is_file():
            texts = [image.with_suffix(".txt").read_text(encoding="utf-8").strip()]
        items.append((image, texts or [""]))
    if not items:
        raise FileNotFoundError(f"{root}: no images found")
    return items


def _folders(paths: str) -> list[str]:
    """The folders of a comma-separated ``data.path``, as written there."""
    return [p.strip() for p in paths.split(",") if p.strip()]


def folders_items(paths: str, repeats: tuple[int, ...] = ()) -> list[tuple[Path, list[str]]]:
    """``folder_items`` of comma-separated folders, folder i's list repeated ``repeats[i]`` times (default 1)."""
    roots = _folders(paths)
    if not roots:
        raise ValueError("data.path is empty: name an image folder")
    if repeats and len(repeats) != len(roots):
        raise ValueError(f"data.repeats has {len(repeats)} entries for {len(roots)} folder(s) in data.path")
    items: list[tuple[Path, list[str]]] = []
    for root, repeat in zip(roots, repeats or [1] * len(roots), strict=True):
        if repeat < 1:
            raise ValueError(f"data.repeats: {repeat} for {root}; use a whole number >= 1")
        items += folder_items(root) * repeat
    return items


def coco_items(images: str | Path, captions_json: str | Path) -> list[tuple[Path, list[str]]]:
    """COCO-style captions (``images`` with id/file_name, ``annotations`` with image_id/caption)."""
    data = json.loads(Path(captions_json).read_text(encoding="utf-8"))
    names = {entry["id"]: entry["file_name"] for entry in data["images"]}
    captions: dict[int, list[str]] = {}
    for annotation in data["annotations"]:
        captions.setdefault(annotation["image_id"], []).append(annotation["caption"].strip())
    root = Path(images)
    return [(root / names[i], captions.get(i, [""])) for i in sorted(names)]


# ------------------------------------------------------------------------------------------------ samples


def random_crop(image: torch.Tensor, resolution: int, scale: tuple[float, float], generator) -> torch.Tensor:
    """A random square crop (side a fraction of the short side), resized to resolution². image: (1, 3, H, W)."""
    height, width = image.shape[-2:]
    side = max(1, round(min(height, width) * uniform(generator, *scale)))
    top = randint(generator, 0, height - side)
    left = randint(generator, 0, width - side)
    crop = image[..., top : top + side, left : left + side]
    if side != resolution:
        crop = F.interpolate(crop, size=(resolution, resolution), mode="bicubic", antialias=side > resolution)
    return crop.clamp(0, 1)


class SampleMaker:
    """Turns (clean image, captions, generator) into a training sample according to a ``DataConfig``."""

    def __init__(self, config: DataConfig) -> None:
        self.config = config
        self.degradation = config.degradation.build()
        self.folder_degradations = {folder: d.build() for folder, d in config.folder_degradation.items()}

    def __call__(
        self, image: torch.Tensor, captions: list[str], generator: torch.Generator, folder: str | None = None
    ) -> dict[str, Any]:
        """``folder``: a key of ``data.folder_degradation`` to degrade with that folder's synthesiser."""
        c = self.config
        x = random_crop(image, c.resolution, c.crop_scale, generator)
        if c.flip_rotate:
            if coin(generator, 0.5):
                x = x.flip(-1)
            x = torch.rot90(x, randint(generator, 0, 3), dims=(-2, -1))
        caption = captions[randint(generator, 0, len(captions) - 1)] if captions else ""
        if not c.semantic_prompt or coin(generator, c.caption_dropout):
            caption = ""
        sample: dict[str, Any] = {"x": x[0], "c_s": caption}
        if c.degrade:
            with torch.no_grad():
                y, c_r, record = self.folder_degradations.get(folder, self.degradation)(x, generator)
                if c.quantize:
                    y = quantize_8bit(y)
            sample.update(y=y[0], c_r=restoration_prompt_variant(c_r, c.restoration_prompt), record=record)
        return sample


class SpireDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by (epoch, index); returns None for undecodable files.

    ``items`` are (image path, captions) pairs; with ``items=None`` and ``config.source == "scenes"`` the items are
    procedural scenes rendered at the training resolution.
    """

    def __init__(self, items: list[tuple[Path, list[str]]] | None, config: DataConfig) -> None:
        if items is None and config.source != "scenes":
            raise ValueError("SpireDataset needs items unless data.source is 'scenes'")
        self.items = items
        self.config = config
        self.make = SampleMaker(config)
        self.folders = _item_folders(items, config) if config.folder_degradation else None

    def __len__(self) -> int:
        return self.config.num_scenes if self.items is None else len(self.items)

    def _load(self, index: int) -> tuple[torch.Tensor, list[str]] | None:
        if self.items is None:
            from spire_ir.data.scenes import render_scene

            image, caption = render_scene(self.config.seed, index, self.config.resolution)
            return image, [caption]
        path, captions = self.items[index]
        try:
            return load_image(path).tensor, captions
        except ImageLoadError as error:
            logger.warning("skipping %s", error)
            return None

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any] | None:
        epoch, index = key
        loaded = self._load(index)
        if loaded is None:
            return None
        image, captions = loaded
        sample = self.make(
            image, captions, make_generator(derive_seed(self.config.seed, "sample", epoch, index)),
            self.folders[index] if self.folders else None,
        )
        sample["key"] = f"{epoch}:{index}"
        return sample


def _item_folders(items: list[tuple[Path, list[str]]] | None, config: DataConfig) -> list[str | None]:
    """For each item, the key of ``config.folder_degradation`` whose folder holds it (None: none does)."""
    roots = set(_folders(config.path))
    unknown = sorted(set(config.folder_degradation) - roots)
    if config.source != "folder" or items is None or unknown:
        raise ValueError(
            f"data.folder_degradation names {', '.join(unknown) or 'folders'} but data.path lists "
            f"{', '.join(sorted(roots)) or 'none'} (data.source: {config.source}); key it by the folders of data.path "
            "exactly as written there, with data.source: folder"
        )
    keys = {folder: Path(folder) for folder in config.folder_degradation}
    return [next((k for k, root in keys.items() if path.is_relative_to(root)), None) for path, _ in items]


class EpochBatchSampler(torch.utils.data.Sampler):
    """Endless batches of (epoch, index) keys: a seeded shuffle per epoch, sharded across processes.

    Global batch g holds ``batch_size * world_size`` consecutive entries of the epoch's permutation; process r takes
    its slice r. ``start`` skips the first ``start`` global batches, which makes resuming exact.
    """

    def __init__(
        self, size: int, batch_size: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1
    ):
        per_epoch = size // (batch_size * world_size)
        if per_epoch == 0:
            raise ValueError(
                f"{size} items are too few for a global batch of {batch_size * world_size}; lower the batch size"
            )
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.rank, self.world_size, self.per_epoch = start, rank, world_size, per_epoch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        global_batch = self.start
        while True:
            epoch, position = divmod(global_batch, self.per_epoch)
            order = torch.randperm(
                self.size, generator=make_generator(derive_seed(self.seed, "order", epoch))
            )
            begin = (position * self.world_size + self.rank) * self.batch_size
            yield [(epoch, int(i)) for i in order[begin : begin + self.batch_size]]
            global_batch += 1


def map_dataset(config: DataConfig) -> SpireDataset:
    """The indexable dataset of a folder, COCO or scenes source (WebDataset shards are streamed instead)."""
    if config.source == "webdataset":
        raise ValueError("WebDataset shards are streamed; they have no indexable dataset")
    if config.source == "coco":
        if not config.captions:
            raise ValueError("data.captions must point to a COCO captions JSON for source: coco")
        items = coco_items(config.path, config.captions)
    elif config.source == "scenes":
        items = None
    else:
        items = folders_items(config.path, config.repeats)
    return SpireDataset(items, config)


def fixed_samples(data: DataConfig, count: int) -> list[dict]:
    """``count`` validation samples, the same at every validation.

    From ``data.validation_path`` when set (a folder of images, or a shard pattern read in order); else the first
    samples of a map-style source's fixed epoch, or the samples a WebDataset run holds out (``data.holdout``).
    """
    if count <= 0:
        return []
    if data.validation_path and Path(data.validation_path).is_dir():
        dataset = SpireDataset(folder_items(data.validation_path), data)
    elif data.validation_path or data.source == "webdataset":
        return _fixed_shard_samples(data, count)
    else:
        dataset = map_dataset(data)
    picked = [dataset[(10**6, i)] for i in range(min(count, len(dataset)))]
    return [s for s in picked if s is not None]


def _fixed_shard_samples(data: DataConfig, count: int) -> list[dict]:
    """The first ``count`` samples of the validation shards, or of the held-out set, degraded with fixed seeds."""
    import itertools

    from spire_ir.data.shards import decode_sample, held_out_samples, raw_samples, shard_urls

    if data.validation_path:
        raws = list(itertools.islice(raw_samples(shard_urls(data.validation_path)), count))
    else:
        raws = held_out_samples(data)[:count]
        if count > len(raws):
            logger.warning("validation: %d of %d samples (data.holdout=%d)", len(raws), count, data.holdout)
    make = SampleMaker(data)
    made = [
        decode_sample(make, raw, make_generator(derive_seed(data.seed, "validation", i)))
        for i, raw in enumerate(raws)
    ]
    for sample, raw in zip(made, raws, strict=True):
        sample["key"] = f"{raw['__url__']}/{raw['__key__']}"
    return [s for s in made if "__skipped__" not in s]


def collate(samples: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack tensors, keep strings and records as lists, count skipped (None) samples."""
    good = [s for s in samples if s is not None and "__skipped__" not in s]
    batch: dict[str, Any] = {"skipped": len(samples) - len(good)}
    if not good:
        return batch
    for key in good[0]:
        values = [s[key] for s in good]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch


def build_dataloader(
    config: DataConfig, batch_size: int, start_batch: int = 0, rank: int = 0, world_size: int = 1
) -> tuple[Any, int | None]:
    """An endless iterable of collated batches, positioned at batch ``start_batch``, and the dataset size.

    Map-style sources (folder, coco, scenes) give a DataLoader over ``EpochBatchSampler`` and their size; WebDataset
    shards give ``shards.stream_loader``'s stream and None (each process reads its own share of the shards, split by
    webdataset by rank, so ``rank`` and ``world_size`` only shard the map-style sources).
    """
    if config.source == "webdataset":
        if config.folder_degradation:
            raise ValueError("data.folder_degradation needs data.source: folder; shards have no folders to key it by")
        from spire_ir.data.shards import stream_loader

        return stream_loader(config, batch_size, start_batch), None
    dataset = map_dataset(config)
    sampler = EpochBatchSampler(len(dataset), batch_size, config.seed, start_batch, rank, world_size)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
    )  # fmt: skip
    return loader, len(dataset)
