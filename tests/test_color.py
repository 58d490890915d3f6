import pytest
import torch

from spire_ir.pipeline.color import _low_pass, adain_color_fix, color_fix, wavelet_color_fix


def test_wavelet_strips_equal_the_whole_image_result():
    g = torch.Generator().manual_seed(0)
    image, reference = torch.rand(1, 3, 300, 64, generator=g), torch.rand(1, 3, 300, 64, generator=g)
    whole = (image - _low_pass(image, 5) + _low_pass(reference, 5)).clamp(0, 1)
    assert torch.equal(wavelet_color_fix(image, reference, strip=70), whole)


def test_wavelet_takes_colour_from_reference_and_detail_from_image():
    g = torch.Generator().manual_seed(1)
    detail = torch.rand(1, 3, 128, 128, generator=g) * 0.2
    image = detail + 0.2  # dark, detailed
    reference = torch.full_like(image, 0.7)  # bright, flat
    fixed = wavelet_color_fix(image, reference)
    assert fixed.mean().item() == pytest.approx(0.7, abs=0.02)
    assert (fixed - fixed.mean()).std() > 0.5 * (image - image.mean()).std()


def test_adain_matches_statistics():
    g = torch.Generator().manual_seed(2)
    image, reference = (
        torch.rand(2, 3, 32, 32, generator=g),
        torch.rand(2, 3, 32, 32, generator=g) * 0.5 + 0.2,
    )
    fixed = adain_color_fix(image, reference)
    assert torch.allclose(fixed.mean((2, 3)), reference.mean((2, 3)), atol=1e-4)
    assert torch.allclose(fixed.std((2, 3)), reference.std((2, 3)), atol=1e-3)


def test_rgba_is_rejected_cleanly():
    with pytest.raises(ValueError, match="RGB"):
        color_fix(torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="unknown colour fix"):
        color_fix(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), "magic")
