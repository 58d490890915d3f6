"""What the ``spire`` commands share: user-facing errors, batch inputs and outputs, loading the pipeline, and the
options several commands take."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


class CommandError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def input_files(path: Path) -> list[Path]:
    """The image files of INPUT: the file itself, or the images of a folder (sorted)."""
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


def report_failure(path: Path, error: BaseException) -> None:
    """One stderr line for a skipped file; out-of-memory errors say how to fit the image."""
    if isinstance(error, MemoryError) or "memory" in str(error).lower():
        error = RuntimeError(
            f"out of memory ({type(error).__name__}: {str(error)[:200]}); restore it in tiles (--tile 512, or "
            "smaller), or on a machine with more memory"
        )
    print(f"spire: skipped {path}: {error}", file=sys.stderr)


def output_stems(files: list[Path]) -> dict[Path, str]:
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


def skip_existing(targets: list[Path], overwrite: bool) -> bool:
    """True (and a note on stderr) when an output exists and --overwrite was not given: the file is skipped."""
    found = [t for t in targets if t.exists()]
    if found and not overwrite:
        print(f"spire: {found[0]} exists; skipped (pass --overwrite to replace it)", file=sys.stderr)
        return True
    return False


def max_pixels_arg(text: str) -> int:
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


def positive_int(text: str) -> int:
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


def run_batch(command: str, files: list[Path], process: Callable[[Path], None]) -> int:
    """``process`` each file; a file that fails is reported with its name and skipped, and the rest go on.
    Returns the exit status: 1 if any file failed, else 0."""
    failures = 0
    for path in files:
        try:
            process(path)
        except PER_FILE_ERRORS as error:
            failures += 1
            report_failure(path, error)
    if failures:
        print(f"spire {command}: {failures} of {len(files)} file(s) failed", file=sys.stderr)
    return 1 if failures else 0


def default_model() -> str:
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


def model_train_ranges(model: str | None) -> dict[str, list[float]] | None:
    """The op ranges a model's adaptor was trained on (``train_ranges`` in MODEL/adaptor/config.json), read
    without loading the model so that the prompt check before it names them; None where the folder does not
    record them (the parser then uses the paper's Table 2 ranges)."""
    import json

    from spire_ir.models.builtin import BUILTIN_MODELS, builtin_model_dir

    if model is None:
        return None
    folder = builtin_model_dir(model) if model in BUILTIN_MODELS and not Path(model).exists() else Path(model)
    try:
        return json.loads((folder / "adaptor" / "config.json").read_text(encoding="utf-8")).get("train_ranges")
    except (OSError, ValueError, AttributeError):  # no folder (a single-file model), or no adaptor config
        return None


def load_pipeline_for(args: argparse.Namespace):
    """The pipeline ``args`` name, with the sampler defaults it records filled in from the model folder."""
    from spire_ir.app import load_pipeline, tile_size_for

    if args.model is None:
        args.model = default_model()
    try:
        pipe, runtime = load_pipeline(args.model, args.device, args.precision)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
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
    if getattr(args, "consistency", False) is None:
        args.consistency = bool(pipe.config.get("default_consistency", False))
    if getattr(args, "self_ensemble", 0) is None:
        args.self_ensemble = int(pipe.config.get("default_self_ensemble", 1))
    if getattr(args, "tile", 0) is None:
        args.tile = tile_size_for(pipe.config)
    return pipe, runtime


def metric_settings(args: argparse.Namespace):
    """The weights options of `spire metrics` and `spire bench run` as one ``MetricSettings``."""
    from spire_ir.evaluation.metrics import MetricSettings

    return MetricSettings(
        clip_model=args.clip_model, lpips_backbone=args.lpips_backbone,
        fid_weights=getattr(args, "fid_weights", None), iqa_weights=args.iqa_weights,
    )  # fmt: skip


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spire-ir")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without an install
        return "unknown (not installed)"


def add_steps_and_guidance(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=None, help="sampling steps K (default: the model folder's)")
    p.add_argument(
        "--guidance", type=float, default=None,
        help="CFG scale on the semantic prompt, <=1: off (default: the model's, 4.0 for most)",
    )  # fmt: skip


def add_self_ensemble(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--self-ensemble", type=int, choices=(1, 2, 4, 8), default=None, metavar="{1,2,4,8}",
        help="restore this many flips and quarter-turns of the image and average them: sharper and cleaner, "
        "that many times slower (default: the model folder's)",
    )  # fmt: skip


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="a SPIRE pipeline folder (default: the built-in spire-tiny, when installed)",
    )
    add_steps_and_guidance(p)
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
        "--tile",
        type=int,
        default=None,
        help="sample images larger than this in the fewest overlapping tiles of at most this many pixels a side "
        "(0: no tiling; default: the model folder's default_tile_size, else 512; smaller tiles restore spire-tiny's "
        "noise better and cost more time: MODEL_CARD.md)",
    )
    p.add_argument("--tile-overlap", type=int, default=64, help="the least overlap between tiles, pixels")
    p.add_argument(
        "--color-fix",
        choices=("wavelet", "adain", "none"),
        default=None,
        help="colour correction from the input (default: the model folder's; none for spire-tiny)",
    )
    p.add_argument(
        "--consistency", action=argparse.BooleanOptionalAction, default=None,
        help="make the output agree with the degradation c_r states: blur and downscaling by a linear solve, a "
        "lone JPEG op by its quantisation bins; at strength 1, not for blind prompts or denoise alone "
        "(default: the model folder's; on for spire-tiny)",
    )  # fmt: skip
    add_self_ensemble(p)
    p.add_argument("--device", default="auto", help="cuda, cpu, mps or auto")
    p.add_argument(
        "--precision", choices=("fp32", "fp16", "bf16"), default=None, help="default fp16 on CUDA, else fp32"
    )
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="a progress bar per image (default: on when stderr is a terminal)",
    )  # fmt: skip


def add_batch_options(p: argparse.ArgumentParser, default_mp: int = 50, why: str = "any camera photo") -> None:
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace outputs that exist (default: skip them, as Real-ESRGAN does, and say so)",
    )  # fmt: skip
    p.add_argument(
        "--max-pixels", type=max_pixels_arg, default=None,
        help=f"refuse larger inputs from their header, before decoding (default {default_mp}M: {default_mp} "
        f"megapixels, {why})",
    )  # fmt: skip
