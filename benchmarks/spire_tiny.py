"""Wall time and peak memory of the built-in spire-tiny model at default settings, one fresh process per size.

What a user gets from ``spire restore photo.png -r "..."`` with no other flag: the library loaded, the model read
from the package, the image restored (default steps, guidance, colour fix), the result decoded. Each size runs in
its own process so that peak RSS is that size's; the time is of the restore call alone (model loading is listed
separately). Images larger than the CLI's tile size (the model folder's ``default_tile_size``, else 512 px) are
sampled in tiles, as the CLI does, unless ``--tile`` says otherwise (0: whole).

    python benchmarks/spire_tiny.py                   # 512², 1024², 2048² on all cores
    python benchmarks/spire_tiny.py --threads 2 --sizes 512
    python benchmarks/spire_tiny.py --threads 2 -r "Deblur with sigma 2.0"   # with data consistency's solve
    python benchmarks/spire_tiny.py --threads 2 --guidance 1.5 --self-ensemble 4   # other sampler settings
    python benchmarks/spire_tiny.py --threads 2 --sizes 1024 --tile 0 --attention-window 0   # whole, full attention
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(
    model: str, size: int, tile: int | None, threads: int | None, repeats: int, restoration: str, sampler: dict
) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    from spire_ir.app import tile_size_for
    from spire_ir.pipeline import SpirePipeline

    pipe = SpirePipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter() - started
    if tile is None:  # what `spire restore` does without --tile
        tile = tile_size_for(pipe.config)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand((1, 3, size, size), generator=generator)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        pipe(image, prompt="a photo", restoration_prompt=restoration, tile_size=tile,
             generator=torch.Generator().manual_seed(0), output_type="pt", **sampler)  # fmt: skip
        times.append(time.perf_counter() - started)
    print(json.dumps({
        "size": size, "tile": tile if size > tile > 0 else 0, "restoration_prompt": restoration,
        "threads": torch.get_num_threads(),
        "guidance": sampler.get("guidance_scale", float(pipe.config.default_guidance)),
        "self_ensemble": sampler.get("self_ensemble", int(pipe.config.get("default_self_ensemble", 1))),
        "attention_window": sampler.get("attention_window", int(pipe.config.get("default_attention_window", 0))),
        "load_s": round(loaded, 2),
        "restore_s": [round(t, 2) for t in times], "best_s": round(min(times), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="restores per size; the best is reported")
    parser.add_argument(
        "-r", "--restoration-prompt", default="Denoise with sigma 0.08",
        help="c_r (default: denoise, which data consistency leaves alone; a deblur or upsample prompt adds its solve)",
    )  # fmt: skip
    parser.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's)")
    parser.add_argument(
        "--self-ensemble", type=int, default=None, help="views averaged, 1/2/4/8 (default: the model's)"
    )
    parser.add_argument(
        "--attention-window", type=int, default=None, help="self-attention window, px; 0: whole (default: the model's)"
    )
    parser.add_argument("--tile", type=int, default=None, help="tile size, px (default: the CLI's); 0: whole")
    parser.add_argument("--model", default="spire-tiny", help="a pipeline folder (default: the built-in spire-tiny)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sampler = {}
    if args.guidance is not None:
        sampler["guidance_scale"] = args.guidance
    if args.self_ensemble is not None:
        sampler["self_ensemble"] = args.self_ensemble
    if args.attention_window is not None:
        sampler["attention_window"] = args.attention_window
    if args.child is not None:
        child(args.model, args.child, args.tile, args.threads, args.repeats, args.restoration_prompt, sampler)
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        command = [
            sys.executable,
            __file__,
            "--child",
            str(size),
            "--repeats",
            str(args.repeats if size <= 512 else 1),
            "--restoration-prompt",
            args.restoration_prompt,
            "--model",
            args.model,
        ]
        if args.tile is not None:
            command += ["--tile", str(args.tile)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        if args.guidance is not None:
            command += ["--guidance", str(args.guidance)]
        if args.self_ensemble is not None:
            command += ["--self-ensemble", str(args.self_ensemble)]
        if args.attention_window is not None:
            command += ["--attention-window", str(args.attention_window)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| size | tiles | guidance | views | attention window | restore (s) | model load (s) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        tile = f"{row['tile']} px" if row["tile"] else "none"
        window = f"{row['attention_window']} px" if row["attention_window"] else "whole"
        print(f"| {row['size']}² | {tile} | {row['guidance']} | {row['self_ensemble']} | {window} | {row['best_s']} | "
              f"{row['load_s']} | {row['peak_rss_mb']} |")  # fmt: skip


if __name__ == "__main__":
    main()
