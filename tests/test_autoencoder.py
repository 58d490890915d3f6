import pytest
import torch
import torch.nn.functional as F

from helpers import make_photo
from spire_ir.models.autoencoder import SpireAutoencoderKL, load_vae

SHAPE = dict(
    block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=6,
)  # fmt: skip


def _photos(n=6, size=32):
    return torch.cat([make_photo(size, size, seed=i) for i in range(n)])


def test_pca_start_reconstructs_exactly_as_the_linear_projection():
    torch.manual_seed(0)
    vae = SpireAutoencoderKL(**SHAPE).eval()
    x = _photos()
    explained = vae.init_from_patches(x)
    assert explained.shape == (6,) and 0.9 < float(explained.sum()) <= 1.0
    # the same projection computed independently: top-6 principal components of the 2 × 2 × 3 patches
    patches = F.pixel_unshuffle(x.double() * 2 - 1, 2).permute(0, 2, 3, 1).reshape(-1, 12)
    mean = patches.mean(0)
    _, _, v = torch.linalg.svd(patches - mean, full_matrices=False)
    projected = (patches - mean) @ v[:6].T @ v[:6] + mean
    expected = F.pixel_shuffle(projected.reshape(6, 16, 16, 12).permute(0, 3, 1, 2), 2)
    with torch.no_grad():
        z = vae.encode(x * 2 - 1).latent_dist.mode()
        recon = vae.decode(z).sample
    assert torch.allclose(recon.double(), expected, atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(6), atol=0.05)  # whitened latents
    with torch.no_grad():
        std = vae.encode(x * 2 - 1).latent_dist.std
    assert float(std.max()) < 0.01  # the posterior starts nearly deterministic


def test_without_shortcut_it_is_diffusers_autoencoderkl():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    ours = SpireAutoencoderKL(**SHAPE, shortcut=False, use_quant_conv=True, use_post_quant_conv=True).eval()
    theirs = AutoencoderKL(**SHAPE, mid_block_add_attention=False).eval()
    theirs.load_state_dict(ours.state_dict())
    x = _photos(2) * 2 - 1
    with torch.no_grad():
        a = ours.decode(ours.encode(x).latent_dist.mode()).sample
        b = theirs.decode(theirs.encode(x).latent_dist.mode()).sample
    assert torch.equal(a, b)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    vae = SpireAutoencoderKL(**SHAPE).eval()
    vae.init_from_patches(_photos())
    with torch.no_grad():
        torch.nn.init.normal_(vae.decoder.body.conv_out.weight, std=0.05)  # a trained-looking residual
    vae.save_pretrained(tmp_path / "vae")
    loaded = load_vae(tmp_path / "vae")
    assert type(loaded) is SpireAutoencoderKL
    z = torch.randn(1, 6, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.decode(z).sample, vae.decode(z).sample)


def test_tiled_decode_goes_through_the_shortcut():
    torch.manual_seed(0)
    vae = SpireAutoencoderKL(**SHAPE).eval()
    vae.init_from_patches(_photos())  # the PCA start is pointwise, so tiles must agree exactly with the whole
    z = torch.randn(1, 6, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = vae.decode(z).sample
        vae.enable_tiling()
        vae.tile_sample_min_size, vae.tile_latent_min_size = 32, 16
        tiled = vae.decode(z).sample
    assert float(whole.abs().mean()) > 0.1
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_pca_start_needs_the_shortcut():
    with pytest.raises(ValueError, match="shortcut=True"):
        SpireAutoencoderKL(**SHAPE, shortcut=False).init_from_patches(_photos(1))


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_latent_scaling_gives_channel_stds_in_proportion_to_pixel_stds(tmp_path, power):
    from spire_ir.models.autoencoder import from_model_latents, set_latent_scaling, to_model_latents

    torch.manual_seed(0)
    vae = SpireAutoencoderKL(**SHAPE).eval()
    x = _photos()
    vae.init_from_patches(x)
    target = set_latent_scaling(vae, x, power)
    with torch.no_grad():
        z = vae.encode(x * 2 - 1).latent_dist.mean
    model = to_model_latents(vae, z)
    measured = model.std(dim=(0, 2, 3))
    assert torch.allclose(measured, target, rtol=1e-3)
    assert abs(float(model.mean())) < 1e-4 and abs(float(target.pow(2).mean()) - 1) < 1e-5
    # the PCA start: a channel's pixel std is the square root of its eigenvalue, so stds fall with the component
    # index for power > 0, and are all 1 (whitening) for power 0
    if power == 0:
        assert torch.allclose(target, torch.ones(6), atol=1e-4)
    else:
        assert bool((target[:-1] >= target[1:] - 1e-4).all()) and float(target[0] / target[-1]) > 2
    assert torch.allclose(from_model_latents(vae, model), z, atol=1e-5)
    vae.save_pretrained(tmp_path / "vae")  # the scaling travels in the config
    reloaded = load_vae(tmp_path / "vae")
    assert torch.allclose(to_model_latents(reloaded, z), model, atol=1e-5)


def test_without_latent_stats_the_model_latents_are_scaled_only():
    from spire_ir.models.autoencoder import from_model_latents, to_model_latents

    vae = SpireAutoencoderKL(**SHAPE, scaling_factor=0.5)
    z = torch.randn(2, 6, 4, 4)
    assert torch.equal(to_model_latents(vae, z), z * 0.5)
    assert torch.equal(from_model_latents(vae, z * 0.5), z)


@pytest.mark.parametrize("power", [0.0, 1.0])
def test_latent_pixel_weights_match_the_pixel_energy_of_a_unit_latent_step(power):
    from spire_ir.models.autoencoder import from_model_latents, latent_pixel_weights, set_latent_scaling

    torch.manual_seed(0)
    vae = SpireAutoencoderKL(**SHAPE).eval()
    x = _photos()
    vae.init_from_patches(x)
    set_latent_scaling(vae, x, power)
    weights = latent_pixel_weights(vae)
    # independently: step each model-space channel by 1 and measure the change of the decoder's linear path
    energy = []
    with torch.no_grad():
        zero = vae.decoder.proj(from_model_latents(vae, torch.zeros(1, 6, 1, 1)))
        for c in range(6):
            step = torch.zeros(1, 6, 1, 1)
            step[0, c] = 1.0
            energy.append(float((vae.decoder.proj(from_model_latents(vae, step)) - zero).pow(2).sum()))
    energy = torch.tensor(energy)
    assert torch.allclose(weights, energy / energy.mean(), rtol=1e-4)
    if power == 1.0:  # natural proportions already make the model-space MSE a pixel-space MSE
        assert torch.allclose(weights, torch.ones(6), rtol=1e-3)
    else:  # whitened: the first principal component carries most of the picture
        assert float(weights[0]) > 2 and float(weights[0]) == float(weights.max())
    assert latent_pixel_weights(SpireAutoencoderKL(**SHAPE, shortcut=False)) is None
