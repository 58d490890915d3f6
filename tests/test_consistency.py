"""Data consistency with the stated degradation: the linear solve against a dense one, the JPEG projection
against libjpeg, and the pipeline's switch."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from spire_ir.evaluation.metrics import psnr
from spire_ir.ops.image import gaussian_blur, gaussian_blur_adjoint, jpeg, libjpeg_table, resize_down_up
from spire_ir.pipeline.consistency import (
    QUANTIZATION_VARIANCE,
    _forward,
    consistency_plan,
    data_consistency,
    jpeg_consistency,
)
from spire_ir.testing import tiny_bridge_pipeline
from spire_ir.utils.images import quantize_8bit


def _photo(size: int = 128) -> torch.Tensor:
    from skimage import data

    array = data.astronaut()[40 : 40 + size, 180 : 180 + size]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float() / 255


def test_the_plan_names_what_each_prompt_gets():
    ops, noise = consistency_plan("Deblur with sigma 2.0, Upsample to 4.0, Denoise with sigma 0.05")
    assert [op.kind for op in ops] == ["deblur", "upsample"]
    assert noise == pytest.approx(0.05**2)
    assert consistency_plan("Dejpeg with quality 30") == 30
    for nothing in ("Remove all degradation", "Denoise with sigma 0.1", "Deblur with sigma 2.0, Dejpeg with "
                    "quality 40", "Deblur", "Upsample to 1.0", ""):  # fmt: skip
        assert consistency_plan(nothing) is None, nothing


@pytest.mark.parametrize("prompt", ["Deblur with sigma 1.2", "Upsample to 2.0, Denoise with sigma 0.02"])
def test_the_solve_equals_the_dense_normal_equations(prompt):
    """(AᵀA + λI) x* = Aᵀy + λ x̂ solved densely, A built column by column from the forward operator."""
    generator = torch.Generator().manual_seed(0)
    x_hat = 0.3 + 0.4 * torch.rand(1, 3, 12, 12, generator=generator)  # inside (0, 1): the clamp stays idle
    y = 0.3 + 0.4 * torch.rand(1, 3, 12, 12, generator=generator)
    ops, noise = consistency_plan(prompt)
    basis = torch.eye(x_hat.numel(), dtype=torch.float64).reshape(-1, 1, 3, 12, 12)
    a = torch.stack([_forward(e, ops).flatten() for e in basis], dim=1)  # (n, n), column j = A e_j
    lam = (noise + QUANTIZATION_VARIANCE) / 0.03**2
    rhs = a.T @ y.double().flatten() + lam * x_hat.double().flatten()
    dense = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[0], dtype=torch.float64), rhs)
    solved = data_consistency(x_hat, y, prompt, iterations=2000, tolerance=1e-7)
    if dense.min() > 0 and dense.max() < 1:
        assert (solved.double().flatten() - dense).abs().max() < 2e-3
    else:  # where the exact solution leaves [0, 1], the output is its clamp
        assert (solved.double().flatten() - dense.clamp(0, 1)).abs().max() < 2e-3


def test_a_noise_free_blur_is_undone_and_the_data_fit_tightens():
    x = _photo()
    y = quantize_8bit(gaussian_blur(x, 1.5))
    out = data_consistency(y, y, "Deblur with sigma 1.5")  # the identity restorer as x̂
    gain = float(psnr(out, x) - psnr(y, x))
    assert gain > 1.5, gain
    assert float((gaussian_blur(out, 1.5) - y).abs().mean()) < 0.3 * float((gaussian_blur(y, 1.5) - y).abs().mean())


def test_downscaling_consistency_corrects_what_a_sees_and_keeps_the_restorer_s_detail():
    x = _photo()
    y = quantize_8bit(resize_down_up(x, 4.0))
    smooth_error = gaussian_blur(torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)), 8.0)
    x_hat = (x + 0.05 * smooth_error / smooth_error.std()).clamp(0, 1)  # right detail, wrong low frequencies
    out = data_consistency(x_hat, y, "Upsample to 4.0")
    assert float(psnr(out, x)) > float(psnr(x_hat, x)) + 6
    err_before = float((resize_down_up(x_hat, 4.0) - y).pow(2).mean())
    err_after = float((resize_down_up(out, 4.0) - y).pow(2).mean())
    assert err_after < 0.05 * err_before
    assert float(psnr(out, x)) > float(psnr(y, x)) + 10  # the detail y lacks is x̂'s


def test_a_loud_stated_noise_keeps_the_restored_image():
    x = _photo(64)
    y = quantize_8bit(gaussian_blur(x, 1.5))
    x_hat = y  # far from consistent: y is blurred once more by A
    quiet = data_consistency(x_hat, y, "Deblur with sigma 1.5")
    loud = data_consistency(x_hat, y, "Deblur with sigma 1.5, Denoise with sigma 0.3")
    assert float(psnr(loud, x_hat)) > 45
    assert float(psnr(loud, x_hat)) > float(psnr(quiet, x_hat)) + 10


def test_libjpeg_tables_are_pillow_s_at_every_quality():
    array = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    for quality in range(1, 101):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality, subsampling=2)
        with Image.open(buffer) as pil:
            tables = pil.quantization
        assert np.array_equal(np.asarray(tables[0]).reshape(8, 8), libjpeg_table(quality)), quality
        assert np.array_equal(np.asarray(tables[1]).reshape(8, 8), libjpeg_table(quality, chroma=True)), quality


def test_the_jpeg_projection_keeps_the_true_image_and_helps_a_smooth_one():
    x = _photo(100)  # not a multiple of 8 or 16: edge blocks are padded as libjpeg pads them
    y = jpeg(x, 30)
    assert float(psnr(jpeg_consistency(x, y, 30), x)) > 45  # the true image lies in the constraint set
    assert float(psnr(jpeg_consistency(y, y, 30), y)) > 60  # so does the decoded JPEG
    smooth = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    projected = jpeg_consistency(smooth, y, 30)
    assert float(psnr(projected, x)) > float(psnr(smooth, x)) + 0.5
    again = jpeg_consistency(projected, y, 30)
    assert float(psnr(again, projected)) > 45  # a projection: applying it twice changes little


def test_the_pipeline_applies_consistency_only_where_asked():
    pipe = tiny_bridge_pipeline()
    x = _photo(32)
    y = quantize_8bit(gaussian_blur(x, 1.5))

    def run(prompt: str, **kwargs) -> torch.Tensor:
        return pipe(y, restoration_prompt=prompt, num_inference_steps=1, generator=torch.Generator().manual_seed(0),
                    output_type="pt", **kwargs).images  # fmt: skip

    assert pipe.config.default_consistency is False
    raw, fixed = run("Deblur with sigma 1.5"), run("Deblur with sigma 1.5", consistency=True)
    fit = [float((gaussian_blur(image, 1.5) - y).pow(2).mean()) for image in (raw, fixed)]
    assert fit[1] < 0.1 * fit[0]
    assert torch.equal(fixed, data_consistency(raw, y, "Deblur with sigma 1.5"))
    assert torch.equal(run("Denoise with sigma 0.1", consistency=True), run("Denoise with sigma 0.1"))
    assert torch.equal(run("Deblur with sigma 1.5", consistency=True, strength=0.5),
                       run("Deblur with sigma 1.5", strength=0.5))  # fmt: skip


@pytest.mark.parametrize("sigma", [0.6, 2.5])
def test_the_blur_adjoint_is_the_adjoint(sigma):
    """⟨A x, r⟩ = ⟨x, Aᵀ r⟩, and Aᵀ equals autograd's vector-Jacobian product through the blur."""
    generator = torch.Generator().manual_seed(1)
    x, r = torch.rand(2, 1, 3, 40, 37, generator=generator, dtype=torch.float64)
    adjoint = gaussian_blur_adjoint(r, sigma)
    assert float((gaussian_blur(x, sigma) * r).sum()) == pytest.approx(float((x * adjoint).sum()), rel=1e-12)
    probe = torch.zeros_like(x, requires_grad=True)
    (reference,) = torch.autograd.grad(gaussian_blur(probe, sigma), probe, grad_outputs=r)
    assert torch.allclose(adjoint, reference, atol=1e-12)
