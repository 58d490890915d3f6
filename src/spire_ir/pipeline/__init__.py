"""The SPIRE pipeline (one denoising loop for every scheduler) and its colour fix."""

from spire_ir.pipeline.pipeline_spire import SpirePipeline, SpirePipelineOutput, tile_windows

__all__ = ["SpirePipeline", "SpirePipelineOutput", "tile_windows"]
