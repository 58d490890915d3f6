import itertools
import random

import pytest
import torch

from helpers import load_with_defaults, make_photo
from spire_ir.models import modulate_unet
from spire_ir.pipeline import SpirePipeline, tile_windows
from spire_ir.testing import tiny_components, tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0)


def _run(pipe, image, seed=0, **kwargs):
    defaults = dict(prompt="a cat", restoration_prompt="Denoise with sigma 0.05", num_inference_steps=3)
    defaults.update(kwargs)
    return pipe(image, generator=torch.Generator().manual_seed(seed), output_type="pt", **defaults).images


def test_output_has_input_size_and_range(pipe):
    image = make_photo(70, 90)  # not a multiple of the latent factor: padded and cropped back
    out = _run(pipe, image)
    assert out.shape == image.shape
    assert 0 <= out.min() and out.max() <= 1


def test_same_seed_same_output_different_seed_different(pipe):
    image = make_photo(64, 64)
    assert torch.equal(_run(pipe, image, seed=1), _run(pipe, image, seed=1))
    assert not torch.equal(_run(pipe, image, seed=1, start="noise"), _run(pipe, image, seed=2, start="noise"))


def test_batches_with_per_image_prompts_and_samples(pipe):
    images = torch.cat([make_photo(64, 64, seed=0), make_photo(64, 64, seed=1)])
    out = pipe(
        images,
        prompt=["a cat", "a dog"],
        restoration_prompt=["Deblur", "Remove all degradation"],
        num_images_per_prompt=2,
        num_inference_steps=2,
        generator=[torch.Generator().manual_seed(i) for i in range(4)],
        output_type="pil",
    ).images
    assert len(out) == 4 and out[0].size == (64, 64)
    with pytest.raises(ValueError, match="3 entries for 2 images"):
        pipe(images, prompt=["a", "b", "c"], num_inference_steps=1)


def test_adaptor_shared_across_cfg_halves_equals_running_it_twice(pipe):
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=generator)
    condition = torch.rand(2, 3, 64, 64, generator=generator)
    semantic = pipe.encode_prompt(["a red star", "a blue circle"])
    negative = pipe.encode_prompt(["", ""])
    restoration = pipe.encode_prompt(["Deblur with sigma 2.0", "Denoise"])
    adaptor = pipe.adaptor
    with torch.no_grad():
        for conv in adaptor.fusion_convs:  # make the fusion non-trivial
            torch.nn.init.normal_(conv.weight, std=0.05, generator=torch.Generator().manual_seed(5))
        t = pipe.scheduler.timesteps[0] if len(pipe.scheduler.timesteps) else torch.tensor(500)
        shared = pipe._model_output(
            latents, t, condition, torch.cat([negative, semantic]), restoration, None, 5.0, 1.0
        )
        # reference: the adaptor runs on the doubled batch, as diffusers' ControlNet pipeline does
        doubled = adaptor(
            torch.cat([latents] * 2), t, torch.cat([condition] * 2), torch.cat([restoration] * 2)
        )
        with modulate_unet(pipe.unet, doubled):
            output = pipe.unet(
                torch.cat([latents] * 2), t, encoder_hidden_states=torch.cat([negative, semantic])
            ).sample
        uncond, cond = output.chunk(2)
        reference = uncond + 5.0 * (cond - uncond)
        for conv in adaptor.fusion_convs:
            torch.nn.init.zeros_(conv.weight)
    assert torch.allclose(shared, reference, atol=1e-5)


def test_tiled_and_untiled_sampling_agree(pipe):
    # A 128² image sampled in 64-px tiles (8x8 latent tiles, 4 windows) vs in one piece. With random weights the
    # UNet's attention sees different context per tile, so the stated tolerance is on the mean absolute error:
    # latent tiling alone <= 0.02, latent + VAE tiling <= 0.04 (on the [0, 1] scale).
    image = make_photo(128, 128)
    kwargs = dict(num_inference_steps=4, color_fix="none")
    whole = _run(pipe, image, **kwargs)
    latent_tiled = _run(pipe, image, tile_size=64, tile_overlap=32, tile_vae=False, **kwargs)
    all_tiled = _run(pipe, image, tile_size=64, tile_overlap=32, **kwargs)
    assert (whole - latent_tiled).abs().mean() <= 0.02
    assert (whole - all_tiled).abs().mean() <= 0.04
    assert not torch.equal(whole, latent_tiled)  # the tiled path really ran


def test_the_folder_default_tile_size_is_honoured(pipe, tmp_path):
    image = make_photo(128, 128)
    kwargs = dict(num_inference_steps=2, color_fix="none", tile_overlap=32)
    assert pipe.config.default_tile_size == 0
    whole = _run(pipe, image, **kwargs)
    tiled = _run(pipe, image, tile_size=64, **kwargs)
    assert not torch.equal(whole, tiled)
    loaded = load_with_defaults(pipe, tmp_path / "model", default_tile_size=64)
    assert torch.equal(_run(loaded, image, **kwargs), tiled)  # no tile_size: the folder's 64
    assert torch.equal(_run(loaded, image, tile_size=0, **kwargs), whole)  # 0: untiled
    with pytest.raises(ValueError, match="default_tile_size must be a whole number of pixels >= 0"):
        load_with_defaults(pipe, tmp_path / "bad", default_tile_size=-64)


def test_tile_windows_cover_everything():
    assert tile_windows(16, 8, 4) == [(0, 8), (4, 12), (8, 16)]
    assert tile_windows(18, 8, 2) == [(0, 8), (5, 13), (10, 18)]
    assert tile_windows(6, 8, 4) == [(0, 6)]
    # 1024 px in 512-px tiles: three windows either way, but of 384 px (overlaps 64) instead of 512 (overlaps 64
    # and 448), 0.56x the pixels the network runs on
    assert tile_windows(1024, 512, 64) == [(0, 384), (320, 704), (640, 1024)]


@pytest.mark.parametrize("multiple", [1, 2, 8])
def test_tile_windows_are_the_fewest_that_overlap_as_asked(multiple):
    rng = random.Random(multiple)
    for _ in range(500):
        tile = multiple * rng.randint(2, 40)
        length = multiple * rng.randint(1, 200)
        overlap = rng.randint(0, tile - multiple)
        windows = tile_windows(length, tile, overlap, multiple)
        assert len({end - start for start, end in windows}) == 1 and windows[0][1] - windows[0][0] <= tile
        assert windows[0][0] == 0 and windows[-1][1] == length
        assert all(start % multiple == 0 and end % multiple == 0 for start, end in windows)
        overlaps = [a_end - b_start for (_, a_end), (b_start, _) in itertools.pairwise(windows)]
        assert all(overlap <= o for o in overlaps)
        assert max(overlaps, default=0) - min(overlaps, default=0) <= multiple  # spread evenly
        # one window fewer, even at the full tile size, could not cover the length: starts on multiples make
        # every overlap a multiple too
        least = -(-overlap // multiple) * multiple
        assert len(windows) == 1 or (len(windows) - 1) * tile - (len(windows) - 2) * least < length
        # and as many windows one multiple smaller could not either: no window is larger than it must be
        size, count = windows[0][1] - windows[0][0], len(windows)
        assert count == 1 or count * (size - multiple) - (count - 1) * least < length


def test_pipeline_save_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    loaded = SpirePipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    image = make_photo(64, 64)
    assert torch.equal(_run(pipe, image), _run(loaded, image))


def test_missing_component_error_names_it(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    import shutil

    shutil.rmtree(tmp_path / "model" / "adaptor")
    with pytest.raises(FileNotFoundError, match="adaptor/"):
        SpirePipeline.from_pretrained(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        SpirePipeline.from_pretrained(tmp_path / "nowhere")


def _write_base_folder(root, prediction_type="epsilon"):
    parts = tiny_components(seed=3, tokenizer_dir=root / "tok", prediction_type=prediction_type)
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        parts[name].save_pretrained(root / "base" / name)
    return parts


def test_from_base_on_a_local_sd_shaped_folder(tmp_path):
    parts = _write_base_folder(tmp_path)
    pipe = SpirePipeline.from_base(tmp_path / "base")
    pipe.set_progress_bar_config(disable=True)
    assert torch.equal(pipe.unet.conv_in.weight, parts["unet"].conv_in.weight)
    assert torch.equal(pipe.adaptor.controlnet.conv_in.weight, parts["unet"].conv_in.weight)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    out = _run(pipe, make_photo(64, 64), num_inference_steps=2)
    assert out.shape == (1, 3, 64, 64)
    # a fresh adaptor leaves the base untouched: with zero fusion, a modulated UNet call equals the base's own
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, pipe.unet.config.in_channels, 8, 8, generator=generator)
    text, restoration = pipe.encode_prompt(["a cat"]), pipe.encode_prompt(["Denoise with sigma 0.05"])
    modulation = pipe.adaptor(latents, 500, make_photo(64, 64), restoration)
    with modulate_unet(pipe.unet, modulation):
        modulated = pipe.unet(latents, 500, encoder_hidden_states=text).sample
    assert torch.equal(modulated, parts["unet"](latents, 500, encoder_hidden_states=text).sample)
    (tmp_path / "base" / "vae").rename(tmp_path / "base" / "vae_gone")
    with pytest.raises(FileNotFoundError, match="vae/"):
        SpirePipeline.from_base(tmp_path / "base")


def test_v_prediction_base_is_handled(tmp_path):
    _write_base_folder(tmp_path, prediction_type="v_prediction")
    pipe = SpirePipeline.from_base(tmp_path / "base")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    out = _run(pipe, make_photo(64, 64), num_inference_steps=2)
    assert torch.isfinite(out).all()
    pipe = SpirePipeline.from_base(tmp_path / "base", prediction_type="epsilon")
    assert pipe.scheduler.config.prediction_type == "epsilon"


def test_bad_inputs_are_clear_errors(pipe):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pipe(torch.full((1, 3, 32, 32), 2.0))
    with pytest.raises(ValueError, match="start must be"):
        pipe(make_photo(32, 32), start="middle")
    with pytest.raises(ValueError, match="tile_size must be a multiple of 16"):
        pipe(make_photo(32, 32), tile_size=40)


def test_model_folder_sets_its_default_steps_and_guidance(pipe, tmp_path):
    loaded = load_with_defaults(pipe, tmp_path / "m", default_steps=3, default_guidance=1.0)
    assert (loaded.config.default_steps, loaded.config.default_guidance) == (3, 1.0)
    calls = []
    image = make_photo(32, 32)
    out = loaded(image, callback=lambda step, total: calls.append(total), output_type="pt",
                 generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    assert calls == [3, 3, 3]
    explicit = loaded(image, num_inference_steps=3, guidance_scale=1.0, output_type="pt",
                      generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    assert torch.equal(out, explicit)
    # guidance 1.0 is no CFG: one UNet pass of batch 1 per step; guidance 4.0 runs the unconditional half too
    batches = []
    hook = loaded.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        for guidance in (1.0, 4.0):
            loaded(image, prompt="a cat", num_inference_steps=3, guidance_scale=guidance, output_type="pt",
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    finally:
        hook.remove()
    assert batches == [1, 1, 1, 2, 2, 2]
    assert (
        loaded(image, num_inference_steps=2, callback=lambda s, t: calls.append(t), output_type="pt")
        is not None
    )
    assert calls[-1] == 2


def test_model_folder_sets_its_default_strength(pipe, tmp_path):
    loaded = load_with_defaults(pipe, tmp_path / "m", default_strength=0.5)
    assert loaded.config.default_strength == 0.5
    image = make_photo(32, 32)
    calls = []
    default = _run(loaded, image, num_inference_steps=4, callback=lambda step, total: calls.append(total))
    assert calls == [2, 2]  # half of the 4-step schedule
    assert torch.equal(default, _run(loaded, image, num_inference_steps=4, strength=0.5))
    assert not torch.equal(default, _run(loaded, image, num_inference_steps=4, strength=1.0))
    with pytest.raises(ValueError, match="default_strength must be in"):
        SpirePipeline(**{**tiny_components(), "default_strength": 0.0})


def test_an_adaptor_trained_on_op_types_reads_op_types():
    """adaptor.config.restoration_prompt is honoured: "without_params" turns "Deblur with sigma 2.0, Denoise with
    sigma 0.05" into "Deblur, Denoise" (same output as passing that), says so, and "with_params" passes it as is."""
    pipe = tiny_pipeline(seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # wake the zero-initialised fusion convs, so that c_r changes the output
        for parameter in pipe.adaptor.parameters():
            if not parameter.any():
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
    image = make_photo(16, 16, seed=3)
    kwargs = dict(prompt="a cat", num_inference_steps=2, output_type="pt", color_fix="none")
    run = lambda c_r: pipe(image, restoration_prompt=c_r, generator=torch.Generator().manual_seed(0), **kwargs)  # noqa: E731
    with_values = run("Deblur with sigma 2.0, Denoise with sigma 0.05").images
    pipe.adaptor.register_to_config(restoration_prompt="without_params")
    try:
        with pytest.warns(UserWarning, match=r"written 'without_params'.*-> 'Deblur, Denoise'"):
            rewritten = run("Deblur with sigma 2.0, Denoise with sigma 0.05").images
        types_only = run("Deblur, Denoise").images
    finally:
        pipe.adaptor.register_to_config(restoration_prompt="with_params")
    assert torch.equal(rewritten, types_only)
    assert (rewritten - with_values).abs().max() > 1e-6  # the tiny adaptor does read c_r


def test_loose_restoration_text_reaches_the_model_as_the_canonical_string(pipe):
    image = make_photo(48, 48)
    assert pipe.restoration_as_trained(["deblur σ=2 and upscale 4x", ""]) == [
        "Deblur with sigma 2.0, Upsample to 4.0", "Remove all degradation",
    ]  # fmt: skip
    loose = _run(pipe, image, restoration_prompt="denoise sigma .05")
    assert torch.equal(loose, _run(pipe, image, restoration_prompt="Denoise with sigma 0.05"))
    # as written, the loose text would have been another embedding for the adaptor
    encoded = pipe.encode_prompt(pipe.restoration_as_trained(["denoise sigma .05"]))
    assert torch.equal(encoded, pipe.encode_prompt(["Denoise with sigma 0.05"]))
    assert not torch.equal(encoded, pipe.encode_prompt(["denoise sigma .05"]))
