"""Degradation speed: ms per image for each pipeline, 1 thread, B = 1 and B = 8, at 256² and 512².

In the same run, when BasicSR is importable, it times a reference Real-ESRGAN second-order pipeline assembled from
the published BasicSR 1.4.2 functions (kernels, ``filter2D``, ``USMSharp``, ``DiffJPEG``, the ``*_pt`` noises),
following ``RealESRGANModel.feed_data`` with the x4plus settings, B = 1, plus the bicubic resize back to the input
size that our same-size pipeline does, and prints the speed ratio.

BasicSR is not a project dependency. To include it (x86-64, from local wheels here)::

    python -m venv /tmp/bsr && /tmp/bsr/bin/pip install torch==2.14.1 torchvision==0.29.1 \\
        opencv-python-headless scipy scikit-image pyyaml addict lmdb yapf tqdm future requests
    /tmp/bsr/bin/pip install --no-build-isolation --no-deps basicsr==1.4.2
    /tmp/bsr/bin/pip install -e . --no-deps
    /tmp/bsr/bin/python benchmarks/degradations.py

Without BasicSR only our timings are printed.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time

import numpy as np
import torch

from spire_ir.degradations import (
    DegradationMixer,
    ParameterizedDegradation,
    RealESRGANConfig,
    RealESRGANDegradation,
    degrade_batch,
)


def _timeit(function, repeats: int) -> float:
    function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def _photo(size: int, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(batch, 3, size // 8, size // 8, generator=generator)
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bicubic").clamp(0, 1)


def ours(repeats: int) -> dict[tuple[str, int, int], float]:
    pipelines = {
        "parameterized": ParameterizedDegradation(),
        "realesrgan": RealESRGANDegradation(),
        "realesrgan+usm": RealESRGANDegradation(RealESRGANConfig(use_usm=True)),
        "mixed": DegradationMixer(),
    }
    results = {}
    for size in (256, 512):
        for batch in (1, 8):
            images = _photo(size, batch)
            for name, pipeline in pipelines.items():
                counter = iter(range(10**9))
                seconds = _timeit(lambda p=pipeline: degrade_batch(p, images, seed=next(counter)), repeats)
                results[(name, size, batch)] = 1000 * seconds / batch
    return results


def basicsr_reference():
    """A callable degrading one (1, 3, H, W) image like Real-ESRGAN x4plus, built from BasicSR 1.4.2."""
    import torchvision.transforms.functional as functional

    sys.modules.setdefault(
        "torchvision.transforms.functional_tensor", functional
    )  # removed in torchvision 0.17
    from basicsr.data.degradations import (
        circular_lowpass_kernel,
        random_add_gaussian_noise_pt,
        random_add_poisson_noise_pt,
        random_mixed_kernels,
    )
    from basicsr.utils import DiffJPEG, USMSharp
    from basicsr.utils.img_process_util import filter2D as _filter2d

    def filter2d(image, kernel):  # BasicSR's filter2D needs contiguous inputs on current torch
        return _filter2d(image.contiguous(), kernel.contiguous())

    kernel_list = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
    kernel_prob = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]
    kernel_range = [2 * v + 1 for v in range(3, 11)]
    jpeger, usm = DiffJPEG(differentiable=False), USMSharp()

    def kernel(sigma):
        size = random.choice(kernel_range)
        if np.random.uniform() < 0.1:
            omega = np.random.uniform(np.pi / 3, np.pi) if size < 13 else np.random.uniform(np.pi / 5, np.pi)
            k = circular_lowpass_kernel(omega, size, pad_to=False)
        else:
            k = random_mixed_kernels(
                kernel_list, kernel_prob, size, sigma, sigma, [-math.pi, math.pi], [0.5, 4], [1, 2], None
            )
        pad = (21 - size) // 2
        return torch.FloatTensor(np.pad(k, ((pad, pad), (pad, pad))))[None]

    def final_sinc():
        if np.random.uniform() < 0.8:
            size = random.choice(kernel_range)
            return torch.FloatTensor(
                circular_lowpass_kernel(np.random.uniform(np.pi / 3, np.pi), size, pad_to=21)
            )[None]
        pulse = torch.zeros(1, 21, 21)
        pulse[0, 10, 10] = 1
        return pulse

    def resize(image, probs, scale_range, size=None):
        direction = random.choices(["up", "down", "keep"], probs)[0]
        scale = {
            "up": np.random.uniform(1, scale_range[1]),
            "down": np.random.uniform(scale_range[0], 1),
        }.get(direction, 1)
        mode = random.choice(["area", "bilinear", "bicubic"])
        if size is None:
            return torch.nn.functional.interpolate(image, scale_factor=scale, mode=mode)
        return torch.nn.functional.interpolate(
            image, size=(int(size[0] * scale), int(size[1] * scale)), mode=mode
        )

    def noise(image, sigma_range, poisson_range):
        if np.random.uniform() < 0.5:
            return random_add_gaussian_noise_pt(
                image, sigma_range=sigma_range, clip=True, rounds=False, gray_prob=0.4
            )
        return random_add_poisson_noise_pt(
            image, scale_range=poisson_range, gray_prob=0.4, clip=True, rounds=False
        )

    def degrade(gt: torch.Tensor, use_usm: bool = True) -> torch.Tensor:
        height, width = gt.shape[-2:]
        k1, k2, sinc = kernel([0.2, 3]), kernel([0.2, 1.5]), final_sinc()
        out = filter2d(usm(gt) if use_usm else gt, k1)
        out = resize(out, [0.2, 0.7, 0.1], [0.15, 1.5])
        out = noise(out, [1, 30], [0.05, 3])
        out = jpeger(torch.clamp(out, 0, 1), quality=out.new_zeros(out.size(0)).uniform_(30, 95))
        if np.random.uniform() < 0.8:
            out = filter2d(out, k2)
        out = resize(out, [0.3, 0.4, 0.3], [0.3, 1.2], size=(height / 4, width / 4))
        out = noise(out, [1, 25], [0.05, 2.5])
        quality = out.new_zeros(out.size(0)).uniform_(30, 95)
        mode = random.choice(["area", "bilinear", "bicubic"])
        if np.random.uniform() < 0.5:
            out = torch.nn.functional.interpolate(out, size=(height // 4, width // 4), mode=mode)
            out = jpeger(torch.clamp(filter2d(out, sinc), 0, 1), quality=quality)
        else:
            out = jpeger(torch.clamp(out, 0, 1), quality=quality)
            out = filter2d(
                torch.nn.functional.interpolate(out, size=(height // 4, width // 4), mode=mode), sinc
            )
        out = torch.clamp((out * 255.0).round(), 0, 255) / 255.0
        out = torch.nn.functional.interpolate(out, size=(height, width), mode="bicubic")
        return torch.clamp((out * 255.0).round(), 0, 255) / 255.0

    return degrade


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per configuration")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; ms per image (mean of {args.repeats} calls, fresh seeds)")
    results = ours(args.repeats)
    print(f"{'pipeline':<16} {'size':>5} {'B':>3} {'ms/img':>8}")
    for (name, size, batch), ms in results.items():
        print(f"{name:<16} {size:>5} {batch:>3} {ms:>8.1f}")
    try:
        reference = basicsr_reference()
    except ImportError as error:
        print(f"\nBasicSR reference skipped ({error}); see this file's docstring to include it")
        return
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    for size in (256, 512):
        image = _photo(size, 1)
        with torch.no_grad():
            usm_ms = 1000 * _timeit(lambda image=image: reference(image, True), args.repeats)
            plain_ms = 1000 * _timeit(lambda image=image: reference(image, False), args.repeats)
        ours_usm, ours_plain = results[("realesrgan+usm", size, 1)], results[("realesrgan", size, 1)]
        print(
            f"\nBasicSR 1.4.2 reference, {size}², B=1: with USM {usm_ms:.1f} ms (ours {ours_usm:.1f} ms, "
            f"{usm_ms / ours_usm:.1f}x faster); without USM {plain_ms:.1f} ms (ours {ours_plain:.1f} ms, "
            f"{plain_ms / ours_plain:.1f}x faster)"
        )


if __name__ == "__main__":
    main()
