"""The ``spire`` command line: argparse subcommands, each importing its heavy parts only when it runs.

    spire degrade INPUT -o OUTPUT [--prompt TEXT | --random {parameterized,realesrgan,mixed}] [--seed N]
    spire restore INPUT -o OUTDIR [-p SEMANTIC] [-r RESTORATION] [--model PATH] ...
    spire walk INPUT -r "Denoise with sigma {}" --values 0.02,0.06 -o grid.png
    spire caption IMAGES --captioner PATH [--style short|full]
    spire train | train-vae | train-base CONFIG.yaml [--resume latest] [--set key=value ...]
    spire bench build | run | score | report ...
    spire metrics RESTORED CLEAN [--metrics psnr,ssim,niqe]
    spire web [--model PATH]
    spire convert-weights KIND SOURCE OUTPUT
    spire new-model --preset tiny -o DIR
    spire env

Batch commands report a bad file on stderr, skip it, finish the rest and exit with status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from spire_ir.cli import caption, degrade, env, evaluate, restore, train, web
from spire_ir.cli.common import CommandError, default_model, package_version

__all__ = ["build_parser", "main"]

# one module per command group, each with its add_parsers(sub), in --help order
COMMANDS = (degrade, restore, caption, train, web, evaluate, env)


def build_parser() -> argparse.ArgumentParser:
    """The ``spire`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="spire", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"spire-ir {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parsers(sub)
    return parser


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
            args.model = default_model()  # before the heavy imports below: a broken install is told at once
        if not args.verbose and args.command in ("restore", "walk", "new-model", "train", "train-vae", "train-base", "bench"):
            _quiet_libraries()
        return int(args.func(args) or 0)
    except CommandError as error:
        print(f"spire {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
