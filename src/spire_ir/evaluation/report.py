"""``spire bench report``: the paper's Table 1 layout, per-op strength plots and a comparison grid.

Writes into the report folder: ``table.md`` (Method | Sem | Res | metric ↑/↓ ...), ``table.csv``, ``table.json``,
``plot-<op>-<metric>.png`` for parameterised benches (metric against the op's strength, one line per run) and
``grid.png`` (degraded | each run | clean for the first items, prompts under the cells).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path
from typing import Any

from spire_ir.evaluation.bench import PROMPT_MODES, load_manifest
from spire_ir.utils.images import image_grid, load_image, save_json, save_pil

__all__ = ["write_report"]


def _load_run(run: Path) -> dict[str, Any]:
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{run}: no summary.json; finish it with `spire bench run` first")
    summary = json.loads(summary_path.read_text())
    summary["rows"] = json.loads((run / "metrics.json").read_text())
    summary["path"] = str(run)
    return summary


def _label(run: dict) -> str:
    """The row's name: the external system's, spire with its model, or the method; incomplete runs say so."""
    if run.get("name"):
        label = run["name"]
    else:
        label = run["method"] if run["method"] != "spire" else f"spire ({Path(run['model']).name})"
    if run.get("complete") is False:
        label += f" (incomplete: {run['scored']} of {run['items']} items)"
    return label


def _labels(runs: list[dict]) -> list[str]:
    """Distinct row names: two runs that would share one also get their run folder's name."""
    labels = [_label(run) for run in runs]
    return [f"{label} [{Path(run['path']).name}]" if labels.count(label) > 1 else label
            for label, run in zip(labels, runs, strict=True)]  # fmt: skip


def _columns(run: dict) -> list[str]:
    """The metrics a run asked for, in its order (older runs: the ones it scored), set metrics included."""
    return run.get("requested_metrics") or [*run["metrics"], *run.get("set_metrics", {})]


def _lower_better(name: str) -> bool:
    from spire_ir.evaluation.metrics import METRICS, SET_METRICS

    return name in SET_METRICS or (name in METRICS and METRICS[name].lower_better)


def _value(run: dict, name: str) -> float | None:
    """A per-image metric's mean or a set metric's value; None where the run could not compute it."""
    if name in run["metrics"]:
        return run["metrics"][name]["mean"]
    return run.get("set_metrics", {}).get(name, {}).get("value")


def write_report(runs: list[str | Path], output: str | Path, grid_items: int = 4) -> dict[str, Any]:
    """Compare finished runs (all on the same bench); returns the table as data."""
    loaded = [_load_run(Path(r)) for r in runs]
    if not loaded:
        raise ValueError("give at least one run folder")
    benches = {run["bench"] for run in loaded}
    if len(benches) > 1:
        raise ValueError(f"runs are on different benches: {sorted(benches)}")
    for run, label in zip(loaded, _labels(loaded), strict=True):
        run["label"] = label
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(name for run in loaded for name in _columns(run)))
    arrows = {name: "↓" if _lower_better(name) else "↑" for name in names}
    table = []
    for run in loaded:
        semantic, restoration = PROMPT_MODES[run["prompts"]]
        uses_prompts = run["method"] in ("spire", "classical", "bicubic", "external")
        row = {
            "method": run["label"],
            "sem": ("✓" if run["method"] in ("spire", "external") and semantic else "✗")
            + (f" ({run['prompts']})" if run["prompts"] in ("caption", "unmatched") else ""),
            "res": "✓" if uses_prompts and restoration else "✗",
            **{name: _value(run, name) for name in names},
        }
        table.append(row)
    header = ["Method", "Sem", "Res", *[f"{n.upper().replace('_', '-')}{arrows[n]}" for n in names]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        values = [row["method"], row["sem"], row["res"]]
        values += ["n/a" if row[n] is None else f"{row[n]:.2f}" if n in ("psnr", "fid") else f"{row[n]:.4f}"
                   for n in names]  # fmt: skip
        lines.append("| " + " | ".join(values) + " |")
    setting = loaded[0]["setting"]
    note = f"\n{len(loaded[0]['rows'])} items, setting `{setting}`, bench `{loaded[0]['bench']}`.\n"
    unavailable = dict.fromkeys(v for run in loaded for v in run.get("unavailable", {}).values())
    if unavailable:
        note += "\nUnavailable (n/a): " + "; ".join(unavailable) + "\n"
    (output / "table.md").write_text("\n".join(lines) + "\n" + note, encoding="utf-8")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["method", "sem", "res", *names], lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    (output / "table.csv").write_text(buffer.getvalue(), encoding="utf-8")
    conventions = {n: loaded[0]["metrics"].get(n) or loaded[0].get("set_metrics", {}).get(n) for n in names}
    save_json({"runs": [r["path"] for r in loaded], "table": table, "conventions": conventions},
              output / "table.json")  # fmt: skip
    manifest = load_manifest(loaded[0]["bench"])
    if setting == "parameterized":
        _plots(loaded, manifest, names, output)
    _grid(loaded, manifest, output, grid_items)
    return {"table": table, "markdown": "\n".join(lines)}


def _plots(runs: list[dict], manifest: dict, names: list[str], output: Path) -> None:
    """Metric against degradation strength, per op kind: one line (binned mean) per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - the metrics extra installs it
        (output / "plots-skipped.txt").write_text(
            "matplotlib is not installed: pip install 'spire-ir[metrics]'\n"
        )
        return
    import numpy as np

    from spire_ir.prompts import OP_SPECS

    strengths: dict[str, dict[str, float]] = {}
    for item in manifest["items"]:
        for op in item["record"].get("ops", []):
            if op.get("op") in OP_SPECS:
                strengths.setdefault(op["op"], {})[item["id"]] = op[OP_SPECS[op["op"]].param]
    for kind, by_id in strengths.items():
        for name in names:
            figure, axis = plt.subplots(figsize=(4.5, 3.2), dpi=110)
            for run in runs:
                points = sorted(
                    (by_id[r["id"]], r[name])
                    for r in run["rows"]
                    if r["id"] in by_id and r.get(name) is not None
                )
                if not points:
                    continue
                xs, ys = np.array(points).T
                edges = np.linspace(xs.min(), xs.max() + 1e-9, 6)
                centres, means = [], []
                for low, high in itertools.pairwise(edges):
                    inside = (xs >= low) & (xs < high)
                    if inside.any():
                        centres.append(xs[inside].mean())
                        means.append(ys[inside].mean())
                axis.scatter(xs, ys, s=8, alpha=0.35)
                axis.plot(centres, means, marker="o", label=run["label"])
            axis.set_xlabel(f"{kind} {OP_SPECS[kind].param}")
            axis.set_ylabel(name.upper())
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=7)
            figure.tight_layout()
            figure.savefig(output / f"plot-{kind}-{name}.png")
            plt.close(figure)


def _grid(runs: list[dict], manifest: dict, output: Path, count: int) -> None:
    bench = Path(runs[0]["bench"])
    rows, labels = [], []
    scored = [{row["id"] for row in run["rows"]} for run in runs]
    for item in [i for i in manifest["items"] if all(i["id"] in ids for ids in scored)][:count]:
        cells = [load_image(bench / item["y"]).tensor]
        cell_labels = [f"degraded: {item['c_r']}"]
        for run in runs:
            cells.append(load_image(Path(run["path"]) / "images" / f"{item['id']}.png").tensor)
            row = next(r for r in run["rows"] if r["id"] == item["id"])
            score = f" PSNR {row['psnr']:.2f}" if row.get("psnr") is not None else ""
            cell_labels.append(f"{run['label']}{score}")
        cells.append(load_image(bench / item["x"]).tensor)
        cell_labels.append(f"clean: {item['c_s']}")
        rows.append(cells)
        labels.append(cell_labels)
    if rows:
        save_pil(image_grid(rows, cell_labels=labels), output / "grid.png")
