"""Checkpoints without pickle: model and optimiser tensors in safetensors, everything else in JSON.

A checkpoint folder ``checkpoint-{step:07d}/`` holds ``model.safetensors``, ``optimizer.safetensors``,
``optimizer.json``, ``trainer_state.json`` and, for runs with an EMA, ``ema.safetensors``. It is written to a temporary folder and renamed into place, so a run
killed mid-save never leaves a partial checkpoint behind. The learning-rate schedule and every random draw are
functions of the step, so (step, model, optimiser) is the whole training state.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["latest_checkpoint", "load_checkpoint", "prune_checkpoints", "read_checkpoint", "save_checkpoint"]


def _optimizer_to_files(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}, "scalars": []}
    for param_id, entries in state["state"].items():
        meta["state"][str(param_id)] = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                key = f"{param_id}.{name}"
                if value.dim() == 0:
                    meta["scalars"].append(key)
                    value = value.reshape(1)
                tensors[key] = value.detach().contiguous().cpu()
            else:
                meta["state"][str(param_id)][name] = value
    return tensors, meta


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["state"].items()}
    scalars = set(meta["scalars"])
    for key, value in tensors.items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value.reshape(()) if key in scalars else value
    groups = meta["param_groups"]
    for group in groups:  # JSON turned tuples into lists
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    run_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    extra: dict | None = None,
    ema: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``run_dir/checkpoint-{step}`` atomically and return its path (``ema.safetensors`` when given).

    ``model_state`` is a ``state_dict()``; ``optimizer_state`` is in ``Optimizer.state_dict()``'s layout.
    """
    final = Path(run_dir) / f"checkpoint-{step:07d}"
    tmp = Path(run_dir) / f".tmp-checkpoint-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model_state.items()}, str(tmp / "model.safetensors"))
    if ema is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema.items()}, str(tmp / "ema.safetensors"))
    tensors, meta = _optimizer_to_files(optimizer_state)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **(extra or {})}, indent=2))
    for item in tmp.iterdir():
        with open(item, "rb") as handle:
            os.fsync(handle.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the highest step, or None."""
    found = sorted(Path(run_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def read_checkpoint(path: Path, ema: bool = False) -> dict[str, Any]:
    """A checkpoint's contents: ``model`` and ``optimizer`` state dicts, ``ema`` (when asked), ``trainer_state``."""
    path = Path(path)
    ema_state = None
    if ema:
        if not (path / "ema.safetensors").is_file():
            raise FileNotFoundError(f"{path}: no ema.safetensors; this run was not trained with ema_decay > 0")
        ema_state = load_file(str(path / "ema.safetensors"))
    meta = json.loads((path / "optimizer.json").read_text())
    return {
        "model": load_file(str(path / "model.safetensors")),
        "optimizer": _optimizer_from_files(load_file(str(path / "optimizer.safetensors")), meta),
        "ema": ema_state,
        "trainer_state": json.loads((path / "trainer_state.json").read_text()),
    }


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, ema=None) -> dict:
    """Restore model, optimiser and (when given) the EMA in place; returns trainer_state.json."""
    contents = read_checkpoint(path, ema=ema is not None)
    if ema is not None:
        ema.load_state_dict(contents["ema"])
    model.load_state_dict(contents["model"], strict=True)
    optimizer.load_state_dict(contents["optimizer"])
    return contents["trainer_state"]


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    found = sorted(Path(run_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in found[: max(0, len(found) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
