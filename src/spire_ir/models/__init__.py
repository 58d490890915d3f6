"""Model components: the SPIRE adaptor and the modulation-fusion hooks."""

from .adaptor import Modulation, SpireAdaptor, modulate_unet, skip_channels

__all__ = ["Modulation", "SpireAdaptor", "modulate_unet", "skip_channels"]
