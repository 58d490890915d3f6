"""``spire train``, ``train-vae``, ``train-base`` and ``new-model``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spire_ir.cli.common import CommandError


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


def add_parsers(sub) -> None:
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
