"""Copy a trained pipeline folder into the package as the built-in spire-tiny, weights stored in fp16.

    python scripts/export_spire_tiny.py runs/spire-tiny/adaptor/pipeline -o src/spire_ir/weights/spire-tiny \
        --default-strength 0.1

``--default-steps`` / ``--default-guidance`` / ``--default-strength`` become the model's sampler defaults (what
``spire restore`` uses when no flag is given); docs/training.md says how they were chosen.

Every component is stored in fp16 and loaded back in fp32. The script checks that this costs no quality: it
restores the evaluation photos with the fp32 source and with the fp16 export (same seed) and requires the two
outputs to agree to at least --min-psnr dB (default 45), i.e. far below what any metric in the card resolves. The
folder is written next to the target and moved into place only when the check passes.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pipeline", help="a pipeline folder from `spire train`")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--images", default="data/spire-mini/eval/photos")
    parser.add_argument("--min-psnr", type=float, default=45.0)
    parser.add_argument("--default-steps", type=int, default=None)
    parser.add_argument("--default-guidance", type=float, default=None)
    parser.add_argument("--default-strength", type=float, default=None)
    args = parser.parse_args()
    from spire_ir.image_utils import load_image
    from spire_ir.metrics import psnr
    from spire_ir.pipeline import SpirePipeline

    source = SpirePipeline.from_pretrained(args.pipeline, dtype=torch.float32)
    asked = {"default_steps": args.default_steps, "default_guidance": args.default_guidance,
             "default_strength": args.default_strength}  # fmt: skip
    defaults = {k: v for k, v in asked.items() if v is not None}
    source.register_to_config(**defaults)
    output = Path(args.output)
    staging = output.with_name(output.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    source.to(dtype=torch.float16)
    source.save_pretrained(staging)
    # the round trip to fp16 changed `source` in place: compare against a fresh fp32 copy of the trained weights
    source = SpirePipeline.from_pretrained(args.pipeline, dtype=torch.float32)
    source.register_to_config(**defaults)
    exported = SpirePipeline.from_pretrained(staging, dtype=torch.float32)
    files = sorted(Path(args.images).glob("*.png"))[:4]
    y = torch.cat([load_image(f).tensor for f in files])  # the evaluation photos are 256² crops
    y = (y + 0.08 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    results = []
    for pipe in (source, exported):
        pipe.set_progress_bar_config(disable=True)
        results.append(pipe(y, prompt="a photo", restoration_prompt="Denoise with sigma 0.08", num_inference_steps=10,
                            generator=torch.Generator().manual_seed(0), output_type="pt").images.float())  # fmt: skip
    agreement = float(psnr(results[1], results[0]).mean())
    report = {"fp16_vs_fp32_output_psnr_db": round(agreement, 2), "size_mb": round(_size_mb(staging), 2),
              "components_mb": {p.name: round(_size_mb(p), 2) for p in sorted(staging.iterdir()) if p.is_dir()}}  # fmt: skip
    print(json.dumps(report, indent=1))
    if agreement < args.min_psnr:
        shutil.rmtree(staging)
        raise SystemExit(f"fp16 export changes outputs ({agreement:.1f} dB < {args.min_psnr}); not exported")
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)
    print(f"-> {output}")


if __name__ == "__main__":
    main()
