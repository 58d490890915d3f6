"""Self-attention in windows (spire_ir.models.attention) and the pipeline's attention_window."""

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from helpers import load_with_defaults, make_photo
from spire_ir.models.attention import WindowedSelfAttnProcessor
from spire_ir.testing import tiny_bridge_pipeline


def _attention() -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=16, heads=2, dim_head=8).eval()


@torch.no_grad()
def test_each_window_attends_only_to_itself():
    attn = _attention()
    h, w = 6, 10
    tokens = torch.randn(2, h * w, 16, generator=torch.Generator().manual_seed(1))
    processor = WindowedSelfAttnProcessor(AttnProcessor2_0())
    processor.grid, processor.window = (h, w), 4  # rows split 3 + 3, columns 4 + 3 + 3
    out = processor(attn, tokens).view(2, h, w, 16)
    grid = tokens.view(2, h, w, 16)
    for rows in (slice(0, 3), slice(3, 6)):
        for cols in (slice(0, 4), slice(4, 7), slice(7, 10)):
            window = grid[:, rows, cols].reshape(2, -1, 16)
            alone = AttnProcessor2_0()(attn, window).view(2, rows.stop - rows.start, cols.stop - cols.start, 16)
            torch.testing.assert_close(out[:, rows, cols], alone, atol=1e-5, rtol=1e-5)
    # a grid no larger than the window, and cross-attention, are left to the processor it replaced
    processor.window = 10
    torch.testing.assert_close(processor(attn, tokens), AttnProcessor2_0()(attn, tokens), atol=0, rtol=0)
    processor.window = 4
    context = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        processor(attn, tokens, context), AttnProcessor2_0()(attn, tokens, context), atol=0, rtol=0
    )


@pytest.fixture(scope="module")
def bridge():
    return tiny_bridge_pipeline(seed=0)


def _restore(pipe, image, **kwargs):
    return pipe(image, prompt="a cat", restoration_prompt="Denoise with sigma 0.05", num_inference_steps=2,
                generator=torch.Generator().manual_seed(3), output_type="pt", **kwargs).images  # fmt: skip


def test_the_window_changes_only_images_larger_than_it(bridge):
    image = make_photo(40, 56)
    whole = _restore(bridge, image, attention_window=0)
    assert bridge.config.default_attention_window == 0
    assert torch.equal(_restore(bridge, image), whole)  # the folder default: whole
    assert torch.equal(_restore(bridge, image, attention_window=56), whole)  # the image fits one window
    windowed = _restore(bridge, image, attention_window=16)
    assert windowed.shape == whole.shape
    assert (windowed - whole).abs().max() > 1e-4  # 16 px windows: 8 latent cells, the 20 × 28 grid cut in 3 × 4
    # the context restores the processors and removes its hooks: a later whole call is unchanged
    processors = {name: type(p) for name, p in bridge.unet.attn_processors.items()}
    assert WindowedSelfAttnProcessor not in processors.values()
    assert torch.equal(_restore(bridge, image, attention_window=0), whole)


def test_the_folder_default_is_honoured_and_bad_values_are_refused(bridge, tmp_path):
    image = make_photo(40, 56)
    loaded = load_with_defaults(bridge, tmp_path / "model", default_attention_window=16)
    assert loaded.config.default_attention_window == 16
    torch.testing.assert_close(_restore(loaded, image), _restore(bridge, image, attention_window=16), atol=0, rtol=0)
    with pytest.raises(ValueError, match="attention_window must be a whole number of pixels >= 0"):
        _restore(bridge, image, attention_window=-8)
