"""Where the built-in models live: ``spire_ir/weights/NAME``, or ``$SPIRE_IR_WEIGHTS/NAME``. No heavy imports, so
that the command line can tell a broken install at once."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

__all__ = ["BUILTIN_MODELS", "builtin_model_dir", "installed_builtin_model"]

BUILTIN_MODELS = ("spire-tiny",)


class BuiltinModelMissing(FileNotFoundError):
    """A built-in model's folder is missing; ``folder`` is where it was looked for."""

    def __init__(self, message: str, folder: Path) -> None:
        super().__init__(message)
        self.folder = folder

    def __str__(self) -> str:
        return str(self.args[0])


def builtin_model_dir(name: str = "spire-tiny") -> Path:
    """The folder of a built-in model: ``$SPIRE_IR_WEIGHTS/NAME`` when that variable is set, else the copy shipped
    inside the package (``spire_ir/weights/NAME``)."""
    if name not in BUILTIN_MODELS:
        raise ValueError(f"no built-in model {name!r}; built-in: {', '.join(BUILTIN_MODELS)}")
    root = os.environ.get("SPIRE_IR_WEIGHTS")
    return Path(root) / name if root else Path(str(files("spire_ir") / "weights" / name))


def installed_builtin_model(name: str = "spire-tiny") -> Path:
    """``builtin_model_dir(name)``; FileNotFoundError, saying how to get the weights, when they are not there."""
    folder = builtin_model_dir(name)
    if not (folder / "model_index.json").is_file():
        where = "$SPIRE_IR_WEIGHTS" if os.environ.get("SPIRE_IR_WEIGHTS") else "this install"
        raise BuiltinModelMissing(
            f"the built-in {name} weights are missing from {where} ({folder}); the package ships them, so this is "
            f"a broken install: reinstall spire-ir (or re-create them: bash recipes/spire-tiny/train.sh)",
            folder,
        )
    return folder
