"""Print the model card's tables from what recipes/spire-tiny/measure.sh wrote (results/spire-tiny/).

python recipes/spire-tiny/card_tables.py [results/spire-tiny]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TASKS = {
    "noise005": "Denoise with sigma 0.05", "noise010": "Denoise with sigma 0.10", "blur15": "Deblur with sigma 1.5",
    "blur25": "Deblur with sigma 2.5", "jpeg30": "Dejpeg with quality 30", "up4": "Upsample to 4.0",
}  # fmt: skip
# raw: --no-consistency, v1: one view, k1: the default, v8: eight views (noise only)
METHODS = ("identity", "classical", "ffdnet", "spire-raw", "spire-v1", "spire-k1", "spire-v8")


def _cell(run: Path, count: int = 3) -> str:
    """PSNR / SSIM / NIQE of a run folder (the first ``count`` of them), or "–" where it has no summary."""
    if not (run / "summary.json").is_file():
        return "–"
    metrics = json.loads((run / "summary.json").read_text())["metrics"]
    values = [metrics.get(m, {}).get("mean") for m in ("psnr", "ssim", "niqe")[:count]]
    return " / ".join(
        "–" if v is None else f"{v:.2f}" if i != 1 else f"{v:.3f}" for i, v in enumerate(values)
    )


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/spire-tiny")
    runs = root / "runs"
    print("| task | " + " | ".join(METHODS) + " |\n" + "|---" * (len(METHODS) + 1) + "|")
    for key, task in TASKS.items():
        print(f"| {task} | " + " | ".join(_cell(runs / f"{key}-{m}") for m in METHODS) + " |")
    semantic = ("spire-k1", "spire-nocap", "spire-wrongcap", "spire-cfg15", "spire-cfg4")  # caption, "", another's, CFG
    print("\n| task | " + " | ".join(semantic) + " |\n" + "|---" * (len(semantic) + 1) + "|")
    for key, task in TASKS.items():
        print(f"| {task} | " + " | ".join(_cell(runs / f"{key}-{m}", 2) for m in semantic) + " |")
    print("\n| blind | PSNR / SSIM / NIQE |\n|---|---|")
    for method in ("identity", "bicubic", "realesrgan", "spire"):
        print(f"| {method} | {_cell(runs / f'blind-{method}')} |")
    for name in ("sweep-k", "sweep-captions"):
        path = root / f"{name}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            keys = [k for k in next(iter(data["tasks"].values())) if k.endswith("_psnr")]
            print(f"\n{name}\n| task | " + " | ".join(keys) + " |\n" + "|---" * (len(keys) + 1) + "|")
            for task, row in data["tasks"].items():
                print(f"| {task} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    path = root / "tiles.json"
    if path.is_file():  # eval.py tiles: mean PSNR (seconds) per tile size, 0 = whole
        data = json.loads(path.read_text())
        sizes = [str(t) for t in data["tiles"]]
        header = " | ".join("whole" if t == "0" else f"{t} px" for t in sizes)
        print(f"\ntiles\n| task | {header} |\n" + "|---" * (len(sizes) + 1) + "|")
        for key, task in TASKS.items():
            row = data[key]
            print(f"| {task} | " + " | ".join(f"{row[t]['psnr']:.2f} ({row[t]['seconds']:.1f} s)" for t in sizes)
                  + " |")  # fmt: skip
    path = root / "semantic.json"
    if path.is_file():  # eval.py semantic: the classifier's accuracy per degradation and semantic prompt
        data = json.loads(path.read_text())
        print(f"\nsemantic (classifier on held-out scenes: {data['classifier_held_out_accuracy']})")
        print("| degradation | input | true caption | \"\" | wrong caption |\n|---|---|---|---|---|")
        for degradation, scores in data.items():
            if isinstance(scores, dict) and "degraded input" in scores:
                cells = [f"{100 * scores['degraded input']['accuracy']:.1f}%"] + [
                    f"{100 * scores[k]['accuracy']:.1f}% ({100 * scores[k]['follows_wrong_shape']:.1f}%)"
                    for k in ("true caption", "empty caption", "wrong caption")
                ]
                print(f"| {degradation} | " + " | ".join(cells) + " |")
    path = root / "strength.json"
    if path.is_file():
        data = json.loads(path.read_text())
        summary = {k: v for k, v in data.items() if not isinstance(v, list)}
        print(f"\nstrength: {json.dumps(summary)[:1500]}")


if __name__ == "__main__":
    main()
