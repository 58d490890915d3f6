"""recipes/spire-tiny/grow.py: growing a pipeline to two resnets per level keeps its restorations."""

import pytest
import torch

from helpers import load_recipe_script, make_photo
from spire_ir.pipeline import SpirePipeline
from spire_ir.testing import tiny_bridge_components


def _load_grow():
    return load_recipe_script("grow.py")


@pytest.fixture(scope="module")
def trained():
    """A one-resnet-per-level bridge pipeline with every weight moved off its start (as if trained)."""
    components = tiny_bridge_components(seed=0, layers_per_block=1)
    unet, adaptor = components["unet"], components["adaptor"]
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in [*unet.parameters(), *adaptor.parameters()]:
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    components.update(unet=unet.eval(), adaptor=adaptor.eval())
    pipe = SpirePipeline(**components, default_color_fix="none")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _restore(pipe):
    return pipe(
        make_photo(32, 48), prompt="a cat", restoration_prompt="Denoise with sigma 0.1", num_inference_steps=2,
        output_type="pt", consistency=False, generator=torch.Generator().manual_seed(3),
    ).images  # fmt: skip


def test_the_grown_pipeline_restores_as_the_source_and_has_two_resnets_per_level(trained):
    grow = _load_grow()
    unet, adaptor = grow.grow(trained, seed=0)
    assert unet.config.layers_per_block == 2 and all(len(b.resnets) == 2 for b in unet.down_blocks)
    assert all(len(b.resnets) == 3 for b in unet.up_blocks)
    assert len(adaptor.fusion_convs) == 2 * len(trained.adaptor.fusion_convs) - 3  # one more skip per level
    adaptor.check_fits(unet)
    components = dict(trained.components, unet=unet.eval(), adaptor=adaptor.eval())
    grown = SpirePipeline(**components, default_color_fix="none")
    grown.set_progress_bar_config(disable=True)
    before, after = _restore(trained), _restore(grown)
    assert (before - after).abs().max() < 1e-5
    assert before.std() > 0.05  # the pipeline does something, so equality is not trivial


def test_the_new_layers_learn_from_the_first_step(trained):
    grow = _load_grow()
    unet, adaptor = grow.grow(trained, seed=0)
    out = grow.steered_output(unet.train(), adaptor.train(), seed=2, size=32)
    out.float().pow(2).mean().backward()
    for name in ("down_blocks.0.resnets.1.conv2.weight", "up_blocks.0.resnets.1.conv2.weight"):
        grad = unet.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_a_network_that_is_not_one_resnet_per_level_is_refused():
    grow = _load_grow()
    from spire_ir.testing import tiny_bridge_pipeline

    with pytest.raises(SystemExit, match="expects layers_per_block 1, the source has 2"):
        grow.grow(tiny_bridge_pipeline(seed=0), seed=0)
