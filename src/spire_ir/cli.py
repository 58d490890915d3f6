"""The ``spire`` command line: argparse subcommands, each importing its heavy parts only when it runs.

    spire degrade INPUT -o OUTPUT [--prompt TEXT | --random {parameterized,realesrgan,mixed}] [--seed N]
    spire restore INPUT -o OUTDIR [-p SEMANTIC] [-r RESTORATION] [--model PATH] ...
    spire walk INPUT -r "Denoise with sigma {}" --values 0.02,0.06 -o grid.png
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
    from .image_utils import list_images

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


def _report(path: Path, error: Exception) -> None:
    print(f"spire: skipped {path}: {error}", file=sys.stderr)


# --------------------------------------------------------------------------------------------- degrade


def cmd_degrade(args: argparse.Namespace) -> int:
    import torch

    from .degradations import degrade, get_degradation
    from .image_utils import ImageLoadError, guard_not_input, load_image, save_image, save_json
    from .prompts import PromptError
    from .seeding import derive_seed, make_generator

    source = Path(args.input)
    files = _inputs(source)
    output = Path(args.output)
    single_file_out = not source.is_dir() and output.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
    if source.is_dir() and output.suffix:
        raise CommandError(f"INPUT is a folder, so -o must be a folder too, got {output}")
    if args.prompt is not None:
        from . import prompts

        try:
            prompts.parse(args.prompt, strict=args.strict)
        except PromptError as error:
            raise CommandError(str(error)) from error
        mode = "prompt"
    else:
        mode = f"random:{args.random}"
        pipeline = get_degradation(args.random)

    failures = 0
    for path in files:
        target = output if single_file_out else output / f"{path.stem}.png"
        try:
            guard_not_input(target, files)
            loaded = load_image(path)
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
            }
            caption = path.with_suffix(".txt")
            if caption.is_file():
                sidecar["semantic_prompt"] = caption.read_text(encoding="utf-8").strip()
            save_image(y, target)
            save_json(sidecar, target.with_suffix(".json"))
            print(f"{path} -> {target}  [{c_r}]")
        except (ImageLoadError, ValueError, OSError) as error:
            failures += 1
            _report(path, error)
    if failures:
        print(f"spire degrade: {failures} of {len(files)} file(s) failed", file=sys.stderr)
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------- env


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spire", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
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
    p.set_defaults(func=cmd_degrade)

    p = sub.add_parser("env", help="print versions and devices (paste this into bug reports)")
    p.set_defaults(func=cmd_env)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Subcommands defined in other modules register themselves here (kept explicit: no scanning).
_EXTRA_COMMANDS: list = []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spire`` console script. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except CommandError as error:
        print(f"spire {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
