"""Stage 1's gate: the prior alone as a denoiser given the true σ, on the held-out photos at their size.

    python recipes/spire-tiny/probe_prior.py runs/spire-tiny-v2/prior/base --sigmas 0.02,0.05,0.10

For each σ, every photo of --images gets x + σε (seed = its index), the prior removes it in one call with the
photo's caption, and the mean PSNR of input and output is printed as JSON (with --output, also written there).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="a train-base export (RUN/base)")
    parser.add_argument("--images", default="data/spire-mini/eval/photos")
    parser.add_argument("--sigmas", default="0.02,0.05,0.10")
    parser.add_argument("-o", "--output", default=None)
    args = parser.parse_args()

    from spire_ir.data import folder_items
    from spire_ir.evaluation.metrics import psnr
    from spire_ir.models.loading import load_base_components
    from spire_ir.models.text import encode_text
    from spire_ir.schedulers import noise_timestep
    from spire_ir.utils.images import load_image
    from spire_ir.utils.seeding import make_generator

    parts = load_base_components(Path(args.base))
    unet, vae = parts["unet"].eval(), parts["vae"]
    results = {}
    for sigma in (float(s) for s in args.sigmas.split(",")):
        before, after = [], []
        for index, (path, captions) in enumerate(folder_items(args.images)):
            x = load_image(path).tensor
            noisy = x + sigma * torch.randn(x.shape, generator=make_generator(index))
            with torch.no_grad():
                latents = vae.encode(noisy * 2 - 1).latent_dist.mode()
                embeds = encode_text(parts["tokenizer"], parts["text_encoder"], [captions[0] if captions else ""])
                residual = unet(latents, noise_timestep(torch.tensor([sigma])), encoder_hidden_states=embeds).sample
                denoised = ((vae.decode(latents + residual).sample + 1) / 2).clamp(0, 1)
            before.append(float(psnr(noisy.clamp(0, 1), x)))
            after.append(float(psnr(denoised, x)))
        results[f"{sigma:g}"] = {"input": sum(before) / len(before), "denoised": sum(after) / len(after)}
    text = json.dumps({"base": args.base, "images": args.images, "psnr": results}, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
