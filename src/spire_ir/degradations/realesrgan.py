"""Real-ESRGAN's second-order degradation (Wang et al., 2021), per image, with the x4plus settings.

Written from the description in ``degradations.md`` (A.3, A.4, A.10), with DiffBIR v2.1's same-size semantics: the
image is degraded at its own size with a stage-2 scale of 4, then resized back to the input size with bicubic
interpolation and quantised to 8 bit, so y and x have the same size. Its restoration prompt is always
"Remove all degradation".

Deliberate differences from upstream, all documented in ``docs/degradations.md``:

* every draw is per image (upstream shares the resize, noise-type and final-order draws across a batch, and the
  gray-noise field across the whole batch);
* JPEG is real libjpeg at the rounded quality (upstream uses a differentiable JPEG approximation);
* the USM-sharpened source is optional (``use_usm``, off by default) so that y is a degradation of x itself,
  which keeps fidelity metrics against x meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from spire_ir.degradations.kernels import KernelConfig, sample_blur_kernel, sample_final_sinc
from spire_ir.ops import image as image_ops
from spire_ir.prompts import BLIND_PROMPT
from spire_ir.utils.images import quantize_8bit
from spire_ir.utils.seeding import choice, coin, uniform

__all__ = ["RealESRGANConfig", "RealESRGANDegradation", "StageConfig"]

RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class StageConfig:
    """One of the two degradation stages (x4plus stage-1 values by default)."""

    kernel: KernelConfig = field(default_factory=KernelConfig)
    blur_prob: float = 1.0
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)  # σ on the 0-255 scale
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)


def _stage2() -> StageConfig:
    return StageConfig(
        kernel=KernelConfig(blur_sigma=(0.2, 1.5)),
        blur_prob=0.8,
        resize_prob=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        noise_range=(1.0, 25.0),
        poisson_scale_range=(0.05, 2.5),
    )


@dataclass(frozen=True)
class RealESRGANConfig:
    """The second-order pipeline: two stages, then the final resize/sinc/JPEG in random order."""

    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=_stage2)
    scale: float = 4.0  # the stage-2 and final sizes are measured from input_size / scale
    final_sinc_prob: float = 0.8
    use_usm: bool = False
    resize_back: bool = True  # bicubic back to the input size (DiffBIR v2.1 semantics)


class RealESRGANDegradation:
    """Real-ESRGAN second-order degradation of one image at a time. ``__call__`` returns (y, c_r, record)."""

    name = "realesrgan"

    def __init__(self, config: RealESRGANConfig | None = None) -> None:
        self.config = config or RealESRGANConfig()

    # each helper applies one step and appends its record

    def _blur(self, image, stage: StageConfig, generator, log: list) -> torch.Tensor:
        kernel, rec = sample_blur_kernel(generator, stage.kernel)
        log.append({"op": "blur", **rec})
        return image_ops.filter2d(image, kernel)

    def _resize(
        self, image, stage: StageConfig, base: tuple[float, float], generator, log: list
    ) -> torch.Tensor:
        direction = choice(generator, ("up", "down", "keep"), stage.resize_prob)
        if direction == "up":
            scale = uniform(generator, 1.0, stage.resize_range[1])
        elif direction == "down":
            scale = uniform(generator, stage.resize_range[0], 1.0)
        else:
            scale = 1.0
        mode = choice(generator, RESIZE_MODES)
        size = (max(1, int(base[0] * scale)), max(1, int(base[1] * scale)))
        log.append(
            {"op": "resize", "direction": direction, "scale": round(scale, 4), "mode": mode, "size": size}
        )
        return image_ops.resize(image, size, mode)

    def _noise(self, image, stage: StageConfig, generator, log: list) -> torch.Tensor:
        gaussian = coin(generator, stage.gaussian_noise_prob)
        gray = coin(generator, stage.gray_noise_prob)
        if gaussian:
            sigma = uniform(generator, *stage.noise_range)
            log.append({"op": "gaussian_noise", "sigma_255": round(sigma, 4), "gray": gray})
            return image_ops.add_gaussian_noise(image, sigma / 255.0, generator, gray=gray)
        scale = uniform(generator, *stage.poisson_scale_range)
        log.append({"op": "poisson_noise", "scale": round(scale, 4), "gray": gray})
        return image_ops.add_poisson_noise(image, scale, generator, gray=gray)

    def _jpeg(self, image, stage: StageConfig, generator, log: list) -> torch.Tensor:
        quality = round(uniform(generator, *stage.jpeg_range))
        log.append({"op": "jpeg", "quality": quality})
        return image_ops.jpeg(image.clamp(0, 1), quality)

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, str, dict]:
        """Degrade ``image`` (1, 3, H, W) in [0, 1]; a batch is processed image by image with one generator.

        Returns:
            (y with the input's size, 8-bit quantised; "Remove all degradation"; record of every draw).
        """
        image_ops._check_image(image)
        if image.shape[0] != 1:
            results = [self(img.unsqueeze(0), generator) for img in image]
            return torch.cat([r[0] for r in results]), BLIND_PROMPT, {"batch": [r[2] for r in results]}
        c = self.config
        height, width = image.shape[-2:]
        log: list[dict] = []
        out = image_ops.usm_sharpen(image) if c.use_usm else image
        if c.use_usm:
            log.append({"op": "usm"})
        # first degradation: blur, resize (relative to the current size), noise, JPEG
        out = self._blur(out, c.stage1, generator, log)
        out = self._resize(out, c.stage1, (out.shape[-2], out.shape[-1]), generator, log)
        out = self._noise(out, c.stage1, generator, log)
        out = self._jpeg(out, c.stage1, generator, log)
        # second degradation: sizes are measured from the input size / scale, not from the current size
        if coin(generator, c.stage2.blur_prob):
            out = self._blur(out, c.stage2, generator, log)
        low = (height / c.scale, width / c.scale)
        out = self._resize(out, c.stage2, low, generator, log)
        out = self._noise(out, c.stage2, generator, log)
        # final stage: [resize + sinc, JPEG] or [JPEG, resize + sinc], one coin
        sinc, sinc_rec = sample_final_sinc(generator, c.final_sinc_prob)
        jpeg_first = coin(generator, 0.5)
        final_mode = choice(generator, RESIZE_MODES)
        final_size = (max(1, int(height // c.scale)), max(1, int(width // c.scale)))

        def resize_sinc(x: torch.Tensor) -> torch.Tensor:
            x = image_ops.resize(x, final_size, final_mode)
            log.append({"op": "resize", "size": final_size, "mode": final_mode})
            rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in sinc_rec.items()}
            log.append({"op": "final_filter", **rounded})
            return image_ops.filter2d(x, sinc) if sinc_rec["kernel"] != "pulse" else x

        if jpeg_first:
            out = resize_sinc(self._jpeg(out, c.stage2, generator, log))
        else:
            out = self._jpeg(resize_sinc(out), c.stage2, generator, log)
        out = quantize_8bit(out)
        if c.resize_back:
            out = image_ops.resize(out, (height, width), "bicubic")
            log.append({"op": "resize_back", "size": (height, width), "mode": "bicubic"})
            out = quantize_8bit(out)
        return out, BLIND_PROMPT, {"pipeline": "realesrgan", "ops": log}
