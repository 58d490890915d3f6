"""``spire degrade``: synthesise degraded images and the restoration prompts that describe them."""

from __future__ import annotations

import argparse
from pathlib import Path

from spire_ir.cli.common import (
    DEGRADE_MAX_PIXELS,
    CommandError,
    add_batch_options,
    input_files,
    output_stems,
    run_batch,
    skip_existing,
)


def cmd_degrade(args: argparse.Namespace) -> int:
    from spire_ir.app import degrade_image
    from spire_ir.prompts import PromptError
    from spire_ir.utils.images import guard_not_input, load_image, save_image, save_json
    from spire_ir.utils.seeding import derive_seed, make_generator

    source = Path(args.input)
    files = input_files(source)
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

    stems = output_stems(files)

    def degrade_one(path: Path) -> None:
        target = output if single_file_out else output / f"{stems[path]}.png"
        guard_not_input(target, files)
        if skip_existing([target], args.overwrite):
            return
        loaded = load_image(path, max_pixels=args.max_pixels or DEGRADE_MAX_PIXELS)
        image_seed = derive_seed(args.seed, path.name)
        generator = make_generator(image_seed)
        y, c_r, record = degrade_image(loaded.tensor, args.prompt, args.random, generator)
        sidecar = {
            "source": str(path),
            "restoration_prompt": c_r,
            "record": record,
            "seed": args.seed,
            "image_seed": image_seed,
            "mode": mode,
            "conversions": loaded.conversions_for(target),
            "size": list(y.shape[-2:]),
            "output_format": target.suffix.lower().lstrip("."),
        }
        if target.suffix.lower() in (".jpg", ".jpeg"):
            sidecar["output_format"] = "jpeg quality 95 (lossy, not part of the restoration prompt)"
        caption = path.with_suffix(".txt")
        if caption.is_file():
            sidecar["semantic_prompt"] = caption.read_text(encoding="utf-8").strip()
        save_image(y, target, alpha=loaded.alpha)  # degradations keep the size
        save_json(sidecar, target.with_suffix(".json"))
        print(f"{path} -> {target}  [{c_r}]")

    return run_batch("degrade", files, degrade_one)


def add_parsers(sub) -> None:
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
    add_batch_options(p, default_mp=DEGRADE_MAX_PIXELS // 10**6, why="at most about 2 GB of memory per image")
    p.set_defaults(func=cmd_degrade)
