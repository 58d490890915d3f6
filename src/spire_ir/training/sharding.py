"""``sharding: fsdp``: the trainable networks split across processes with torch's FSDP2 (``fully_shard``).

ZeRO-2's memory layout: each process keeps 1/N of the gradients and of the AdamW state between steps, and the
weights are gathered once per step (``reshard_after_forward=False``, so backward needs no second gather). The
trainable module is one FSDP unit (the adaptor, or the adaptor and the prior when both train: the loss runs inside
their container's forward).

Checkpoints stay the loop's own format, full tensors in safetensors: the shards are gathered to the main process
to save, and each process cuts its shard out of the full tensors to load. A run can therefore resume with or
without sharding and on another number of processes. Every function here is collective: all processes call it.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["full_model_state", "full_optimizer_state", "full_tensors", "load_sharded", "local_share", "shard"]


def shard(module: torch.nn.Module) -> None:
    """Shard ``module``'s parameters in place across the (initialised) process group, as one FSDP unit.

    The module must be on its training device, and the loss must call its forward. Its parameters become
    ``DTensor`` shards of dim 0.
    """
    from torch.distributed.fsdp import fully_shard

    fully_shard(module, reshard_after_forward=False)


def _options(cpu_offload: bool):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


def full_model_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole ``state_dict`` of a sharded module on CPU, on the main process ({} on the others)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_options(cpu_offload=True))


def _trainable_names(module: torch.nn.Module) -> list[str]:
    """Parameter names in the order the loop's optimiser holds them (``parameters()`` that require grad)."""
    return [name for name, parameter in module.named_parameters() if parameter.requires_grad]


def full_optimizer_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser's whole state on CPU in ``Optimizer.state_dict()``'s layout (integer parameter ids, as an
    unsharded run writes it), on the main process ({} on the others)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(module, optimizer, options=_options(cpu_offload=True))
    if not state:
        return {}
    index = {name: position for position, name in enumerate(_trainable_names(module))}
    groups = [{**group, "params": [index[name] for name in group["params"]]} for group in state["param_groups"]]
    return {"state": {index[name]: value for name, value in state["state"].items()}, "param_groups": groups}


def full_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each sharded tensor gathered whole, on CPU, on every process (the EMA's shadows)."""
    from torch.distributed.tensor import DTensor

    return {
        name: (value.full_tensor() if isinstance(value, DTensor) else value).detach().cpu()
        for name, value in tensors.items()
    }


def load_sharded(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    ema_state: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor] | None:
    """Load full tensors (every process holds the whole checkpoint) into a sharded module and its optimiser.

    Returns the EMA shadows cut to the shards of the matching parameters (None when ``ema_state`` is None).
    """
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict
    from torch.distributed.tensor import distribute_tensor

    set_model_state_dict(module, model_state, options=_options(cpu_offload=False))
    names = _trainable_names(module)
    saved_groups = optimizer_state["param_groups"]
    named = {
        "state": {names[position]: value for position, value in optimizer_state["state"].items()},
        "param_groups": [  # only the keys the new optimiser has; the LR schedule's (initial_lr) come next
            {**{key: group[key] for key in live if key != "params"}, "params": [names[i] for i in group["params"]]}
            for group, live in zip(saved_groups, optimizer.param_groups, strict=True)
        ],
    }
    set_optimizer_state_dict(module, optimizer, named, options=_options(cpu_offload=False))
    for live, group in zip(optimizer.param_groups, saved_groups, strict=True):  # as Optimizer.load_state_dict does
        live.update({key: value for key, value in group.items() if key != "params"})
    if ema_state is None:
        return None
    parameters = dict(module.named_parameters())
    return {
        name: distribute_tensor(
            value.float().to(parameters[name].device), parameters[name].device_mesh, parameters[name].placements,
            src_data_rank=None,  # every process holds the full tensor: each keeps its own slice, no communication
        )
        for name, value in ema_state.items()
    }


def local_share(module: torch.nn.Module) -> tuple[int, int]:
    """(parameter elements this process stores, elements of the whole module)."""
    from torch.distributed.tensor import DTensor

    local = total = 0
    for parameter in module.parameters():
        total += parameter.numel()
        local += parameter.to_local().numel() if isinstance(parameter, DTensor) else parameter.numel()
    return local, total
