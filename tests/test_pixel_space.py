"""The lossless pixel space, the numeric channel of c_r, and the bridge adaptor at initialisation."""

import pytest
import torch

from helpers import make_photo
from spire_ir.evaluation.metrics import psnr
from spire_ir.models.adaptor import modulate_unet
from spire_ir.models.autoencoder import load_vae, vae_latent_channels, vae_scale_factor
from spire_ir.models.numeric import NUMERIC_DIM, restoration_numbers
from spire_ir.models.pixel_space import SpaceToDepthAutoencoder
from spire_ir.testing import tiny_bridge_components


def test_round_trip_is_lossless_and_latents_are_pixels(tmp_path):
    vae = SpaceToDepthAutoencoder(factor=2)
    x = make_photo(40, 56)
    latent = vae.encode(x * 2 - 1).latent_dist.mode()
    assert latent.shape == (1, 12, 20, 28)
    assert torch.allclose(latent[:, :, 3, 5].view(3, 4), x[0, :, 6:8, 10:12].reshape(3, 4))  # pixel units
    back = (vae.decode(latent).sample + 1) / 2
    assert float(psnr(back, x)) >= 60
    vae.save_pretrained(tmp_path / "vae")
    loaded = load_vae(tmp_path / "vae")
    assert isinstance(loaded, SpaceToDepthAutoencoder)
    assert (vae_scale_factor(loaded), vae_latent_channels(loaded)) == (2, 12)
    with pytest.raises(ValueError, match="multiple of the factor"):
        vae.encode(torch.zeros(1, 3, 5, 6))


def test_numeric_codes_follow_the_numbers_and_fall_back_to_blind():
    codes = restoration_numbers([
        "Denoise with sigma 0.05", "Denoise with sigma 0.10", "Denoise", "Remove all degradation",
        "make it nice", "Deblur with sigma 50",
    ])  # fmt: skip
    assert codes.shape == (6, NUMERIC_DIM)
    assert not torch.equal(codes[0], codes[1])  # the number is read
    assert codes[2, -1] == 0 and codes[3, -1] == 1 and codes[4, -1] == 1  # unparseable -> the blind code
    assert torch.equal(codes[3], codes[4])
    assert torch.equal(codes[5], codes[3])  # out of range -> blind, not an error


def test_fresh_bridge_adaptor_leaves_the_prior_unchanged():
    parts = tiny_bridge_components(seed=0)
    unet, adaptor = parts["unet"], parts["adaptor"]
    g = torch.Generator().manual_seed(0)
    x_t, y = torch.rand(2, 12, 16, 16, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    t = torch.tensor([50.0, 20.0])
    e = torch.randn(2, 77, 32, generator=g)
    plain = unet(x_t, t, encoder_hidden_states=e).sample
    modulation = adaptor(
        x_t, t, y, e, numeric=restoration_numbers(["Denoise with sigma 0.1", "Remove all degradation"])
    )
    with modulate_unet(unet, modulation):
        fused = unet(x_t, t, encoder_hidden_states=e).sample
    assert torch.equal(plain, fused)
    with pytest.raises(ValueError, match="numeric"):
        adaptor(x_t, t, y, e)


def test_unshuffle_stem_starts_with_y_itself_in_the_first_channels():
    parts = tiny_bridge_components(seed=0)
    stem = parts["adaptor"].controlnet.controlnet_cond_embedding
    y = make_photo(32, 32)
    h = stem.proj(torch.nn.functional.pixel_unshuffle(y, 2))
    assert torch.allclose(h[:, :12], parts["vae"].encode(y * 2 - 1).latent_dist.mode(), atol=1e-6)
