"""Training and benchmark data: image folders, COCO captions and WebDataset shards turned into (x, y, c_s, c_r)
samples by the degradation synthesiser (``datasets``), and the procedural scenes of the smoke data (``scenes``)."""

from spire_ir.data import datasets as _datasets
from spire_ir.data.datasets import *  # noqa: F403 - the package's names are the datasets module's

__all__ = _datasets.__all__
