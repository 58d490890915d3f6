"""Sampler speed against diffusers' ControlNet pipeline, and peak memory with tiling.

1. Seconds per denoising step under CFG: our ``SpirePipeline`` against diffusers'
   ``StableDiffusionControlNetPipeline`` with the *same* UNet, VAE and text encoder, a ControlNet of the same size
   (``ControlNetModel.from_unet``), the same DDIM scheduler, steps and guidance. Ours runs the adaptor once per step
   (its γ/β serve both CFG halves); diffusers runs the ControlNet on the doubled batch.
2. Peak RSS (a fresh process per size) for 512², 1024² and 2048² inputs with 512-px tiles.

Sizes: ``--preset sd15`` builds SD-1.5-shaped components with random weights (use on a GPU); the default
``--preset cpu`` scales every width down by 10 (4 UNet levels, same layout) so it runs on 2 CPU cores.

    python benchmarks/pipeline.py                 # CPU preset, both parts
    python benchmarks/pipeline.py --preset sd15 --device cuda --dtype fp16
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import torch

PRESETS = {
    # SD 1.5 UNet widths / 10 (rounded to the GroupNorm groups); same block types, 2 layers per block
    "cpu": {"widths": (32, 64, 128, 128), "heads": 8, "text": 64, "groups": 8, "vae": (8, 16, 32, 32), "vae_groups": 8},
    "sd15": {"widths": (320, 640, 1280, 1280), "heads": 8, "text": 768, "groups": 32, "vae": (128, 256, 512, 512), "vae_groups": 32},
}  # fmt: skip


def build(preset: str, dtype: torch.dtype, device: str):
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from spire_ir.models import SpireAdaptor
    from spire_ir.models.text import write_byte_bpe_tokenizer
    from spire_ir.pipeline import SpirePipeline
    from spire_ir.testing import SD_SCHEDULER

    p = PRESETS[preset]
    torch.manual_seed(0)
    tokenizer = write_byte_bpe_tokenizer(tempfile.mkdtemp())
    unet = UNet2DConditionModel(
        block_out_channels=p["widths"],
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=p["text"],
        attention_head_dim=p["heads"],
        norm_num_groups=p["groups"],
        layers_per_block=2,
        sample_size=64,
    )
    vae = AutoencoderKL(
        block_out_channels=p["vae"],
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        norm_num_groups=p["vae_groups"],
        sample_size=512,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=p["text"], intermediate_size=4 * p["text"], num_attention_heads=8, num_hidden_layers=4,
            vocab_size=len(tokenizer), bos_token_id=len(tokenizer) - 2, eos_token_id=len(tokenizer) - 1,
            pad_token_id=len(tokenizer) - 1,
        )
    )  # fmt: skip
    adaptor = SpireAdaptor.from_unet(unet, vae_scale_factor=8)
    for module in (unet, vae, text_encoder, adaptor):
        module.requires_grad_(False).eval()
    ours = SpirePipeline(vae, text_encoder, tokenizer, unet, adaptor, DDIMScheduler(**SD_SCHEDULER)).to(
        device, dtype
    )
    controlnet = ControlNetModel.from_unet(unet).to(device, dtype)
    theirs = StableDiffusionControlNetPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, controlnet=controlnet,
        scheduler=DDIMScheduler(**SD_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    ).to(device, dtype)  # fmt: skip
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    params = {
        "unet": sum(x.numel() for x in unet.parameters()),
        "adaptor": sum(x.numel() for x in adaptor.parameters()),
        "controlnet": sum(x.numel() for x in controlnet.parameters()),
    }
    return ours, theirs, params


def per_step_seconds(
    preset: str, device: str, dtype: torch.dtype, size: int, steps: int, repeats: int
) -> None:
    ours, theirs, params = build(preset, dtype, device)
    image = torch.rand(1, 3, size, size)
    times: dict[str, list[float]] = {"ours": [], "diffusers": []}

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(repeats + 1):  # the first round warms up
        stamps: list[float] = []
        ours(image, prompt="a cat", restoration_prompt="Denoise with sigma 0.05", num_inference_steps=steps,
             guidance_scale=7.5, generator=torch.Generator().manual_seed(0), output_type="pt", color_fix="none",
             tile_size=None, callback=lambda i, n: (sync(), stamps.append(time.perf_counter())))  # fmt: skip
        times["ours"].append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
        stamps = []

        def on_step(pipe, i, t, kwargs):
            sync()
            stamps.append(time.perf_counter())
            return kwargs

        theirs("a cat", image=image, num_inference_steps=steps, guidance_scale=7.5, height=size, width=size,
               generator=torch.Generator().manual_seed(0), output_type="pt", callback_on_step_end=on_step)  # fmt: skip
        times["diffusers"].append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
    ours_s = min(times["ours"][1:])
    theirs_s = min(times["diffusers"][1:])
    print(f"preset {preset}, {size}², {steps} DDIM steps, CFG 7.5, {device} {dtype}; params {params}")
    print(
        f"seconds per step: ours {ours_s:.4f}, diffusers ControlNet {theirs_s:.4f}, ratio {ours_s / theirs_s:.2f}"
    )
    if device == "cuda":
        print(
            f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (both pipelines, same process)"
        )


def rss_child(preset: str, size: int, steps: int) -> None:
    """Run in a fresh process: restore a size² image with 512-px tiles; print peak RSS as JSON."""
    torch.set_num_threads(2)
    ours, _, _ = build(preset, torch.float32, "cpu")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    image = torch.rand(1, 3, size, size)
    start = time.perf_counter()
    ours(image, prompt="a cat", num_inference_steps=steps, guidance_scale=4.0, output_type="pt",
         generator=torch.Generator().manual_seed(0), tile_size=512, tile_overlap=64)  # fmt: skip
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "size": size,
                "peak_rss_mb": round(peak, 1),
                "after_build_mb": round(before, 1),
                "seconds": round(seconds, 1),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=tuple(PRESETS), default="cpu")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32")
    parser.add_argument("--size", type=int, default=512, help="image size for the per-step timing")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child is not None:
        rss_child(args.preset, args.rss_child, steps=2)
        return
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    per_step_seconds(args.preset, args.device, dtype, args.size, args.steps, args.repeats)
    if args.skip_rss:
        return
    print("peak RSS with 512-px tiles (fresh process each, 2 steps):")
    peaks = {}
    for size in (512, 1024, 2048):
        out = subprocess.run(
            [sys.executable, __file__, "--preset", args.preset, "--rss-child", str(size)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = json.loads(out.stdout.strip().splitlines()[-1])
        peaks[size] = result["peak_rss_mb"]
        print(
            f"  {size}²: peak {result['peak_rss_mb']:.0f} MB (after building {result['after_build_mb']:.0f} MB), {result['seconds']:.1f} s"
        )
    print(f"2048² / 512² peak ratio: {peaks[2048] / peaks[512]:.2f}")


if __name__ == "__main__":
    main()
