"""``spire env``: versions and devices for bug reports."""

from __future__ import annotations

import argparse
import platform


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


def add_parsers(sub) -> None:
    p = sub.add_parser("env", help="print versions and devices (paste this into bug reports)")
    p.set_defaults(func=cmd_env)
