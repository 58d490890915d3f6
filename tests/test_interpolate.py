"""recipes/spire-tiny/interpolate.py: weight-space interpolation of two pipelines of one architecture."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import load_recipe_script
from spire_ir.testing import tiny_bridge_pipeline

SCRIPT = Path(__file__).resolve().parents[1] / "recipes" / "spire-tiny" / "interpolate.py"
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _load():
    return load_recipe_script("interpolate.py")


def _half(pipe) -> dict[str, torch.Tensor]:
    return {k: v.half() for k, v in pipe.unet.state_dict().items()}


def test_the_ends_are_exact_and_the_middle_is_the_mean():
    interpolate = _load().interpolate
    a, b = _half(tiny_bridge_pipeline(seed=0)), _half(tiny_bridge_pipeline(seed=1))
    assert all(torch.equal(interpolate(a, b, 0.0)[k], a[k]) for k in a)
    assert all(torch.equal(interpolate(a, b, 1.0)[k], b[k]) for k in b)
    middle = interpolate(a, b, 0.5)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert differ  # the two seeds give different weights, so the check below is not trivial
    for key in differ:
        expected = (a[key].float() + b[key].float()) / 2
        assert middle[key].dtype == torch.float16
        assert (middle[key].float() - expected).abs().max() <= 1e-3 * expected.abs().max() + 1e-6, key


def test_pipelines_of_two_architectures_are_refused():
    interpolate = _load().interpolate
    a = _half(tiny_bridge_pipeline(seed=0))
    b = {k: v for k, v in a.items() if "up_blocks.0" not in k}
    with pytest.raises(ValueError, match="differ in architecture"):
        interpolate(a, b, 0.5)


def test_the_script_writes_a_folder_that_loads_and_keeps_its_inputs(tmp_path):
    for seed in (0, 1):
        tiny_bridge_pipeline(seed=seed).save_pretrained(tmp_path / f"p{seed}")
    before = (tmp_path / "p1" / "unet" / WEIGHTS).read_bytes()
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "p0"), str(tmp_path / "p1"), "--alpha", "0.25",
                           "-o", str(tmp_path / "mix")], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "p1" / "unet" / WEIGHTS).read_bytes() == before
    a, b = load_file(str(tmp_path / "p0" / "adaptor" / WEIGHTS)), load_file(str(tmp_path / "p1" / "adaptor" / WEIGHTS))
    mix = load_file(str(tmp_path / "mix" / "adaptor" / WEIGHTS))
    key = next(k for k in a if not torch.equal(a[k], b[k]))
    assert torch.allclose(mix[key], 0.75 * a[key] + 0.25 * b[key], atol=1e-6)
    again = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "p0"), str(tmp_path / "p1"), "--alpha", "0.5",
                            "-o", str(tmp_path / "mix")], capture_output=True, text=True)  # fmt: skip
    assert again.returncode != 0 and "exists" in again.stderr
