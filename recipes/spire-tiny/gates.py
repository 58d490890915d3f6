"""Check the model card's must gates (issue §5) on what measure.sh wrote, and report the goals beside them.

python recipes/spire-tiny/gates.py [results/spire-tiny]

Prints one row per gate with the measured value and the bound, and exits 1 if a must gate fails or a result it needs
is missing. A retrained model replaces the shipped weights only when this exits 0
(``bash recipes/spire-tiny/measure.sh --gates MODEL OUT`` runs what it needs, then this).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from card_tables import TASKS  # the card tasks: bench folder key -> restoration prompt

MIN_GAIN = {"jpeg30": 0.5, "up4": 0.4}  # dB over the input where classical methods do not apply
GOAL_PSNR = {"noise005": 34.5, "noise010": 30.5, "blur15": 32.5, "blur25": 29.0, "jpeg30": 31.0, "up4": 27.6}
FFDNET_GAP = 1.5  # goal: within this many dB of FFDNet on noise
STRENGTH_RHO = {  # Spearman ρ bound: the denoise walk at most, the deblur one at least
    "denoise": -0.9,
    "deblur": 0.8,
}
SEMANTIC_LEAD = 0.20  # the true caption's accuracy over the empty caption's


class Missing(Exception):
    """A result the gates need is not in the results folder."""


def _json(root: Path, name: str) -> dict:
    """``root/name`` read as JSON; ``Missing`` names the file and the command that writes it."""
    path = root / name
    if not path.is_file():
        raise Missing(f"{path} is missing: run `bash recipes/spire-tiny/measure.sh --gates MODEL {root}`")
    return json.loads(path.read_text())


def _metric(root: Path, run: str, metric: str) -> float:
    """Mean ``metric`` of ``root/runs/run`` (a ``spire bench run`` folder)."""
    return float(_json(root, f"runs/{run}/summary.json")["metrics"][metric]["mean"])


def check(root: Path) -> tuple[list[tuple[str, str, str, bool]], list[tuple[str, str, str, bool]]]:
    """The must gates and the goals as (what, measured, bound, met) rows, from the results folder ``root``."""
    must, goals = [], []
    for key, task in TASKS.items():
        for metric in ("psnr", "ssim"):
            model, identity = (
                _metric(root, f"{key}-spire-k1", metric),
                _metric(root, f"{key}-identity", metric),
            )
            must.append(
                (f"{task}: {metric} over the input", f"{model:.3f}", f"> {identity:.3f}", model > identity)
            )
        psnr = _metric(root, f"{key}-spire-k1", "psnr")
        if key in MIN_GAIN:
            gain = psnr - _metric(root, f"{key}-identity", "psnr")
            must.append((f"{task}: gain over the input", f"{gain:+.3f} dB", f"≥ +{MIN_GAIN[key]} dB",
                         gain >= MIN_GAIN[key]))  # fmt: skip
        else:
            classical = _metric(root, f"{key}-classical", "psnr")
            must.append(
                (f"{task}: psnr over classical", f"{psnr:.3f}", f"> {classical:.3f}", psnr > classical)
            )
        goals.append((f"{task}: psnr", f"{psnr:.3f}", f"≥ {GOAL_PSNR[key]}", psnr >= GOAL_PSNR[key]))
        if key.startswith("noise"):
            gap = _metric(root, f"{key}-ffdnet", "psnr") - psnr
            goals.append((f"{task}: below FFDNet", f"{gap:.3f} dB", f"≤ {FFDNET_GAP} dB", gap <= FFDNET_GAP))
    for metric in ("psnr", "ssim"):
        model = _metric(root, "blind-spire", metric)
        for other in ("identity", "bicubic", "realesrgan"):
            value = _metric(root, f"blind-{other}", metric)
            must.append((f"blind: {metric} over {other}", f"{model:.3f}", f"> {value:.3f}", model > value))
    strength = _json(root, "strength.json")
    for walk, bound in STRENGTH_RHO.items():
        rho = float(strength[walk]["spearman_mean"])
        met = rho <= bound if bound < 0 else rho >= bound
        must.append(
            (f"strength: {walk} walk ρ", f"{rho:+.3f}", f"{'≤' if bound < 0 else '≥'} {bound:+.1f}", met)
        )
    semantic = sorted(root.glob("semantic-cfg*.json"))
    if not semantic:
        raise Missing(
            f"no semantic-cfg*.json in {root}: run `bash recipes/spire-tiny/measure.sh --gates MODEL {root}`"
        )
    rows = []
    for path in semantic:
        data = json.loads(path.read_text())
        for degradation, scores in data.items():
            if isinstance(scores, dict) and "true caption" in scores:
                lead = scores["true caption"]["accuracy"] - scores["empty caption"]["accuracy"]
                wrong = scores["wrong caption"]["follows_wrong_shape"]
                empty = scores["empty caption"]["follows_wrong_shape"]
                rows.append((f"semantic, {degradation}, guidance {data['guidance']}",
                             f"true − \"\" {100 * lead:+.1f} pts; wrong shape {100 * wrong:.1f}% vs {100 * empty:.1f}%",
                             f"≥ +{100 * SEMANTIC_LEAD:.0f} pts; wrong > \"\"",
                             lead >= SEMANTIC_LEAD and wrong > empty))  # fmt: skip
    # the targets must be met at one guidance the card reports; every guidance measured is shown
    must.append(("semantic targets at one guidance", str(sum(r[3] for r in rows)) + f" of {len(rows)}", "≥ 1",
                 any(r[3] for r in rows)))  # fmt: skip
    goals.extend(rows)
    return must, goals


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/spire-tiny")
    try:
        must, goals = check(root)
    except Missing as error:
        sys.exit(f"error: {error}")
    for title, rows in (("must", must), ("goals and the semantic rows (reported)", goals)):
        print(f"\n{title}\n| check | measured | bound | met |\n|---|---|---|---|")
        for what, value, bound, met in rows:
            print(f"| {what} | {value} | {bound} | {'yes' if met else '**no**'} |")
    failed = [row[0] for row in must if not row[3]]
    print(f"\n{len(must) - len(failed)} of {len(must)} must gates met" + (f"; failed: {'; '.join(failed)}" if failed
                                                                          else ""))  # fmt: skip
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
