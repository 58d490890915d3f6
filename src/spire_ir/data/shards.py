"""WebDataset shards as an endless, shuffled, exactly resumable stream of training batches.

Each process and DataLoader worker reads its own share of an endless sequence of passes over the shard list:

    pass e: the shards in a seeded order (``derive_seed(seed, "shards", e)``), then pass e + 1, ...
      -> webdataset's own ``split_by_node`` (process rank) and ``split_by_worker`` (DataLoader worker)
      -> tar members grouped into samples (``tarfile_to_samples``); held-out validation samples dropped
      -> a seeded shuffle buffer of undecoded samples (``webdataset.shuffle``), one seed per process and worker
      -> position p on that worker's stream: decode, crop, degrade with a generator seeded by (seed, rank,
         worker, p) -> batches of ``batch_size`` (an undecodable member stays in its batch as a counted skip)

So the stream never ends, every worker's stream is a function of (seed, rank, worker count, worker), and the
DataLoader, which takes one batch from each worker in turn, yields global batch g from worker g mod W as that
worker's batch g // W. Resuming at global batch S is therefore exact: every worker re-reads, without decoding,
the S // W batches it had made, and the first S mod W batches the loader yields again are dropped
(``resume: exact``). Re-reading costs one pass over the bytes already trained on; ``resume: fast`` skips it and
starts a freshly seeded stream instead, which is reproducible but not the samples an uninterrupted run sees.
"""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from spire_ir.data.datasets import DataConfig, SampleMaker, collate
from spire_ir.utils.seeding import derive_seed, make_generator

logger = logging.getLogger(__name__)

__all__ = ["ShardStream", "decode_sample", "held_out_samples", "raw_samples", "shard_urls", "stream_loader"]

IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")


def _webdataset():
    try:
        import webdataset as wds
    except ImportError as error:  # pragma: no cover - the train extra installs it
        raise ImportError("WebDataset sources need `pip install spire-ir[train]` (webdataset)") from error
    return wds


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def shard_urls(pattern: str) -> list[str]:
    """The shard list of a brace pattern (``shards/{0000..0099}.tar``); local shards must exist.

    Raises:
        ValueError: the pattern names a folder of images, or nothing.
        FileNotFoundError: local shards that are missing or empty, named.
    """
    if not pattern:
        raise ValueError("data.path is empty; set it to a shard pattern such as shards/{0000..0099}.tar")
    if Path(pattern).is_dir():
        raise ValueError(
            f"data.path {pattern!r} is a folder; for a folder of images set data.source: folder, or point "
            "data.path at tar shards (shards/{0000..0099}.tar)"
        )
    from webdataset.shardlists import expand_urls

    urls = expand_urls(pattern)
    missing = [u for u in urls if _is_local(u) and (not Path(u).is_file() or Path(u).stat().st_size == 0)]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"{len(missing)} of {len(urls)} shards of data.path are missing or empty: {shown}"
        )
    return urls


def _log_and_continue(error: Exception) -> bool:
    """webdataset handler: an unreadable tar member or shard is logged and skipped."""
    logger.warning("skipping unreadable shard data: %r", error)
    return True


def raw_samples(urls: list[str]) -> Iterator[dict]:
    """The samples of ``urls`` in file order, undecoded (one pass, no splitting)."""
    wds = _webdataset()
    return wds.tarfile_to_samples(handler=_log_and_continue)(iter({"url": u} for u in urls))


def held_out_samples(config: DataConfig) -> list[dict]:
    """The validation samples a streaming run sets aside: the first ``config.holdout`` samples of the first shard.

    Only used when ``data.validation_path`` is empty; training never sees these samples.
    """
    if config.validation_path or config.holdout <= 0:
        return []
    return list(itertools.islice(raw_samples(shard_urls(config.path)[:1]), config.holdout))


def decode_sample(make: SampleMaker, raw: dict, generator: torch.Generator) -> dict[str, Any]:
    """A raw WebDataset sample (image member + ``txt`` caption) -> a training sample; a skip marker when the image
    does not decode (``collate`` counts it)."""
    from PIL import Image

    from spire_ir.utils.images import pil_to_tensor

    data = next((raw[k] for k in IMAGE_MEMBERS if k in raw), None)
    text = raw.get("txt", b"")
    text = text.decode("utf-8").strip() if isinstance(text, bytes) else str(text)
    try:
        if data is None:
            raise ValueError(f"no image member (looked for {', '.join(IMAGE_MEMBERS)})")
        with Image.open(io.BytesIO(data)) as pil:
            image = pil_to_tensor(pil.convert("RGB"))
    except Exception as error:  # any decoder error: this one file is skipped, the run goes on
        logger.warning("skipping %s/%s: %s", raw.get("__url__"), raw.get("__key__"), error)
        return {"__skipped__": True}
    return make(image, [text], generator)


class ShardStream(torch.utils.data.IterableDataset):
    """Endless collated batches of one process's share of the shards (see the module docstring).

    Args:
        config: ``source: webdataset``; ``shard_shuffle``, ``shuffle_buffer``, ``shuffle_initial`` shape the order.
        batch_size: samples per batch (per process).
        skip: batches each worker re-reads without decoding before its first yield (exact resume).
        stream_seed: the seed of the stream (``config.seed``; another one for a fast resume).
    """

    def __init__(self, config: DataConfig, batch_size: int, skip: int = 0, stream_seed: int | None = None):
        self.config, self.batch_size, self.skip = config, batch_size, skip
        self.seed = config.seed if stream_seed is None else stream_seed
        self.urls = shard_urls(config.path)
        self.held_out = {(s["__url__"], s["__key__"]) for s in held_out_samples(config)}

    def _passes(self, budget: dict) -> Iterator[dict]:
        """Endless passes over the shard list, each in its own seeded order."""
        for epoch in itertools.count():
            order = range(len(self.urls))
            if self.config.shard_shuffle:
                order = torch.randperm(
                    len(self.urls), generator=make_generator(derive_seed(self.seed, "shards", epoch))
                )
            for index in order:
                budget["shards"] += 1
                if budget["shards"] > budget["limit"]:
                    raise RuntimeError(
                        f"read {budget['limit']} shards of {self.config.path} without one sample; the shards hold "
                        "no samples with an image member"
                    )
                yield {"url": self.urls[int(index)]}

    def _counted(self, raw: Iterator[dict], budget: dict) -> Iterator[dict]:
        """The training samples of ``raw`` (held-out ones dropped); each resets the empty-shard budget."""
        for sample in raw:
            budget["shards"] = 0
            if (sample["__url__"], sample["__key__"]) not in self.held_out:
                yield sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        wds = _webdataset()
        rank, world, worker, workers = wds.utils.pytorch_worker_info()
        budget = {"shards": 0, "limit": 2 * len(self.urls) * world * workers + 2}
        shards = wds.split_by_worker(wds.split_by_node(self._passes(budget)))
        raw: Iterator[dict] = wds.tarfile_to_samples(handler=_log_and_continue)(shards)
        raw = self._counted(raw, budget)
        c = self.config
        if c.shuffle_buffer > 1:
            seed = derive_seed(self.seed, "buffer", rank, worker)
            raw = wds.shuffle(c.shuffle_buffer, min(c.shuffle_initial, c.shuffle_buffer), seed=seed)(raw)
        make, batch = SampleMaker(c), []
        for position, sample in enumerate(raw):
            if position < self.skip * self.batch_size:
                continue  # exact resume: already trained on; read, not decoded
            generator = make_generator(derive_seed(self.seed, "wds", rank, worker, position))
            made = decode_sample(make, sample, generator)
            made.setdefault("key", f"{sample['__url__']}/{sample['__key__']}@{rank}.{worker}.{position}")
            batch.append(made)
            if len(batch) == self.batch_size:
                yield collate(batch)
                batch = []


class _Dropped:
    """Iterate ``loader`` without its first ``count`` batches (exact resume between two workers' turns)."""

    def __init__(self, loader: torch.utils.data.DataLoader, count: int) -> None:
        self.loader, self.count = loader, count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return itertools.islice(iter(self.loader), self.count, None)


def stream_loader(config: DataConfig, batch_size: int, start_batch: int = 0) -> Any:
    """An endless iterable of collated batches from shards, positioned at global batch ``start_batch``."""
    workers = max(1, config.num_workers)
    if config.resume == "fast" and start_batch:
        stream = ShardStream(
            config, batch_size, stream_seed=derive_seed(config.seed, "fast-resume", start_batch)
        )
        dropped = 0
    else:
        stream, dropped = ShardStream(config, batch_size, skip=start_batch // workers), start_batch % workers
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=config.num_workers)
    return _Dropped(loader, dropped) if dropped else loader
