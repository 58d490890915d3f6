"""The package's layers: every import in src/spire_ir points down the chain (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "spire_ir"

# Bottom to top. A module may import its own layer and the layers below, never one above.
LAYERS = (
    "utils", "ops", "prompts", "degradations", "data", "schedulers", "models", "pipeline", "evaluation", "training",
    "app", "web", "cli",
)  # fmt: skip
OUTSIDE = {"testing": "test support: only tests and benchmarks import it", "__main__": "the entry point"}


def layer_of(module: str) -> str:
    """'spire_ir.models.adaptor' -> 'models'; the package itself ('spire_ir') is its lazy public namespace."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "spire_ir"


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module) of every spire_ir import in a file, relative imports resolved."""
    module = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("spire_ir")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("spire_ir"):
                # "from spire_ir import web" imports the module spire_ir.web
                found += [(node.lineno, f"{name}.{a.name}" if name == "spire_ir" else name) for a in node.names]
    return found


def upward_imports(root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        source = layer_of(".".join(path.relative_to(root.parent).with_suffix("").parts))
        for line, target in imported_modules(path, root):
            target_layer = layer_of(target)
            where = f"{path.relative_to(root.parent)}:{line} imports {target}"
            if target_layer == "testing":
                problems.append(f"{where}: production code must not import the test support module")
            elif source in OUTSIDE or source == "spire_ir" or target_layer == source:
                continue
            elif source not in LAYERS or target_layer not in LAYERS:
                problems.append(f"{where}: {source if source not in LAYERS else target_layer} is in no layer")
            elif LAYERS.index(target_layer) > LAYERS.index(source):
                problems.append(f"{where}: {source} (layer {LAYERS.index(source)}) is below {target_layer}")
    return problems


def test_every_import_points_down_the_chain():
    assert upward_imports() == []


@pytest.mark.parametrize(
    ("where", "line", "expected"),
    [
        ("data/datasets.py", "from spire_ir.pipeline import SpirePipeline", "data (layer 4) is below pipeline"),
        ("utils/images.py", "from ..prompts import parse", "utils (layer 0) is below prompts"),
        ("models/adaptor.py", "from spire_ir.testing import tiny_components", "must not import the test support"),
        ("ops/image.py", "from spire_ir import web", "ops (layer 1) is below web"),
    ],
)
def test_the_guard_fails_on_an_upward_import(tmp_path, where, line, expected):
    """A copy of the package with one upward import added fails the guard, naming the file and the layers."""
    import shutil

    copy = tmp_path / "spire_ir"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("weights", "assets", "configs", "__pycache__"))
    target = copy / where
    target.write_text(target.read_text() + f"\n\ndef _upward():\n    {line}\n")
    problems = upward_imports(copy)
    assert len(problems) == 1 and where in problems[0] and expected in problems[0], problems
