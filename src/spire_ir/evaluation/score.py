"""``spire bench score``: score another system's restored images on a bench, as ``spire bench run`` scores ours.

    spire bench score BENCH --outputs DiffBIR-out/ --name "DiffBIR v2" -o runs/diffbir

The outputs are matched to bench items by file stem: ``ID.png``, or ``ID`` followed by ``_``, ``-`` or ``.`` and a
suffix (Real-ESRGAN writes ``ID_out.png``), in any common image format. Each matched output is checked to have the
clean image's size, stored 8-bit in the run folder's ``images/`` and scored with the same metrics, conventions and
resume rules as a run (an item is rescored only when its file changed). Missing, extra, doubly matched, wrongly
sized and unreadable outputs are listed in ``summary.json`` and on stderr; a run with missing items is marked
incomplete, its means cover only the scored items, its set metrics (FID, FD-CLIP) are not computed, and
``spire bench report`` labels its row as incomplete.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from spire_ir.evaluation.bench import (
    PROMPT_MODES,
    load_manifest,
    make_scorers,
    run_summary,
    score_image,
    set_metric_scores,
    write_tables,
)
from spire_ir.evaluation.metrics import MetricSettings
from spire_ir.utils.images import (
    IMAGE_EXTENSIONS,
    ImageLoadError,
    load_image,
    quantize_8bit,
    save_image,
    save_json,
)

__all__ = ["match_outputs", "score_outputs"]


def match_outputs(manifest: dict, outputs: Path) -> tuple[dict[str, Path], dict[str, list[str]]]:
    """{item id: its output file} and the problems: ``missing`` ids, ``extra`` files, ``ambiguous`` ids."""
    if not outputs.is_dir():
        raise FileNotFoundError(f"--outputs {outputs}: no such folder of restored images")
    ids = {item["id"] for item in manifest["items"]}
    found: dict[str, list[Path]] = {}
    extra = []
    for path in sorted(p for p in outputs.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()):
        match = path.stem if path.stem in ids else None
        if match is None:
            head = re.match(r"^(.*?)[_.-][^_.-]*$", path.stem)  # ID_out, ID-restored, ID.x4
            match = head.group(1) if head and head.group(1) in ids else None
        if match is None:
            extra.append(path.name)
        else:
            found.setdefault(match, []).append(path)
    ambiguous = {i: [p.name for p in paths] for i, paths in found.items() if len(paths) > 1}
    matched = {i: paths[0] for i, paths in found.items() if len(paths) == 1}
    problems = {
        "missing": sorted(ids - set(found)),
        "extra": extra,
        "ambiguous": [f"{i}: {', '.join(names)}" for i, names in sorted(ambiguous.items())],
    }
    return matched, problems


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _score_matched(manifest: dict, matched: dict[str, Path], bench: Path, output: Path, scorers: list,
                   problems: dict[str, list[str]], unavailable: dict) -> list[dict]:  # fmt: skip
    """Score each matched output (unchanged ones keep their scores); returns the items scored, lists the rest."""
    scored = []
    for item in manifest["items"]:
        path = matched.get(item["id"])
        if path is None:
            continue
        record = output / "items" / f"{item['id']}.json"
        digest = _sha256(path)
        if record.is_file() and json.loads(record.read_text()).get("source_sha256") == digest:
            scored.append(item)
            continue
        try:
            restored = quantize_8bit(load_image(path).tensor)
        except ImageLoadError as error:
            problems["unreadable"].append(f"{path.name}: {error}")
            continue
        x = load_image(bench / item["x"]).tensor
        if restored.shape[-2:] != x.shape[-2:]:
            size = "x".join(map(str, restored.shape[-2:][::-1]))
            problems["wrong_size"].append(
                f"{path.name}: {size}, the clean image is {x.shape[-1]}x{x.shape[-2]}"
            )
            continue
        save_image(restored, output / "images" / f"{item['id']}.png")
        scores = {
            metric.name: score_image(metric, restored, x, item["c_s"], unavailable) for metric in scorers
        }
        save_json({"id": item["id"], "c_s": item["c_s"], "c_r": item["c_r"], "source": str(path),
                   "source_sha256": digest, **scores}, record)  # fmt: skip
        scored.append(item)
    return scored


def score_outputs(
    bench: str | Path,
    outputs: str | Path,
    output: str | Path,
    name: str,
    prompts_mode: str = "none",
    metrics: tuple[str, ...] = ("psnr", "ssim", "niqe"),
    crop_border: int = 0,
    settings: MetricSettings | None = None,
) -> dict[str, Any]:
    """Score a folder of restored images on ``bench``; write a run folder ``spire bench report`` reads.

    Args:
        bench: a ``spire bench build`` folder.
        outputs: the other system's restored images, one per item (``ID.png``, ``ID_out.jpg``, ...).
        output: the run folder (resumable: unchanged outputs keep their scores).
        name: the method's name in the table, e.g. "DiffBIR v2".
        prompts_mode: which of the bench's prompts the system was given (``PROMPT_MODES``): the table's Sem/Res.
        metrics, crop_border, settings: as for ``spire bench run``.

    Returns:
        The summary, with ``complete`` and the listed ``problems``.
    """
    if prompts_mode not in PROMPT_MODES:
        raise ValueError(f"prompts mode must be one of {', '.join(PROMPT_MODES)}, got {prompts_mode!r}")
    bench, outputs, output = Path(bench), Path(outputs), Path(output)
    settings = settings or MetricSettings()
    manifest = load_manifest(bench)
    matched, problems = match_outputs(manifest, outputs)
    problems.update(wrong_size=[], unreadable=[])
    unavailable: dict[str, str] = {}
    scorers, set_names = make_scorers(metrics, crop_border, settings, unavailable)
    scored = _score_matched(manifest, matched, bench, output, scorers, problems, unavailable)
    complete = len(scored) == len(manifest["items"])
    means, counts = write_tables(output, {**manifest, "items": scored}, scorers)
    if complete:
        set_scores, warnings_ = set_metric_scores(set_names, bench, output, manifest, settings, unavailable)
    else:
        set_scores, warnings_ = {}, []
        for metric in set_names:
            unavailable[metric] = (
                f"{metric}: not computed on an incomplete run ({len(scored)} of {len(manifest['items'])} items)"
            )
    summary = run_summary(
        bench, manifest, metrics, scorers, (means, counts), (set_scores, warnings_), unavailable, method="external",
        name=name, outputs=str(outputs), model=None, prompts=prompts_mode, settings={}, complete=complete,
        scored=len(scored), problems=problems,
    )  # fmt: skip
    save_json(summary, output / "summary.json")
    return summary
