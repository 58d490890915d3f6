"""``spire caption``: semantic prompts from a local captioner, written as ``NAME.txt`` sidecars."""

from __future__ import annotations

import argparse
from pathlib import Path

from spire_ir.cli.common import CommandError, add_batch_options, input_files, run_batch, skip_existing


def load_captioner(path: str, style: str, device: str = "auto"):
    """The ``Captioner`` of --captioner, or a CommandError that says what the folder must hold."""
    from spire_ir.app import pick_device
    from spire_ir.models.captioner import Captioner

    try:
        return Captioner(path, style=style, device=pick_device(device))
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error


def cmd_caption(args: argparse.Namespace) -> int:
    from spire_ir.utils.images import DEFAULT_MAX_PIXELS, load_image, write_atomic

    files = input_files(Path(args.images))
    captioner = load_captioner(args.captioner, args.style, args.device)
    folder = Path(args.output) if args.output else None

    def process(path: Path) -> None:
        target = (folder or path.parent) / f"{path.stem}.txt"
        if skip_existing([target], args.overwrite):
            return
        caption = captioner(load_image(path, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS).tensor)[0]
        write_atomic(target, (caption + "\n").encode("utf-8"))
        print(f"{path} -> {target}: {caption}")

    return run_batch("caption", files, process)


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "caption",
        help="write NAME.txt semantic prompts with a local image-to-text model (BLIP, Florence-2, LLaVA-style)",
    )
    p.add_argument("images", help="an image or a folder of images")
    p.add_argument(
        "--captioner", required=True,
        help="a local transformers image-to-text model folder (config.json, model.safetensors, processor files)",
    )  # fmt: skip
    p.add_argument(
        "--style", choices=("short", "full"), default="short", help="one sentence, or a description"
    )
    p.add_argument(
        "-o", "--output", default=None, help="folder for the .txt files (default: beside each image)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    add_batch_options(p)
    p.set_defaults(func=cmd_caption)
