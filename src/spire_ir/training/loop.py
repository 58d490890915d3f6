"""The one training loop behind ``spire train``, ``spire train-vae`` and ``spire train-base``.

A plain accelerate loop (single process, or ``accelerate launch`` / ``torchrun`` for DDP, or with ``sharding:
fsdp`` for gradients and AdamW state split across the processes): accumulate → backward → clip on sync steps →
AdamW step → LR schedule. What differs between the three commands lives in a small ``Task`` object: the
trainable module, the loss, validation and the final export.

Reproducibility: the noise, timestep and VAE sample of each training sample draw from a generator seeded with
``(seed, the sample's key)`` (``SampleRandom``), the data stream is a function of the batch index, and the LR
schedule is a function of the step, so a checkpoint holding (step, batches read, model, optimiser) resumes a run
exactly; on CPU, bitwise. Because no draw depends on the process or the batch it falls in, N processes with
batch B train as one process with batch N·B does, up to the float rounding of the gradient all-reduce.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from spire_ir.data import DataConfig, build_dataloader
from spire_ir.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    save_checkpoint,
)
from spire_ir.utils.config import save_config
from spire_ir.utils.distributed import cpu_launch
from spire_ir.utils.seeding import SampleRandom

logger = logging.getLogger(__name__)

__all__ = ["EMA", "LoopConfig", "OptimConfig", "Task", "move", "run_loop"]


class EMA:
    """Exponential moving average of a module's trainable parameters (float32 shadows)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Blend the current weights in after optimiser step ``step`` (1-based)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, parameter in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(parameter.detach().float(), 1 - decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ValueError("the EMA in the checkpoint does not match the model's trainable parameters")
        self.shadow = {k: v.float().clone() for k, v in state.items()}

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """Within the block, ``model`` holds the averaged weights; its own come back on exit."""
        saved = {}
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in self.shadow:
                    saved[name] = parameter.detach().clone()
                    parameter.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, parameter in model.named_parameters():
                    if name in saved:
                        parameter.copy_(saved[name])


@dataclass
class OptimConfig:
    """AdamW with linear warm-up, then constant or cosine decay."""

    lr: float = 1e-5
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    max_grad_norm: float = 1.0  # 0 disables clipping
    use_8bit_adam: bool = False  # bitsandbytes AdamW8bit when installed (CUDA)


@dataclass
class LoopConfig:
    """Options shared by every training command."""

    output_dir: str = "runs/spire"
    max_steps: int = 1000
    # stop and export at this step while the LR schedule still runs to max_steps (a time-budgeted run that
    # another can continue, as a fixed recipe step); None: at max_steps
    stop_after: int | None = None
    batch_size: int = 4  # per process
    gradient_accumulation_steps: int = 1
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    # "fsdp": with several processes, each keeps 1/N of the gradients and AdamW state (ZeRO-2's layout, torch
    # FSDP2), for an adaptor whose optimiser state does not fit beside the frozen prior; "none": DDP, every
    # process holds everything. Checkpoints are the same full safetensors either way. See sharding.py.
    sharding: Literal["none", "fsdp"] = "none"
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    validate_every: int = 500  # 0: never (a final validation always runs)
    num_validation: int = 4
    validation_steps: int = 20  # sampling steps in validation
    log_every: int = 10
    seed: int = 0
    progress: bool = True
    # exponential moving average of the weights, used for validation and the export (0: off). The decay ramps
    # up as min(ema_decay, (1 + step) / (10 + step)), so short runs export a useful average.
    ema_decay: float = 0.0
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


class Task(Protocol):
    """What a training command provides to the loop."""

    trainable: torch.nn.Module

    def to(self, device: torch.device, dtype: torch.dtype) -> None: ...
    def loss(self, model: torch.nn.Module, batch: dict, rng: SampleRandom) -> torch.Tensor: ...
    def validate(self, model: torch.nn.Module, step: int, run_dir: Path) -> dict[str, Any]: ...
    def export(self, model: torch.nn.Module, run_dir: Path) -> Path: ...


def move(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move a frozen module; cast only when the dtype really changes (diffusers warns on every cast)."""
    module.to(device)
    first = next(iter(module.parameters()), None)  # a lossless pixel-space "VAE" has none
    if first is not None and first.dtype != dtype:
        module.to(dtype)


def frozen_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The dtype the frozen modules run in: the mixed-precision one, but fp32 for fp16 on CPU (slow and inexact)."""
    return dtype if device.type != "cpu" or dtype == torch.bfloat16 else torch.float32


def sample_latents(vae, images: torch.Tensor, rng: SampleRandom, device: torch.device) -> torch.Tensor:
    """A posterior sample of the VAE in model units (float32), without gradients. images: (B, 3, H, W) in [0, 1];
    ``rng`` holds one generator per image."""
    from spire_ir.models.autoencoder import to_model_latents

    with torch.no_grad():
        posterior = vae.encode(images.to(device, vae.dtype) * 2 - 1).latent_dist
        noise = rng.randn(posterior.mean.shape).to(device)
        return to_model_latents(vae, posterior.mean.float() + posterior.std.float() * noise)


def diffusion_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the network predicts: v for a v-prediction scheduler (SD 2.x 768), else ε."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, t)
    return noise


def _lr_lambda(optim: OptimConfig, max_steps: int):
    def factor(step: int) -> float:
        if optim.warmup_steps and step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        if optim.schedule == "cosine":
            progress = (step - optim.warmup_steps) / max(1, max_steps - optim.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def _optimizer(params, optim: OptimConfig) -> torch.optim.Optimizer:
    kwargs = dict(lr=optim.lr, betas=optim.betas, eps=optim.eps, weight_decay=optim.weight_decay)
    if optim.use_8bit_adam:
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, **kwargs)
        except ImportError:
            logger.warning("use_8bit_adam: bitsandbytes is not installed; using torch AdamW")
    return torch.optim.AdamW(params, **kwargs)


def _write_run_info(run_dir: Path, config: Any, argv: list[str]) -> None:
    save_config(config, run_dir / "config.yaml")
    (run_dir / "argv.txt").write_text(" ".join(argv) + "\n")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    (run_dir / "git.txt").write_text(commit + "\n")


@dataclass
class _Run:
    """What one training run holds while it runs."""

    accelerator: Any
    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    ema: EMA | None
    step: int
    run_dir: Path
    sharded: bool = False  # sharding: fsdp with several processes
    plain: torch.nn.Module | None = None  # sharded runs, main process: an unsharded copy for validation and export
    batches: int = 0  # data batches read on this process (a batch of only undecodable files trains no step)
    samples_seen: int = 0  # training samples over all processes
    skipped: int = 0  # undecodable files skipped so far

    def state(self) -> dict[str, int]:
        """What trainer_state.json keeps besides the step: the data position and the counters."""
        return {"batches": self.batches, "samples_seen": self.samples_seen, "skipped": self.skipped}

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def _start(config: LoopConfig, task: Task, argv: list[str] | None, resume: str | None) -> _Run:
    """The accelerator, the run folder, the model and optimiser (resumed from a checkpoint when asked)."""
    from accelerate import Accelerator

    run_dir = Path(config.output_dir)
    log_with = "tensorboard" if _has_tensorboard() else None
    accelerator = Accelerator(
        cpu=cpu_launch(),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=log_with,
        project_dir=str(run_dir),
    )
    if accelerator.distributed_type.value in ("DEEPSPEED", "FSDP"):
        raise ValueError(
            f"spire train does not take accelerate's {accelerator.distributed_type.value} configs. For sharded "
            "gradients and optimiser state set `sharding: fsdp` in the training config and launch with "
            "configs/accelerate/8gpu.yaml (or torchrun)"
        )
    sharded = config.sharding == "fsdp" and accelerator.num_processes > 1
    if sharded and config.mixed_precision == "fp16":
        raise ValueError(
            "sharding: fsdp trains in fp32 or with mixed_precision: bf16; fp16's loss scaler does not unscale "
            "sharded gradients. Set mixed_precision: bf16 (or sharding: none)"
        )
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_run_info(run_dir, config, argv or sys.argv)
    if log_with:
        accelerator.init_trackers("logs")
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[config.mixed_precision]
    task.to(accelerator.device, weight_dtype)
    model = task.trainable
    model.train()
    plain = None
    if sharded:
        from spire_ir.training.sharding import local_share, shard

        plain = copy.deepcopy(model).cpu() if accelerator.is_main_process else None
        shard(model)
        local, total = local_share(model)
        logger.info(
            "sharding: fsdp over %d processes; process %d stores %d of %d parameter elements",
            accelerator.num_processes, accelerator.process_index, local, total,
        )  # fmt: skip
    optimizer = _optimizer([p for p in model.parameters() if p.requires_grad], config.optim)
    ema = EMA(model, config.ema_decay) if config.ema_decay > 0 else None
    state = {"step": 0}
    if resume:
        checkpoint = latest_checkpoint(run_dir) if resume == "latest" else Path(resume)
        if checkpoint is None:
            raise FileNotFoundError(f"--resume latest: no checkpoint-* folder in {run_dir}")
        if sharded:
            from spire_ir.training.sharding import load_sharded

            contents = read_checkpoint(checkpoint, ema=ema is not None)
            shadow = load_sharded(model, optimizer, contents["model"], contents["optimizer"], contents["ema"])
            if ema is not None:
                ema.load_state_dict(shadow)
            state = contents["trainer_state"]
        else:
            state = load_checkpoint(checkpoint, model, optimizer, ema)
        logger.info("resumed from %s at step %d", checkpoint, state["step"])
    step = state["step"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config.optim, config.max_steps))
    with warnings.catch_warnings():  # fast-forward the schedule (a function of the step) without an optimiser step
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(step):
            scheduler.step()
    if sharded:  # FSDP already splits the gradients; DDP's wrapper would all-reduce them again
        optimizer = accelerator.prepare(optimizer)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    batches = state.get("batches", step * config.gradient_accumulation_steps)  # older checkpoints lack it
    counters = {"samples_seen": state.get("samples_seen", 0), "skipped": state.get("skipped", 0)}
    return _Run(accelerator, model, optimizer, scheduler, ema, step, run_dir, sharded, plain, batches, **counters)


def _save(run: _Run, keep: int) -> None:
    """Write checkpoint-{step} on the main process (a sharded run gathers the shards to it first)."""
    model_state: dict = {}
    optimizer_state: dict = {}
    ema_state = None
    if run.sharded:
        from spire_ir.training.sharding import full_model_state, full_optimizer_state, full_tensors

        model_state = full_model_state(run.model)
        optimizer_state = full_optimizer_state(run.model, run.optimizer.optimizer)
        ema_state = None if run.ema is None else full_tensors(run.ema.state_dict())
    elif run.main:
        model_state = run.accelerator.unwrap_model(run.model).state_dict()
        optimizer_state = run.optimizer.optimizer.state_dict()
        ema_state = None if run.ema is None else run.ema.state_dict()
    if run.main:
        save_checkpoint(run.run_dir, run.step, model_state, optimizer_state, run.state(), ema=ema_state)
        prune_checkpoints(run.run_dir, keep)


@contextlib.contextmanager
def _evaluated(run: _Run) -> Iterator[torch.nn.Module | None]:
    """The trained module with the EMA weights when the run keeps them, on the main process; None on the others.

    Every process enters it: a sharded run gathers the weights into the main process's unsharded copy.
    """
    if run.sharded:
        from spire_ir.training.sharding import full_model_state, full_tensors

        weights = full_model_state(run.model)
        if run.ema is not None:
            weights.update(full_tensors(run.ema.state_dict()))
        if run.plain is None:
            yield None
            return
        run.plain.load_state_dict(weights, strict=True)
        run.plain.to(run.accelerator.device)
        try:
            yield run.plain
        finally:
            run.plain.cpu()
        return
    if not run.main:
        yield None
        return
    module = run.accelerator.unwrap_model(run.model)
    with run.ema.applied(module) if run.ema is not None else contextlib.nullcontext():
        yield module


def _after_step(run: _Run, config: LoopConfig, task: Task, values: dict, last: int) -> None:
    """Log, checkpoint and validate on their schedules after optimiser step ``run.step``."""
    step, accelerator = run.step, run.accelerator
    if step % config.log_every == 0 or step == last:
        accelerator.log(values, step=step)
        if run.main:
            _append_metrics(run.run_dir, step, values)
        if run.skipped:
            logger.warning("%d undecodable file(s) skipped so far", run.skipped)
    if config.checkpoint_every and step % config.checkpoint_every == 0:
        _save(run, config.keep_checkpoints)
    if config.validate_every and step % config.validate_every == 0:
        _validate(task, run, step)


def _finish(run: _Run, config: LoopConfig, task: Task) -> Path:
    """Validate (unless the last step did), export with the EMA weights, write summary.json."""
    run.accelerator.wait_for_everyone()
    exported = run.run_dir
    if not (config.validate_every and run.step % config.validate_every == 0):
        _validate(task, run, run.step)
    with _evaluated(run) as module:
        if module is not None:
            exported = task.export(module, run.run_dir)
            summary = {"steps": run.step, "samples_seen": run.samples_seen, "skipped_files": run.skipped}
            (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    # every rank waits for the main one's export before the process group is destroyed, so that no rank tears it
    # down while another still runs (a two-process CI run once hung at exit after its export)
    run.accelerator.wait_for_everyone()
    run.accelerator.end_training()
    return exported


def run_loop(
    config: LoopConfig, task: Task, argv: list[str] | None = None, resume: str | None = None
) -> Path:
    """Train ``task.trainable`` per ``config``; returns the exported model folder.

    Args:
        config: the resolved config (written to the run folder with argv and the git hash).
        task: model, loss, validation and export.
        argv: the command line, for the run folder.
        resume: None, "latest", or a checkpoint folder.
    """
    run = _start(config, task, argv, resume)
    accelerator, model = run.accelerator, run.model
    loader, size = build_dataloader(
        config.data, config.batch_size, start_batch=run.batches,
        rank=accelerator.process_index, world_size=accelerator.num_processes,
    )  # fmt: skip
    if run.main and size is not None:
        logger.info("%d training items", size)
    progress = _progress(config, run.step, run.main)
    started, samples = time.perf_counter(), 0
    last = min(config.max_steps, config.stop_after or config.max_steps)
    for batch in loader if run.step < last else []:
        run.batches += 1
        run.skipped += batch["skipped"]
        if "x" not in batch:
            continue
        # a sharded model is not wrapped by accelerate's prepare, so it takes the mixed-precision autocast here
        with accelerator.accumulate(model), accelerator.autocast() if run.sharded else contextlib.nullcontext():
            loss = task.loss(model, batch, SampleRandom(config.seed, batch["key"], "noise"))
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.optim.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), config.optim.max_grad_norm)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        samples += batch["x"].shape[0] * accelerator.num_processes
        run.samples_seen += batch["x"].shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        run.scheduler.step()
        run.step += 1
        if run.ema is not None:
            run.ema.update(accelerator.unwrap_model(model), run.step)
        loss_value = accelerator.gather(loss.detach().reshape(1)).mean().item()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}", skipped=run.skipped)
        rate = samples / max(1e-9, time.perf_counter() - started)
        values = {"loss": loss_value, "lr": run.scheduler.get_last_lr()[0], "samples_per_s": rate,
                  "samples_seen": run.samples_seen, "skipped_files": run.skipped}  # fmt: skip
        _after_step(run, config, task, values, last)
        if run.step >= last:
            break
    if progress is not None:
        progress.close()
    if run.step < last:
        raise RuntimeError(
            f"the training data ran out at step {run.step} of {last}; a map-style or WebDataset source repeats "
            "forever, so this means every file failed to decode (see the warnings above)"
        )
    return _finish(run, config, task)


def _validate(task: Task, run: _Run, step: int) -> None:
    """Validate on the main process, with the EMA weights when the run keeps them (every process calls it)."""
    accelerator, run_dir = run.accelerator, run.run_dir
    with _evaluated(run) as module:
        if module is None:
            return
        module.eval()
        with torch.no_grad():
            metrics = task.validate(module, step, run_dir)
        module.train()
    if metrics:
        values = {f"val/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
        accelerator.log(values, step=step)
        _append_metrics(run_dir, step, values)
        for tracker in accelerator.trackers:
            image = metrics.get("grid")
            if image is not None and tracker.name == "tensorboard":
                import numpy as np

                tracker.writer.add_image("validation", np.asarray(image), step, dataformats="HWC")


def _append_metrics(run_dir: Path, step: int, values: dict[str, Any]) -> None:
    """One JSON line per log in RUN/metrics.jsonl (readable without TensorBoard; used for training curves)."""
    if values:
        with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")


def _progress(config: LoopConfig, step: int, main: bool):
    if not (config.progress and main):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.max_steps, initial=step, desc="train", dynamic_ncols=True)


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True
