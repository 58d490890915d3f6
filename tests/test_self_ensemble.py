"""Geometric self-ensemble: the eight dihedral views, and the pipeline's average of their restorations."""

import pytest
import torch

from helpers import load_with_defaults, make_photo
from spire_ir.pipeline.ensemble import dihedral
from spire_ir.testing import tiny_bridge_pipeline


def test_the_eight_views_are_distinct_and_each_inverse_undoes_its_view():
    image = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    views = [dihedral(image, v) for v in range(8)]
    for v, viewed in enumerate(views):
        assert viewed.shape == ((2, 3, 4, 6) if v < 4 else (2, 3, 6, 4))
        assert torch.equal(dihedral(viewed, v, inverse=True), image)
    flat = {tuple(view.flatten().tolist()) for view in views}
    assert len(flat) == 8
    assert torch.equal(views[1], image.flip(-1)) and torch.equal(views[3], image.flip(-2))
    with pytest.raises(ValueError, match="view must be in 0-7"):
        dihedral(image, 8)


@pytest.fixture(scope="module")
def bridge():
    return tiny_bridge_pipeline(seed=0)


@pytest.mark.parametrize("views", [2, 8])
def test_output_is_the_mean_of_the_restored_views_undone(bridge, views):
    image = make_photo(40, 56)  # not square: views 4-7 sample a 56 × 40 image
    kwargs = dict(prompt="a cat", restoration_prompt="Denoise with sigma 0.05", num_inference_steps=2,
                  output_type="pt", consistency=False)  # fmt: skip
    out = bridge(image, self_ensemble=views, generator=torch.Generator().manual_seed(3), **kwargs).images
    generator = torch.Generator().manual_seed(3)  # the views draw their start noise from it in turn
    expected = sum(
        dihedral(bridge(dihedral(image, v), generator=generator, **kwargs).images, v, inverse=True)
        for v in range(views)
    ) / views
    assert out.shape == image.shape
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    single = bridge(image, generator=torch.Generator().manual_seed(3), **kwargs).images
    assert (out - single).abs().max() > 1e-3  # the other views change the result


def test_the_model_folder_sets_the_default_and_progress_counts_every_view(bridge, tmp_path):
    loaded = load_with_defaults(bridge, tmp_path / "m", default_self_ensemble=4)
    assert loaded.config.default_self_ensemble == 4
    image = make_photo(32, 32)
    calls = []
    default = loaded(image, num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(0),
                     callback=lambda step, total: calls.append((step, total))).images  # fmt: skip
    assert calls == [(step, 8) for step in range(1, 9)]
    explicit = loaded(image, num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(0),
                      self_ensemble=4).images  # fmt: skip
    assert torch.equal(default, explicit)
    with pytest.raises(ValueError, match="self_ensemble must be one of 1, 2, 4, 8"):
        loaded(image, self_ensemble=3)
