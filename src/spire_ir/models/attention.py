"""Self-attention in windows the size of the training crop.

spire-tiny's prior and adaptor attend at their two coarsest levels, and they were trained on 128² crops: 16² and
8² tokens there. On a 512² photo the same layers attend over 64² and 32² tokens, sixteen times what the weights
saw, at a cost that grows with the square of the image's area (a quarter of the time of a 512² restoration).
:func:`attention_windows` restricts each *self*-attention to windows of at most ``window`` latent cells a side,
the token grid cut into near-equal windows; cross-attention on the prompts is unchanged, and so is every
convolution, so there are no tile seams. At the training crop size, or smaller, it changes nothing.

    with attention_windows([pipe.unet, pipe.adaptor.controlnet], window=64):   # 128 px at f = 2
        ...
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

__all__ = ["WindowedSelfAttnProcessor", "attention_windows"]

_LOCK = threading.RLock()  # the processors are swapped on shared modules: one windowed call at a time


class WindowedSelfAttnProcessor:
    """An attention processor that runs self-attention window by window, and defers anything else (cross-attention,
    masks, norms it does not handle) to the processor it replaces.

    Args:
        fallback: the processor it replaces.
        window: the largest window side, in tokens of the level it runs at (set per call by
            :func:`attention_windows`, with ``grid``, the level's (h, w) token grid).
    """

    def __init__(self, fallback) -> None:
        self.fallback = fallback
        self.window: float | None = None
        self.grid: tuple[int, int] | None = None

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        plain = (
            encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 3
            or attn.spatial_norm is not None or attn.group_norm is not None
            or attn.norm_q is not None or attn.norm_k is not None
        )  # fmt: skip
        h, w = self.grid or (0, 0)
        if plain or self.window is None or h * w != hidden_states.shape[1] or max(h, w) <= self.window:
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        batch, _, _ = hidden_states.shape
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        heads = attn.heads
        head_dim = query.shape[-1] // heads
        query, key, value = (t.view(batch, h, w, heads, head_dim) for t in (query, key, value))
        rows = torch.arange(h).tensor_split(math.ceil(h / self.window))
        cols = torch.arange(w).tensor_split(math.ceil(w / self.window))
        out = torch.empty_like(query)
        for row in rows:
            for col in cols:
                cell = (slice(None), slice(int(row[0]), int(row[-1]) + 1), slice(int(col[0]), int(col[-1]) + 1))
                q, k, v = (t[cell].reshape(batch, -1, heads, head_dim).transpose(1, 2) for t in (query, key, value))
                attended = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
                out[cell] = attended.transpose(1, 2).reshape(batch, len(row), len(col), heads, head_dim)
        out = attn.to_out[1](attn.to_out[0](out.reshape(batch, h * w, heads * head_dim)))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


@contextmanager
def attention_windows(models: Iterable[nn.Module], window: int | None) -> Iterator[None]:
    """Within the block, every self-attention of ``models`` runs in windows of at most ``window`` cells of the
    model's input grid a side (scaled to each level: half as many tokens per halving); None or 0 leaves them
    whole.

    Args:
        models: modules whose first argument is the latent (B, C, h, w), e.g. a ``UNet2DConditionModel`` and a
            ``ControlNetModel``; each of their ``Transformer2DModel`` blocks is windowed.
        window: the window side in latent cells (the training crop size over the VAE factor).
    """
    if not window:
        yield
        return
    handles, replaced = [], []
    with _LOCK:
        try:
            for model in models:
                latent: dict[str, int] = {}

                def record(module, args, kwargs, latent=latent):
                    sample = args[0] if args else kwargs["sample"]
                    latent["h"] = sample.shape[-2]

                handles.append(model.register_forward_pre_hook(record, with_kwargs=True))
                for module in model.modules():
                    if isinstance(module, Transformer2DModel):
                        handles.append(_window_blocks(module, window, latent, replaced))
            yield
        finally:
            for handle in handles:
                handle.remove()
            for attn, processor in replaced:
                attn.set_processor(processor)


def _window_blocks(transformer: Transformer2DModel, window: int, latent: dict, replaced: list):
    """Give each self-attention of ``transformer`` a windowed processor (recording the old one in ``replaced``),
    and return the handle of a pre-hook that tells them, per call, the grid and the window in its tokens."""
    processors = []
    for block in transformer.transformer_blocks:
        processor = WindowedSelfAttnProcessor(block.attn1.processor)
        replaced.append((block.attn1, block.attn1.processor))
        block.attn1.set_processor(processor)
        processors.append(processor)

    def grid(module, args, kwargs):
        features = args[0] if args else kwargs["hidden_states"]
        height, width = features.shape[-2:]
        for processor in processors:
            processor.grid = (height, width)
            processor.window = window * height / latent.get("h", height)

    return transformer.register_forward_pre_hook(grid, with_kwargs=True)
