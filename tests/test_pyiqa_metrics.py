"""MUSIQ and MANIQA through the optional pyiqa extra, as plumbing tests with random weights.

pyiqa (non-commercial licence, needs torchvision) is not in the default install, so most tests here skip in CI;
run them where the extra is installed. The released checkpoints ship in no package: the networks here are randomly
initialised, which checks the loading and scoring path, not quality.
"""

from unittest import mock

import pytest
import torch
from safetensors.torch import save_file

from spire_ir.evaluation.metrics import MetricSettings, MetricUnavailable, create_metric


def _pyiqa_reference(name):
    """pyiqa's own metric object with random weights (no download)."""
    pyiqa = pytest.importorskip("pyiqa")
    timm = pytest.importorskip("timm")
    create = timm.create_model
    torch.manual_seed(0)
    with mock.patch.object(timm, "create_model", lambda *a, **k: create(*a, **{**k, "pretrained": False})):
        return pyiqa.create_metric(name, pretrained=False, device="cpu").eval()


@pytest.mark.parametrize("name", ["musiq", "maniqa"])
def test_scores_match_pyiqa_with_the_same_weights_and_repeat(tmp_path, name):
    reference = _pyiqa_reference(name)
    save_file(
        {k: v.contiguous() for k, v in reference.net.state_dict().items()},
        str(tmp_path / f"{name}.safetensors"),
    )
    metric = create_metric(name, settings=MetricSettings(iqa_weights=str(tmp_path)))
    assert not metric.lower_better and not metric.full_reference
    images = torch.rand(2, 3, 224, 256, generator=torch.Generator().manual_seed(1))
    scores = metric(images)
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    assert torch.equal(metric(images), scores)  # MANIQA's random crops are seeded
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        expected = reference(images).flatten().double()
    assert torch.allclose(scores, expected, atol=1e-5)


def test_a_checkpoint_of_another_network_is_named(tmp_path):
    pytest.importorskip("pyiqa")
    save_file({"features.0.weight": torch.zeros(3)}, str(tmp_path / "musiq.safetensors"))
    with pytest.raises(ValueError, match="is not pyiqa's musiq network"):
        create_metric("musiq", settings=MetricSettings(iqa_weights=str(tmp_path)))


def test_without_the_extra_the_metric_says_how_to_install_it(tmp_path):
    try:
        import pyiqa  # noqa: F401

        pytest.skip("pyiqa is installed")
    except ImportError:
        pass
    save_file({"w": torch.zeros(1)}, str(tmp_path / "maniqa.safetensors"))
    with pytest.raises(MetricUnavailable, match=r"maniqa: needs the optional extra pyiqa.*spire-ir\[pyiqa\]"):
        create_metric("maniqa", settings=MetricSettings(iqa_weights=str(tmp_path)))
