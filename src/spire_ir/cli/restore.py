"""``spire restore`` (the main job) and ``spire walk`` (one image restored along a prompt walk, paper Fig. 7)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from spire_ir.cli.common import (
    CommandError,
    add_batch_options,
    add_sampling_options,
    input_files,
    load_pipeline_for,
    model_train_ranges,
    output_stems,
    positive_int,
    run_batch,
    skip_existing,
)


def _check_restoration_prompt(text: str, train_ranges: dict | None = None) -> None:
    from spire_ir.prompts import PromptError, parse

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parse(text, train_ranges=train_ranges)
        except PromptError as error:
            raise CommandError(str(error)) from error
    for warning in caught:
        print(f"spire: warning: {warning.message}", file=sys.stderr)


def _sidecar_prompts(path: Path) -> dict[str, str]:
    """Prompts from NAME.json (semantic_prompt / restoration_prompt) and NAME.txt (semantic prompt)."""
    import json

    found: dict[str, str] = {}
    text = path.with_suffix(".txt")
    if text.is_file():
        found["semantic_prompt"] = text.read_text(encoding="utf-8").strip()
    meta = path.with_suffix(".json")
    if meta.is_file():
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{meta}: not valid JSON ({error})") from error
        for key, aliases in (
            ("semantic_prompt", ("semantic_prompt", "c_s")),
            ("restoration_prompt", ("restoration_prompt", "c_r")),
        ):
            for alias in aliases:
                if isinstance(data.get(alias), str):
                    found[key] = data[alias]
                    break
    return found


_COST: dict[int, tuple[float, float]] = {}  # id(pipeline) -> (seconds fixed, seconds per pixel and step)


def _warn_if_slow(pipe, image, args: argparse.Namespace, runs: int = 1, limit_s: float = 60.0) -> None:
    """Say before it starts when restoring ``image`` ((1, 3, H, W)) is likely to take more than ``limit_s``: the
    size, tiles, steps and an estimate from two timed one-step probes (64² and 128², once per pipeline)."""
    import time

    import torch

    height, width = image.shape[-2:]
    if height * width <= 128 * 128:
        return
    if id(pipe) not in _COST:
        timings = []
        semantic = "a photo" if (args.guidance or 0) > 1 else ""
        for side in (64, 128):
            probe = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
            start = time.perf_counter()
            try:
                pipe(probe, prompt=semantic, restoration_prompt="Remove all degradation", num_inference_steps=1,
                     guidance_scale=args.guidance, generator=torch.Generator().manual_seed(0), output_type="pt",
                     color_fix="none", self_ensemble=args.self_ensemble)  # fmt: skip
            except (ValueError, RuntimeError):  # a model that cannot run this probe size: no estimate, no harm
                return
            timings.append(time.perf_counter() - start)
        per_pixel = max((timings[1] - timings[0]) / (128**2 - 64**2), timings[1] / 128**2 / 4)
        _COST[id(pipe)] = (max(0.0, timings[0] - per_pixel * 64**2), per_pixel)
    fixed, per_pixel = _COST[id(pipe)]
    windows = pipe.tiles(height, width, args.tile or 0, args.tile_overlap)
    if len(windows) > 1:
        r0, r1, c0, c1 = windows[0]
        shape = f"{r1 - r0}²" if r1 - r0 == c1 - c0 else f"{c1 - c0} × {r1 - r0}"
        pixels, layout = len(windows) * (r1 - r0) * (c1 - c0), f"{len(windows)} tiles of {shape}"
    else:
        pixels, layout = height * width, "untiled"
    seconds = runs * (fixed + per_pixel * pixels * args.steps)
    if seconds > limit_s:
        print(f"spire: {width} × {height}, {layout}, {args.steps} step(s){f' × {runs} values' if runs > 1 else ''}:"
              f" about {seconds / 60:.1f} min on {next(pipe.unet.parameters()).device}", file=sys.stderr)  # fmt: skip


def _sampler_settings(args: argparse.Namespace) -> dict:
    return {
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "start": args.start,
        "strength": args.strength,
        "adaptor_scale": args.adaptor_scale,
        "color_fix": args.color_fix,
        "consistency": args.consistency,
        "self_ensemble": args.self_ensemble,
        "tile_size": args.tile,
        "tile_overlap": args.tile_overlap,
        "negative_prompt": args.negative_prompt,
    }


def _targets(path: Path, stem: str, args: argparse.Namespace) -> list[Path]:
    """The output file(s) of one input: -o itself for one input and -o NAME.png, else OUTDIR/STEM[_k].EXT."""
    output = Path(args.output)
    if _single_file_output(args):
        return [output]
    ext = args.ext if args.ext != "auto" else (path.suffix.lower().lstrip(".") or "png")
    ext = ext if ext in ("png", "jpg", "jpeg", "webp") else "png"
    many = args.num_samples > 1
    return [output / f"{stem}{args.suffix}{f'_{k}' if many else ''}.{ext}" for k in range(args.num_samples)]


def _single_file_output(args: argparse.Namespace) -> bool:
    output = Path(args.output)
    return not Path(args.input).is_dir() and output.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")


def _restore_one(pipe, path: Path, files: list[Path], stem: str, args: argparse.Namespace, settings: dict,
                 runtime: dict, captioner=None) -> None:  # fmt: skip
    """Restore one input (prompts from the flags, else its sidecars; the semantic prompt from ``captioner`` when
    given), save each sample, record it in prompts.jsonl."""
    from spire_ir.prompts import BLIND_PROMPT, PromptWarning, canonical
    from spire_ir.utils.images import (
        DEFAULT_MAX_PIXELS,
        append_jsonl,
        guard_not_input,
        load_image,
        save_image,
    )
    from spire_ir.utils.seeding import make_generator

    sidecar = _sidecar_prompts(path)
    semantic = args.prompt if args.prompt is not None else sidecar.get("semantic_prompt", "")
    restoration = args.restore if args.restore is not None else sidecar.get("restoration_prompt", BLIND_PROMPT)
    if args.restore is None and "restoration_prompt" in sidecar:
        _check_restoration_prompt(restoration, pipe.train_ranges)
    targets = _targets(path, stem, args)
    for target in targets:
        guard_not_input(target, files)
    if skip_existing(targets, args.overwrite):
        return
    loaded = load_image(path, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    _warn_if_slow(pipe, loaded.tensor, args)
    if captioner is not None:  # --caption auto: the captioner reads the degraded input, as the paper's LLaVA does
        semantic = captioner(loaded.tensor)[0]
        runtime = {**runtime, "caption": {"captioner": str(captioner.path), "style": captioner.style}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptWarning)  # the text was checked, and warned about, once per run
        encoded = canonical(restoration, pipe.train_ranges)  # what the model reads ("deblur σ=2" -> "Deblur with sigma 2.0")
        images = pipe(
            loaded.tensor, prompt=semantic, restoration_prompt=encoded,
            generator=[make_generator(args.seed + k) for k in range(args.num_samples)],
            num_images_per_prompt=args.num_samples, output_type="pt", **settings,
        ).images  # fmt: skip
    for k, (image, target) in enumerate(zip(images, targets, strict=True)):
        save_image(image.unsqueeze(0), target, alpha=loaded.alpha)  # outputs have the input's size
        record = {"input": str(path), "output": str(target), "semantic_prompt": semantic,
                  "restoration_prompt": encoded, "seed": args.seed + k, "model": str(args.model), **settings,
                  **runtime, "conversions": loaded.conversions_for(target)}  # fmt: skip
        if encoded != restoration:
            record["restoration_prompt_as_given"] = restoration
        append_jsonl(record, target.parent / "prompts.jsonl")
        print(f"{path} -> {target}")


def cmd_restore(args: argparse.Namespace) -> int:
    from spire_ir.prompts import BLIND_PROMPT

    source = Path(args.input)
    files = input_files(source)
    if args.restore is not None and not args.restore.strip():
        args.restore = BLIND_PROMPT  # -r "": no op named, so blind restoration (recorded as such)
    if args.restore is not None:
        _check_restoration_prompt(args.restore, model_train_ranges(args.model))
    if _single_file_output(args) and args.num_samples > 1:  # one input and -o NAME.png: write that file
        raise CommandError(f"-o {args.output} is one file, but --num-samples {args.num_samples} makes several; "
                           "give a folder")  # fmt: skip
    captioner = None
    if args.caption == "auto":
        if args.prompt is not None:
            raise CommandError("give -p/--prompt or --caption auto, not both")
        if not args.captioner:
            raise CommandError("--caption auto needs --captioner PATH, a local image-to-text model folder")
        from spire_ir.cli.caption import load_captioner

        captioner = load_captioner(args.captioner, args.caption_style, args.device)
    pipe, runtime = load_pipeline_for(args)
    settings = _sampler_settings(args)
    stems = output_stems(files)
    return run_batch("restore", files, lambda path: _restore_one(pipe, path, files, stems[path], args, settings,
                                                                 runtime, captioner))  # fmt: skip


def cmd_walk(args: argparse.Namespace) -> int:
    from spire_ir.app import walk, walk_pairs, walk_values
    from spire_ir.prompts import BLIND_PROMPT, PromptWarning
    from spire_ir.utils.images import (
        DEFAULT_MAX_PIXELS,
        ImageLoadError,
        guard_not_input,
        load_image,
        save_json,
        save_pil,
    )

    source, output = Path(args.input), Path(args.output)
    try:
        with warnings.catch_warnings():  # checked, and warned about with the model's ranges, just below
            warnings.simplefilter("ignore", PromptWarning)
            pairs = walk_pairs(walk_values(args.values), args.prompt or "", args.restore or BLIND_PROMPT)
    except ValueError as error:
        raise CommandError(str(error).replace("the values are empty", "--values is empty")) from error
    for _, restoration in pairs:
        _check_restoration_prompt(restoration, model_train_ranges(args.model))
    guard_not_input(output, [source])
    if output.exists() and not args.overwrite:
        raise CommandError(f"{output} exists; pass --overwrite to replace it, or choose another -o")
    try:
        loaded = load_image(source, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    except ImageLoadError as error:
        raise CommandError(str(error)) from error
    pipe, runtime = load_pipeline_for(args)
    _warn_if_slow(pipe, loaded.tensor, args, runs=len(pairs))
    settings = _sampler_settings(args)
    save_pil(walk(pipe, loaded.tensor, pairs, args.seed, **settings), output)
    save_json(
        {"input": str(source), "cells": [{"semantic_prompt": s, "restoration_prompt": r} for s, r in pairs],
         "seed": args.seed, "model": str(args.model), **settings, **runtime},
        output.with_suffix(".json"),
    )  # fmt: skip
    print(f"{source} -> {output} ({len(pairs)} values)")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("restore", help="restore images with a SPIRE model (the main job)")
    p.add_argument(
        "input", help="an image file or a folder of images (NAME.txt / NAME.json sidecars give prompts)"
    )
    p.add_argument(
        "-o", "--output", default="restored",
        help="output folder (default: ./restored), or a file NAME.png/.jpg/.webp for one input",
    )  # fmt: skip
    p.add_argument(
        "-p",
        "--prompt",
        default=None,
        help='semantic prompt c_s, what the picture shows ("a zebra on grass")',
    )
    p.add_argument(
        "-r",
        "--restore",
        default=None,
        help='restoration prompt c_r (default, and for -r "": "Remove all degradation", blind)',
    )
    p.add_argument(
        "--caption", choices=("auto",), default=None,
        help="auto: the semantic prompt is a local captioner's caption of each input (recorded in prompts.jsonl)",
    )  # fmt: skip
    p.add_argument("--captioner", default=None, help="for --caption auto: a local image-to-text model folder")
    p.add_argument("--caption-style", choices=("short", "full"), default="short")
    add_sampling_options(p)
    add_batch_options(p)
    p.add_argument(
        "--num-samples", type=positive_int, default=1, help="samples per image, >= 1 (seeds seed, seed+1, ...)"
    )
    p.add_argument("--suffix", default="", help="appended to each output name before the extension")
    p.add_argument(
        "--ext", default="auto", choices=("auto", "png", "jpg", "webp"), help="output format (auto: as input)"
    )
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser(
        "walk", help="restore one image across a sweep of prompt values; writes a labelled grid"
    )
    p.add_argument("input", help="an image file")
    p.add_argument(
        "-r", "--restore", default=None, help='template with {} for the value, e.g. "Denoise with sigma {}"'
    )
    p.add_argument(
        "-p", "--prompt", default=None, help="semantic prompt, or a template with {} to walk it instead"
    )
    p.add_argument(
        "--values", required=True, help="comma-separated values (use | to separate values with commas)"
    )
    p.add_argument(
        "-o", "--output", required=True, help="grid image path (a .json with the prompts is written beside)"
    )
    add_sampling_options(p)
    add_batch_options(p)
    p.set_defaults(func=cmd_walk)
