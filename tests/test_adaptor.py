import pytest
import torch
import torch.nn.functional as F
from diffusers import ControlNetModel, UNet2DConditionModel
from torch import nn

from helpers import make_photo
from spire_ir.models import SpireAdaptor, modulate_unet, skip_channels
from spire_ir.models.autoencoder import SpireAutoencoderKL, set_latent_scaling, to_model_latents
from spire_ir.testing import TINY_UNET, tiny_components


@pytest.fixture(scope="module")
def parts():
    return tiny_components(seed=0)


def _inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 4, 8, 8, generator=g)
    y = torch.rand(batch, 3, 64, 64, generator=g)
    e_r = torch.randn(batch, 77, 32, generator=g)
    e_s = torch.randn(batch, 77, 32, generator=g)
    return z, y, e_r, e_s


def _randomise_fusion(adaptor, std=0.05):
    with torch.no_grad():
        for conv in adaptor.fusion_convs:
            nn.init.normal_(conv.weight, std=std, generator=torch.Generator().manual_seed(1))


def test_skip_count_comes_from_the_unet_config():
    assert skip_channels(TINY_UNET) == [32, 32, 32, 32, 64, 64, 64]
    sd15 = {"block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2}
    assert len(skip_channels(sd15)) == 13  # 12 skips + mid, as in the SD 1.5 table
    assert skip_channels(sd15)[:4] == [320, 320, 320, 320] and skip_channels(sd15)[-1] == 1280


@pytest.mark.parametrize(
    ("fusion", "stem"), [("modulation", "conv"), ("additive", "conv"), ("modulation", "unshuffle")]
)
def test_zero_init_identity(parts, fusion, stem):
    unet = parts["unet"]
    adaptor = SpireAdaptor.from_unet(unet, fusion=fusion, condition_stem=stem)
    z, y, e_r, e_s = _inputs()
    reference = unet(z, 500, e_s).sample
    with modulate_unet(unet, adaptor(z, 500, y, e_r)):
        fused = unet(z, 500, e_s).sample
    assert torch.equal(fused, reference)


def test_modulation_changes_output_and_hooks_are_removed(parts):
    unet, adaptor = parts["unet"], SpireAdaptor.from_unet(parts["unet"])
    _randomise_fusion(adaptor)
    z, y, e_r, e_s = _inputs()
    reference = unet(z, 500, e_s).sample
    with modulate_unet(unet, adaptor(z, 500, y, e_r)):
        fused = unet(z, 500, e_s).sample
    assert (fused - reference).abs().max() > 1e-3
    assert torch.equal(unet(z, 500, e_s).sample, reference)  # hooks gone after the block


def test_additive_fusion_equals_diffusers_controlnet_residuals(parts):
    unet = parts["unet"]
    adaptor = SpireAdaptor.from_unet(unet, fusion="additive")
    _randomise_fusion(adaptor)
    z, y, e_r, e_s = _inputs()
    modulation = adaptor(z, 500, y, e_r)
    with modulate_unet(unet, modulation):
        fused = unet(z, 500, e_s).sample
    native = unet(
        z,
        500,
        e_s,
        down_block_additional_residuals=modulation.betas[:-1],
        mid_block_additional_residual=modulation.betas[-1],
    ).sample
    assert torch.allclose(fused, native, atol=1e-6)


def test_modulation_is_one_plus_gamma_times_f_plus_beta(parts):
    unet = parts["unet"]
    adaptor = SpireAdaptor.from_unet(unet)
    _randomise_fusion(adaptor)
    z, y, e_r, e_s = _inputs()
    modulation = adaptor(z, 500, y, e_r)

    def recorder(store):
        def hook(module, args, kwargs):
            store.append(kwargs["res_hidden_states_tuple"])

        return hook

    plain, fused = [], []
    handle = unet.up_blocks[0].register_forward_pre_hook(recorder(plain), with_kwargs=True)
    unet(z, 500, e_s)
    handle.remove()
    with modulate_unet(unet, modulation):
        handle = unet.up_blocks[0].register_forward_pre_hook(
            recorder(fused), with_kwargs=True
        )  # runs after ours
        unet(z, 500, e_s)
        handle.remove()
    # up block 0 consumes the last len(resnets) = 3 of the 6 down skips: indices 3, 4, 5
    for offset, (f, f_hat) in enumerate(zip(plain[0], fused[0], strict=True)):
        index = 3 + offset
        expected = (1 + modulation.gammas[index]) * f + modulation.betas[index]
        assert torch.allclose(f_hat, expected, atol=1e-6)


@pytest.mark.parametrize("stem", ["conv", "unshuffle"])
def test_gradients_reach_every_adaptor_part(parts, stem):
    # that training leaves the prior's parameters without gradients is checked where it is done, in the training
    # task (tests/test_training.py::test_a_base_that_loads_trainable_is_frozen_by_the_task)
    unet = parts["unet"]
    adaptor = SpireAdaptor.from_unet(unet, condition_stem=stem)
    adaptor.train()
    before = {n: p.detach().clone() for n, p in adaptor.named_parameters()}
    optimiser = torch.optim.AdamW(adaptor.parameters(), lr=1e-3)
    z, y, e_r, e_s = _inputs(seed=3)
    target = torch.randn_like(z)
    for _ in range(3):
        with modulate_unet(unet, adaptor(z, 500, y, e_r)):
            loss = (unet(z, 500, e_s).sample - target).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    unchanged = [n for n, p in adaptor.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


def test_save_load_round_trip(parts, tmp_path):
    adaptor = SpireAdaptor.from_unet(parts["unet"], fusion="additive", restoration_prompt="without_params")
    _randomise_fusion(adaptor)
    adaptor.save_pretrained(tmp_path / "adaptor")
    assert (tmp_path / "adaptor" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = SpireAdaptor.from_pretrained(tmp_path / "adaptor", local_files_only=True)
    assert loaded.config.fusion == "additive" and loaded.config.restoration_prompt == "without_params"
    for (name, a), (_, b) in zip(adaptor.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    z, y, e_r, _ = _inputs()
    assert torch.equal(adaptor(z, 10, y, e_r).betas[0], loaded(z, 10, y, e_r).betas[0])


def test_mismatched_unet_is_a_clear_error(parts):
    adaptor = SpireAdaptor.from_unet(parts["unet"])
    other = UNet2DConditionModel(**{**TINY_UNET, "block_out_channels": (32, 32)})
    with pytest.raises(ValueError, match=r"does not fit this UNet.*block_out_channels"):
        adaptor.check_fits(other)


def test_controlnet_copies_the_unet_encoder(parts):
    unet = parts["unet"]
    adaptor = SpireAdaptor.from_unet(unet)
    reference = ControlNetModel.from_unet(unet)
    assert torch.equal(adaptor.controlnet.conv_in.weight, unet.conv_in.weight)
    assert torch.equal(
        adaptor.controlnet.down_blocks[0].resnets[0].conv1.weight, unet.down_blocks[0].resnets[0].conv1.weight
    )
    assert len(adaptor.fusion_convs) == len(reference.controlnet_down_blocks) + 1


def test_unshuffle_stem_starts_as_the_vae_patch_encoder_in_model_latent_units(parts, tmp_path):
    shape = dict(
        block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, latent_channels=4,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vae = SpireAutoencoderKL(**shape).eval()
    photos = torch.cat([make_photo(64, 64, seed=i) for i in range(4)])
    vae.init_from_patches(photos)
    set_latent_scaling(vae, photos, power=0.5)  # a non-trivial per-channel mean and std
    adaptor = SpireAdaptor.from_unet(parts["unet"], condition_stem="unshuffle", stem_channels=6)
    assert adaptor.init_condition_stem(vae)
    _, y, _, _ = _inputs()
    with torch.no_grad():
        stem = adaptor.controlnet.controlnet_cond_embedding
        h = stem.proj(F.pixel_unshuffle(y, 8))
        linear = to_model_latents(vae, vae.encoder.proj(F.pixel_unshuffle(y * 2 - 1, 8)))
    assert h.shape == (2, 6, 8, 8)
    assert torch.allclose(h[:, :4], linear, atol=1e-5)
    # the conv stem has no such projection: nothing changes
    plain = SpireAdaptor.from_unet(parts["unet"])
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    assert not plain.init_condition_stem(vae)
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in before.items())
    # the stem is part of the saved model
    adaptor.save_pretrained(tmp_path / "adaptor")
    loaded = SpireAdaptor.from_pretrained(tmp_path / "adaptor", local_files_only=True)
    assert loaded.config.condition_stem == "unshuffle"
    assert torch.equal(loaded.controlnet.controlnet_cond_embedding.proj.weight, stem.proj.weight)
