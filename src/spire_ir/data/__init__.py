"""Training and benchmark data: image folders, COCO captions and WebDataset shards turned into (x, y, c_s, c_r)
samples by the degradation synthesiser (``datasets``), and the procedural scenes of the smoke data (``scenes``)."""

from spire_ir.data.datasets import (
    DataConfig,
    EpochBatchSampler,
    SpireDataset,
    build_dataloader,
    coco_items,
    collate,
    fixed_samples,
    folder_items,
    folders_items,
    map_dataset,
    restoration_prompt_variant,
)

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
