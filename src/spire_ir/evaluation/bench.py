"""The SPIRE benchmark: build a fixed set of (x, y, c_s, c_r) items, run a method over it, report.

    spire bench build --images DIR [--captions FILE] --n 3000 --setting parameterized --seed 0 --size 512 -o BENCH
    spire bench run BENCH --method classical -o RUN
    spire bench report RUN1 RUN2 ... -o report/

A bench folder holds ``x/ID.png`` (clean), ``y/ID.png`` (degraded) and ``manifest.json`` (prompts, records,
sha256 checksums, the build arguments). Rebuilding with the same arguments gives byte-identical files. A run folder
holds ``images/ID.png``, one ``items/ID.json`` per finished item (so an interrupted run resumes where it stopped),
``metrics.csv`` / ``metrics.json`` and ``summary.json`` with the method, its settings, the prompts mode, versions and
every metric convention. Under ``accelerate launch`` items are sharded across processes and merged by the main one.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from spire_ir.evaluation.metrics import MetricSettings
from spire_ir.prompts import BLIND_PROMPT
from spire_ir.utils.distributed import cpu_launch
from spire_ir.utils.images import ImageLoadError, load_image, quantize_8bit, save_image, save_json
from spire_ir.utils.seeding import derive_seed, make_generator

logger = logging.getLogger(__name__)

__all__ = [
    "METHODS", "PROMPT_MODES", "MethodOptions", "build_bench", "load_manifest", "make_scorers", "package_versions",
    "run_bench", "run_summary", "score_image", "set_metric_scores", "write_tables",
]  # fmt: skip

PROMPT_MODES = {  # (use c_s, use c_r): the paper's "Prompts" columns
    "full": (True, True),
    "semantic": (True, False),
    "restoration": (False, True),
    "none": (False, False),
    # Table 4's semantic half: c_s from a captioner reading the degraded y (the paper's LLaVA prompts), or
    # another item's caption (a seeded derangement: no item keeps its own)
    "caption": (True, True),
    "unmatched": (True, True),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_fingerprint(folder: str | Path) -> str:
    """The first 16 hex digits of a sha256 over a model folder's ``*.safetensors`` files (names and bytes).

    A run folder records it, so a run begun on one set of weights does not resume on another under the same name
    (a re-exported ``spire-tiny``, a checkpoint saved over)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _center_square(image: torch.Tensor, size: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = image[..., top : top + side, left : left + side]
    if side != size:
        crop = F.interpolate(
            crop, size=(size, size), mode="bicubic", antialias=side > size, align_corners=False
        )
    return quantize_8bit(crop)  # the clean image is exactly what the PNG holds


def _item_degradation(setting: str, prompt: str | None) -> Callable[[torch.Tensor, torch.Generator], tuple]:
    """(x, generator) -> (y, c_r, record) for a bench: the fixed prompt, the setting's pipeline, or y = x."""
    from spire_ir.degradations import degrade, get_degradation
    from spire_ir.prompts import parse

    if setting not in ("parameterized", "realesrgan", "none"):
        raise ValueError(f"setting must be parameterized, realesrgan or none, got {setting!r}")
    if prompt is not None and setting != "parameterized":
        raise ValueError("--prompt fixes the parameterised degradation; use it with --setting parameterized")
    if prompt is not None:
        if parse(prompt, strict=True).blind:
            raise ValueError(
                f"--prompt {prompt!r}: blind prompts have no fixed degradation; use --setting realesrgan"
            )
        return lambda x, generator: degrade(x, prompt, generator, strict=True)
    if setting == "none":
        return lambda x, generator: (x, BLIND_PROMPT, {"pipeline": "none", "ops": []})
    return get_degradation(setting)


def build_bench(
    images: str | Path,
    output: str | Path,
    n: int,
    setting: str = "parameterized",
    seed: int = 0,
    size: int = 512,
    captions: str | Path | None = None,
    prompt: str | None = None,
) -> dict[str, Any]:
    """Pick ``n`` images deterministically, centre-crop and resize them, degrade them; write the bench folder.

    Args:
        images: a folder with caption sidecars / ``metadata.jsonl``, or the image folder of ``captions``.
        output: the bench folder (created).
        n: number of items (at most the number of images).
        setting: "parameterized" (Table 1 left), "realesrgan" (right) or "none" (y = x: real degraded photos).
        seed: picks the items and seeds every degradation.
        size: output side in pixels.
        captions: a COCO captions JSON.
        prompt: a restoration prompt applied to every item instead of drawn ones (one task per bench, e.g.
            "Denoise with sigma 0.05"); needs setting "parameterized". Values it leaves out are drawn per item.

    Returns:
        The manifest.
    """
    from spire_ir.data import coco_items, folder_items

    degrade_item = _item_degradation(setting, prompt)
    items = coco_items(images, captions) if captions else folder_items(images)
    order = torch.randperm(len(items), generator=make_generator(derive_seed(seed, "bench-order")))
    output = Path(output)
    entries, skipped = [], []
    for index in order.tolist():
        if len(entries) == n:
            break
        path, texts = items[index]
        try:
            x = _center_square(load_image(path).tensor, size)
        except ImageLoadError as error:
            skipped.append(str(error))
            continue
        item_id = f"{len(entries):05d}-{path.stem}"
        generator = make_generator(derive_seed(seed, "bench", item_id))
        caption = texts[int(torch.randint(len(texts), (), generator=generator))] if texts else ""
        with torch.no_grad():
            y, c_r, record = degrade_item(x, generator)
        x_path, y_path = (
            save_image(x, output / "x" / f"{item_id}.png"),
            save_image(y, output / "y" / f"{item_id}.png"),
        )
        entries.append({
            "id": item_id, "source": str(path), "c_s": caption, "c_r": c_r, "record": record,
            "x": f"x/{item_id}.png", "y": f"y/{item_id}.png",
            "sha256": {"x": _sha256(x_path), "y": _sha256(y_path)},
        })  # fmt: skip
    if len(entries) < n:
        raise ValueError(f"asked for {n} items but only {len(entries)} usable images were found in {images}")
    manifest = {
        "setting": setting, "seed": seed, "size": size, "n": n, "images": str(images),
        "captions": str(captions) if captions else None, "prompt": prompt, "skipped": skipped, "items": entries,
    }  # fmt: skip
    save_json(manifest, output / "manifest.json")
    return manifest


def load_manifest(bench: str | Path) -> dict[str, Any]:
    path = Path(bench) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{bench}: not a bench folder (no manifest.json); make one with `spire bench build`"
        )
    return json.loads(path.read_text())


Restorer = Callable[[torch.Tensor, str, str], torch.Tensor]


@dataclass(frozen=True)
class MethodOptions:
    """What ``spire bench run`` passes to a method's builder (only ``spire`` reads the model settings)."""

    model: str | Path | None = None  # a model folder, or the built-in "spire-tiny"
    steps: int | None = None  # None: the model folder's default
    guidance: float | None = None
    seed: int = 0
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    captioner: str | None = None  # --prompts caption: a local image-to-text model folder
    caption_style: str = "short"
    consistency: bool | None = None  # None: the model folder's default_consistency
    self_ensemble: int | None = None  # None: the model folder's default_self_ensemble
    tile_size: int | None = None  # tiles of at most this many pixels (0: the whole image; None: the model's)
    tile_overlap: int = 64


def _spire_method(options: MethodOptions) -> tuple[Restorer, dict[str, Any]]:
    from spire_ir.pipeline import SpirePipeline
    from spire_ir.pipeline.pipeline_spire import resolve_model_path

    model = str(options.model or "spire-tiny")  # the built-in model by default
    pipe = SpirePipeline.from_pretrained(model)
    if options.device.startswith("cuda"):
        pipe.to(options.device, torch.float16)
    pipe.set_progress_bar_config(disable=True)
    steps = options.steps if options.steps is not None else int(pipe.config.default_steps)
    guidance = options.guidance if options.guidance is not None else float(pipe.config.default_guidance)
    consistency = options.consistency
    if consistency is None:
        consistency = bool(pipe.config.get("default_consistency", False))
    ensemble = options.self_ensemble
    if ensemble is None:
        ensemble = int(pipe.config.get("default_self_ensemble", 1))
    tile = options.tile_size
    if tile is None:
        tile = int(pipe.config.get("default_tile_size", 0))

    def restore(y: torch.Tensor, c_s: str, c_r: str) -> torch.Tensor:
        return pipe(y, prompt=c_s, restoration_prompt=c_r, num_inference_steps=steps, guidance_scale=guidance,
                    consistency=consistency, self_ensemble=ensemble, tile_size=tile,
                    tile_overlap=options.tile_overlap,
                    generator=make_generator(options.seed), output_type="pt").images.float()  # fmt: skip

    strength = float(pipe.config.default_strength)
    return restore, {
        "model": model,
        "weights": weights_fingerprint(resolve_model_path(model)),
        "steps": steps,
        "guidance": guidance,
        "strength": strength,
        "consistency": consistency,
        "self_ensemble": ensemble,
        "attention_window": int(pipe.config.get("default_attention_window", 0)),
        "tile_size": tile or None,
        "tile_overlap": options.tile_overlap if tile else None,
        "seed": options.seed,
    }


def _realesrgan_method(options: MethodOptions) -> tuple[Restorer, dict[str, Any]]:
    from spire_ir.evaluation.realesrgan import RealESRGANRestorer

    return RealESRGANRestorer(device=options.device), {}


def _ffdnet_method(options: MethodOptions) -> tuple[Restorer, dict[str, Any]]:
    from spire_ir.evaluation.ffdnet import FFDNetRestorer

    return FFDNetRestorer(device=options.device), {}


def _baseline(name: str) -> Callable[[MethodOptions], tuple[Restorer, dict[str, Any]]]:
    def build(options: MethodOptions) -> tuple[Restorer, dict[str, Any]]:
        from spire_ir.evaluation.baselines import METHODS

        return METHODS[name], {}

    return build


# name -> builder of (restore, settings recorded in the summary; "model" goes to the summary's top level).
# A new method is one entry here.
METHODS: dict[str, Callable[[MethodOptions], tuple[Restorer, dict[str, Any]]]] = {
    "spire": _spire_method,
    "realesrgan": _realesrgan_method,
    "ffdnet": _ffdnet_method,
    **{name: _baseline(name) for name in ("identity", "bicubic", "classical")},
}


def package_versions() -> dict[str, str]:
    """The installed versions of the packages a score depends on (recorded in every summary)."""
    import importlib.metadata as md

    out = {}
    for name in ("spire-ir", "torch", "diffusers", "transformers", "scikit-image"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def set_metric_scores(names, bench: Path, output: Path, manifest: dict, settings, unavailable):
    """Metrics over the whole (merged) set: ``fid``, ``fd_clip`` of ``output/images`` against the bench's clean
    images. Returns (scores, warnings); what cannot run goes into ``unavailable``."""
    from spire_ir.evaluation.metrics import (
        FID_MIN_IMAGES,
        SET_METRICS,
        MetricUnavailable,
        _clip_model_path,
        _fid_weights_path,
        clip_image_features,
        frechet_distance,
        inception_features,
    )

    scores, warnings_ = {}, []
    for name in names:
        try:
            # unavailable weights are reported before any image is read
            if name == "fid":
                features = functools.partial(
                    inception_features, weights=_fid_weights_path(settings.fid_weights)
                )
            else:
                features = functools.partial(
                    clip_image_features, clip_model=_clip_model_path(settings.clip_model)
                )
            # one image at a time: outputs may differ in size; the features are per image
            restored = torch.cat(
                [features(load_image(output / "images" / f"{i['id']}.png").tensor) for i in manifest["items"]]
            )
            clean = torch.cat([features(load_image(bench / i["x"]).tensor) for i in manifest["items"]])
            scores[name] = {
                "value": frechet_distance(restored, clean), "lower_better": True,
                "images": len(manifest["items"]), "features": SET_METRICS[name],
            }  # fmt: skip
            if len(manifest["items"]) < FID_MIN_IMAGES:
                warnings_.append(
                    f"{name}: {len(manifest['items'])} images < {FID_MIN_IMAGES}; Fréchet distances are biased on small sets"
                )
        except (MetricUnavailable, ValueError) as error:
            unavailable[name] = str(error)
    return scores, warnings_


def make_scorers(
    metrics: tuple[str, ...], crop_border: int, settings, unavailable: dict
) -> tuple[list, list[str]]:
    """The per-image metrics that can run here, and the names of the set-level ones."""
    from spire_ir.evaluation.metrics import SET_METRICS, MetricUnavailable, create_metric

    scorers = []
    for name in metrics:
        if name in SET_METRICS:
            continue
        try:
            scorers.append(create_metric(name, crop_border=crop_border, settings=settings))
        except MetricUnavailable as error:
            unavailable[name] = str(error)
            logger.warning("%s", error)
    return scorers, [name for name in metrics if name in SET_METRICS]


def score_image(
    metric, restored: torch.Tensor, x: torch.Tensor, caption: str, unavailable: dict
) -> float | None:
    """One metric on one (1, 3, H, W) image in [0, 1] against the clean x; None (reason in ``unavailable``) when
    the metric cannot score it."""
    try:
        if metric.needs_caption and not caption:
            raise ValueError(f"{metric.name}: the item has no caption")
        reference = x if metric.full_reference else None
        return float(metric(restored, reference, captions=[caption] if metric.needs_caption else None)[0])
    except ValueError as error:  # e.g. NIQE on images under 96 px, CLIP-T without a caption
        unavailable.setdefault(metric.name, str(error))
        return None


def unmatched_captions(manifest: dict, seed: int = 0) -> dict[str, str]:
    """{item id: another item's caption}, from a seeded cyclic shift of a permutation (no item keeps its own)."""
    items = manifest["items"]
    order = torch.randperm(len(items), generator=make_generator(derive_seed(seed, "unmatched"))).tolist()
    return {items[i]["id"]: items[order[(k + 1) % len(order)]]["c_s"] for k, i in enumerate(order)}


def _semantic_source(
    prompts_mode: str, manifest: dict, options: MethodOptions
) -> Callable[[dict, torch.Tensor], str]:
    """(item, y) -> the c_s the method sees under ``prompts_mode``."""
    if prompts_mode == "caption":
        if not options.captioner:
            raise ValueError("--prompts caption needs --captioner PATH, a local image-to-text model folder")
        from spire_ir.models.captioner import Captioner

        captioner = Captioner(options.captioner, style=options.caption_style, device=options.device)
        return lambda item, y: captioner(y)[0]
    if prompts_mode == "unmatched":
        if len(manifest["items"]) < 2:
            raise ValueError("--prompts unmatched needs a bench of at least 2 items")
        partner = unmatched_captions(manifest, options.seed)
        return lambda item, y: partner[item["id"]]
    use_semantic = PROMPT_MODES[prompts_mode][0]
    return lambda item, y: item["c_s"] if use_semantic else ""


def _restore_and_score(restore: Restorer, bar, bench: Path, output: Path, prompts_mode: str, scorers: list,
                       unavailable: dict, semantic: Callable[[dict, torch.Tensor], str]) -> None:  # fmt: skip
    """Phases 1 and 2, per item of ``bar`` (a tqdm over the items to do): restore, save the 8-bit output, score
    it, write ``items/ID.json``."""
    use_restoration = PROMPT_MODES[prompts_mode][1]
    sums: dict[str, list[float]] = {m.name: [] for m in scorers}
    for item in bar:
        y = load_image(bench / item["y"]).tensor
        x = load_image(bench / item["x"]).tensor
        c_s = semantic(item, y)
        c_r = item["c_r"] if use_restoration else BLIND_PROMPT
        with torch.no_grad():
            restored = quantize_8bit(restore(y, c_s, c_r))  # scored as saved (8 bit)
        save_image(restored, output / "images" / f"{item['id']}.png")
        # CLIP-T always compares with the item's own caption (the ground truth), whatever the method saw
        scores = {
            metric.name: score_image(metric, restored, x, item["c_s"], unavailable) for metric in scorers
        }
        for name, value in scores.items():
            if value is not None:
                sums[name].append(value)
        save_json({"id": item["id"], "c_s": item["c_s"], "c_r": item["c_r"], "used_c_s": c_s, "used_c_r": c_r,
                   **scores}, output / "items" / f"{item['id']}.json")  # fmt: skip
        bar.set_postfix({k: f"{sum(v) / len(v):.3f}" for k, v in sums.items() if v})


def run_summary(bench: Path, manifest: dict, metrics: tuple[str, ...], scorers: list, tables: tuple[dict, dict],
                sets: tuple[dict, list], unavailable: dict, **fields: Any) -> dict[str, Any]:  # fmt: skip
    """A run folder's ``summary.json``: the bench, ``fields`` (method, prompts, settings, ...), every metric's
    convention and mean, the set metrics, what could not run and the package versions."""
    (means, counts), (set_scores, warnings_) = tables, sets
    return {
        "bench": str(bench), "setting": manifest["setting"], "items": len(manifest["items"]), **fields,
        "metrics": {m.name: {**m.describe(), "mean": means[m.name], "scored": counts[m.name]} for m in scorers},
        "set_metrics": set_scores, "warnings": warnings_, "unavailable": unavailable, "versions": package_versions(),
        "requested_metrics": list(metrics),
    }  # fmt: skip


def write_tables(output: Path, manifest: dict, scorers: list) -> tuple[dict, dict]:
    """Phase 3: metrics.csv / metrics.json over every item; returns the means and the counts per metric."""
    rows = [json.loads((output / "items" / f"{item['id']}.json").read_text()) for item in manifest["items"]]
    columns = ["id", "c_s", "c_r", *[m.name for m in scorers]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.csv").write_text(buffer.getvalue())
    save_json([{k: row.get(k) for k in columns} for row in rows], output / "metrics.json")
    means, counts = {}, {}
    for metric in scorers:
        # identical images give PSNR = inf; means are over finite scores (the count is in "scored")
        values = [
            row[metric.name]
            for row in rows
            if row.get(metric.name) is not None and math.isfinite(row[metric.name])
        ]
        means[metric.name] = sum(values) / len(values) if values else None
        counts[metric.name] = len(values)
    return means, counts


def _check_resumable(output: Path, run: dict[str, Any]) -> None:
    """Refuse to resume a run folder made with another method, model, prompts or settings: its scored items would
    be mixed with new ones under a summary that names only the new settings."""
    for name in ("run.json", "summary.json"):
        path = output / name
        if not path.is_file():
            continue
        recorded = json.loads(path.read_text())
        old = {key: recorded.get(key) for key in run}
        if old != run:
            changed = []
            for key in (key for key in run if old[key] != run[key]):
                if isinstance(old[key], dict) and isinstance(run[key], dict):  # name the settings that differ
                    names = sorted(set(old[key]) | set(run[key]))
                    changed += [f"{key}.{name} {old[key].get(name)!r} -> {run[key].get(name)!r}" for name in names
                                if old[key].get(name) != run[key].get(name)]  # fmt: skip
                else:
                    changed.append(f"{key} {old[key]!r} -> {run[key]!r}")
            named = any(change.startswith("settings.weights ") for change in changed)
            weights = " (weights: a fingerprint of the model's weights files)" if named else ""
            raise ValueError(
                f"{output} holds a run with other settings ({', '.join(changed)}){weights}; give a new -o folder, "
                "or delete this one to start again (a run folder resumes only with the settings that began it)"
            )


def run_bench(
    bench: str | Path,
    method: str,
    output: str | Path,
    options: MethodOptions | None = None,
    prompts_mode: str = "full",
    metrics: tuple[str, ...] = ("psnr", "ssim", "niqe"),
    crop_border: int = 0,
    settings: MetricSettings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Restore every bench item with ``method``, score it, write per-item results and the summary (resumable).

    Each process of a multi-process launch restores its share of the items; the main process merges them.

    Args:
        bench: a ``spire bench build`` folder.
        method: a name in ``METHODS`` (spire, realesrgan, ffdnet, identity, bicubic, classical).
        output: the run folder; items already scored there are skipped.
        options: the method's model, steps, guidance, seed and device.
        prompts_mode: which prompts the method sees (``PROMPT_MODES``).
        metrics: per-image and set-level metric names.
        crop_border: pixels cropped off each side before PSNR/SSIM/NIQE.
        settings: where weighted metrics find their weights.

    Returns:
        The summary (on the main process; {} elsewhere).
    """
    from accelerate import PartialState
    from tqdm.auto import tqdm

    if prompts_mode not in PROMPT_MODES:
        raise ValueError(f"prompts mode must be one of {', '.join(PROMPT_MODES)}, got {prompts_mode!r}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    bench, output = Path(bench), Path(output)
    options, settings = options or MethodOptions(), settings or MetricSettings()
    manifest = load_manifest(bench)
    state = PartialState(cpu=cpu_launch())
    if options.device == "cuda" and state.device.type == "cuda":  # each process on its own GPU
        options = dataclasses.replace(options, device=str(state.device))
    restore, method_settings = METHODS[method](options)
    run = json.loads(json.dumps({  # as it reads back from run.json
        "method": method, "model": method_settings.get("model"), "prompts": prompts_mode,
        "settings": {key: value for key, value in method_settings.items() if key != "model"},
    }))  # fmt: skip
    _check_resumable(output, run)
    state.wait_for_everyone()
    if state.is_main_process:
        save_json(run, output / "run.json")
    unavailable: dict[str, str] = {}
    scorers, set_metrics = make_scorers(metrics, crop_border, settings, unavailable)
    mine = manifest["items"][state.process_index :: state.num_processes]
    todo = [item for item in mine if not (output / "items" / f"{item['id']}.json").is_file()]
    bar = tqdm(todo, desc=f"{method}", disable=not (progress and state.is_main_process), dynamic_ncols=True)
    semantic = _semantic_source(prompts_mode, manifest, options)
    _restore_and_score(restore, bar, bench, output, prompts_mode, scorers, unavailable, semantic)
    # which process scored what in this launch (the check that the shares are disjoint and cover the bench)
    share = {
        "process": state.process_index,
        "processes": state.num_processes,
        "items": [i["id"] for i in todo],
    }
    save_json(share, output / "processes" / f"{state.process_index}.json")
    state.wait_for_everyone()
    if not state.is_main_process:
        return {}
    means, counts = write_tables(output, manifest, scorers)
    set_scores, warnings_ = set_metric_scores(set_metrics, bench, output, manifest, settings, unavailable)
    captioner = {"path": str(options.captioner), "style": options.caption_style} if prompts_mode == "caption" else None
    summary = run_summary(
        bench, manifest, metrics, scorers, (means, counts), (set_scores, warnings_), unavailable, method=method,
        model=method_settings.pop("model", None), prompts=prompts_mode, settings=method_settings,
        processes=state.num_processes, captioner=captioner,
    )  # fmt: skip
    save_json(summary, output / "summary.json")
    return summary
