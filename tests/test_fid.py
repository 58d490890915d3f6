"""FID's Inception-v3: layout parity with pytorch-fid, and the bench's set-level ``fid`` as a plumbing test.

The real weights (pt_inception-2015-12-05) ship in no package, so the bench test uses a randomly initialised
network: it checks the plumbing (features, Fréchet distance, report), not FID values.
"""

import json

import pytest
import torch
from safetensors.torch import save_file

from helpers import write_captioned_photos
from spire_ir.cli import main
from spire_ir.evaluation.inception import INCEPTION_FEATURES, FIDInceptionV3


def _random_inception(path, seed=0):
    torch.manual_seed(seed)
    net = FIDInceptionV3()
    with torch.no_grad():  # non-trivial batch-norm statistics, so that a wrong buffer mapping would show
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return net.eval()


def test_pool_features_of_any_size_and_the_layout_of_the_released_weights(tmp_path):
    net = _random_inception(tmp_path / "inception.safetensors")
    with torch.no_grad():
        features = net(torch.rand(2, 3, 64, 80))
    assert features.shape == (2, INCEPTION_FEATURES) and torch.isfinite(features).all()
    state = net.state_dict()
    # a few tensors of pt_inception-2015-12-05 (torchvision's Inception3 names), with their shapes
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.bn.running_var"].shape == (384,)
    convs = sum(1 for k in state if k.endswith("conv.weight"))
    assert convs == 94  # Inception-v3 without the auxiliary classifier


def test_matches_pytorch_fid_with_the_same_weights(tmp_path, monkeypatch):
    """pytorch-fid (optional; needs torchvision) built with our random weights gives the same features."""
    inception = pytest.importorskip("pytorch_fid.inception")
    ours = _random_inception(tmp_path / "inception.safetensors")
    state = {**ours.state_dict(), "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    monkeypatch.setattr(inception, "load_state_dict_from_url", lambda *a, **k: state)  # no download
    theirs = inception.InceptionV3(
        [3], resize_input=True, normalize_input=True, use_fid_inception=True
    ).eval()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        expected = theirs(x)[0].flatten(1)
        assert torch.allclose(ours(x), expected, atol=1e-4, rtol=1e-4)


def test_bench_fid_is_zero_for_identical_sets_and_grows_with_degradation(tmp_path, monkeypatch):
    """Plumbing test with random Inception weights (clearly not a real FID)."""
    photos = write_captioned_photos(tmp_path / "photos", 4, 72, 80)
    weights = tmp_path / "inception.safetensors"
    _random_inception(weights)
    monkeypatch.setenv("SPIRE_FID_WEIGHTS", str(weights))
    values = {}
    for setting, extra in (("none", []), ("parameterized", ["--prompt", "Denoise with sigma 0.1"])):
        bench, run = tmp_path / setting, tmp_path / f"run-{setting}"
        build = ["bench", "build", "--images", str(photos), "--n", "4", "--size", "64", "--setting", setting]
        assert main([*build, *extra, "-o", str(bench)]) == 0
        assert (
            main(
                ["bench", "run", str(bench), "--method", "identity", "--metrics", "psnr,fid", "-o", str(run)]
            )
            == 0
        )
        summary = json.loads((run / "summary.json").read_text())
        assert "fid" not in summary["unavailable"]
        fid = summary["set_metrics"]["fid"]
        assert fid["images"] == 4 and fid["lower_better"] and "Inception" in fid["features"]
        assert any("biased" in w for w in summary["warnings"])
        values[setting] = fid["value"]
    assert abs(values["none"]) < 1e-3 * max(1.0, values["parameterized"])
    assert values["parameterized"] > 0
    # the report's FID column holds the set metric, as the paper's Table 1 leads with it
    assert main(["bench", "report", str(tmp_path / "run-parameterized"), "-o", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "table.md").read_text().splitlines()
    assert table[0] == "| Method | Sem | Res | PSNR↑ | FID↓ |"
    assert table[2].endswith(f"| {values['parameterized']:.2f} |")


def test_wrong_weights_file_is_named(tmp_path, monkeypatch):
    from spire_ir.evaluation.metrics import inception_features

    save_file({"features.0.weight": torch.zeros(3)}, str(tmp_path / "alexnet.safetensors"))
    with pytest.raises(ValueError, match="not the FID Inception-v3"):
        inception_features(torch.rand(1, 3, 32, 32), weights=str(tmp_path / "alexnet.safetensors"))
