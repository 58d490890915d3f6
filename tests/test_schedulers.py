"""The ResShift bridge checked against its equations, and the one sampling loop under every scheduler."""

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from helpers import make_photo
from spire_ir.models.adaptor import modulate_unet
from spire_ir.models.numeric import restoration_numbers
from spire_ir.schedulers import ResShiftScheduler
from spire_ir.testing import tiny_bridge_pipeline, tiny_pipeline

KAPPA = 0.05


def _tensors(seed=0, shape=(2, 12, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(shape, generator=g) for _ in range(2)] + [torch.randn(shape, generator=g)]


def test_timesteps_are_the_noise_level_of_an_even_bridge_schedule():
    scheduler = ResShiftScheduler(kappa=KAPPA)
    scheduler.set_timesteps(4)
    assert torch.allclose(scheduler.etas, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert torch.allclose(scheduler.timesteps, 1000 * KAPPA * torch.tensor([1.0, 0.75, 0.5, 0.25]).sqrt())
    scheduler.set_timesteps(2, t_stop=0.4)
    assert torch.allclose(scheduler.etas, torch.tensor([1.0, 0.7, 0.4]))
    with pytest.raises(ValueError, match="t_stop"):
        scheduler.set_timesteps(2, t_stop=1.0)
    with pytest.raises(ValueError, match="kappa"):
        ResShiftScheduler(kappa=0.0)


def test_add_noise_is_the_residual_shift():
    x, y, eps = _tensors()
    etas = torch.tensor([1.0, 0.25])
    x_t = ResShiftScheduler(kappa=KAPPA).add_noise(x, y, eps, etas)
    assert torch.allclose(x_t[0], y[0] + KAPPA * eps[0], atol=1e-6)  # η = 1: the start y + κε
    assert torch.allclose(x_t[1], x[1] + 0.25 * (y[1] - x[1]) + KAPPA * 0.5 * eps[1], atol=1e-6)


def test_deterministic_step_keeps_the_noise_of_an_exact_prediction():
    # With the true x₀ the step must land on the same bridge with the same ε, one step lower.
    x, y, eps = _tensors(1)
    scheduler = ResShiftScheduler(kappa=KAPPA, prediction_type="sample")
    scheduler.set_timesteps(4)
    sample = scheduler.add_noise(x, y, eps, torch.full((2,), 0.75))
    scheduler._step_index = 1  # η_k = 0.75 -> η_{k-1} = 0.5
    prev = scheduler.step(x, scheduler.timesteps[1], sample, condition=y).prev_sample
    expected = scheduler.add_noise(x, y, eps, torch.full((2,), 0.5))
    assert torch.allclose(prev, expected, atol=1e-5)


def test_deterministic_step_matches_the_closed_form_for_any_prediction():
    x_k, y, x0 = _tensors(2)
    scheduler = ResShiftScheduler(kappa=KAPPA, prediction_type="residual")
    scheduler.set_timesteps(3)  # η: 1, 2/3, 1/3, 0
    out = scheduler.step(x0 - x_k, scheduler.timesteps[0], x_k, condition=y)
    eta, eta_prev = 1.0, 2 / 3
    eps = (x_k - x0 - eta * (y - x0)) / (KAPPA * eta**0.5)
    assert torch.allclose(out.pred_original_sample, x0, atol=1e-6)
    assert torch.allclose(out.prev_sample, x0 + eta_prev * (y - x0) + KAPPA * eta_prev**0.5 * eps, atol=1e-5)


def test_stochastic_step_draws_from_the_resshift_posterior():
    # q(x_{k-1} | x_k, x₀) = N(η_{k-1}/η_k · x_k + (1 − η_{k-1}/η_k) · x₀, κ² η_{k-1}(η_k − η_{k-1})/η_k)
    x_k, _, x0 = _tensors(3, shape=(1, 12, 64, 64))
    scheduler = ResShiftScheduler(kappa=KAPPA, prediction_type="sample", stochastic=True)
    draws = []
    for seed in range(40):
        scheduler.set_timesteps(2)  # η: 1 -> 0.5
        prev = scheduler.step(x0, scheduler.timesteps[0], x_k, generator=torch.Generator().manual_seed(seed))
        draws.append(prev.prev_sample)
    draws = torch.stack(draws)
    mean, std = 0.5 * x_k + 0.5 * x0, KAPPA * (0.5 * 0.5 / 1.0) ** 0.5
    residual = (draws - mean) / std
    assert abs(float(residual.mean())) < 0.01
    assert abs(float(residual.std()) - 1) < 0.01


def test_last_step_is_x0_or_the_partial_bridge_point():
    x_k, y, x0 = _tensors(4)
    for stochastic in (False, True):
        scheduler = ResShiftScheduler(kappa=KAPPA, prediction_type="sample", stochastic=stochastic)
        scheduler.set_timesteps(1)
        assert torch.equal(scheduler.step(x0, scheduler.timesteps[0], x_k, condition=y).prev_sample, x0)
        scheduler.set_timesteps(1, t_stop=0.3)
        prev = scheduler.step(x0, scheduler.timesteps[0], x_k, condition=y).prev_sample
        assert torch.allclose(prev, x0 + 0.3 * (y - x0), atol=1e-6)
    deterministic = ResShiftScheduler(kappa=KAPPA)
    deterministic.set_timesteps(2)
    with pytest.raises(ValueError, match="condition"):
        deterministic.step(x0, 0, x_k)


def _x0_by_hand(pipe, y, prompt_r, generator_seed):
    """One call of the x̂₀ predictor at η = 1, written out: x_1 = S(y) + κε, x̂₀ = x_1 + D(x_1 | y, c_r)."""
    latent_y = pipe.vae.encode(y * 2 - 1).latent_dist.mode()
    noise = torch.randn(latent_y.shape, generator=torch.Generator().manual_seed(generator_seed))
    x1 = latent_y + pipe.scheduler.config.kappa * noise
    t = pipe.scheduler.timestep_for(torch.tensor([1.0]))
    e_r, e_s = pipe.encode_prompt([prompt_r]), pipe.encode_prompt([""])
    modulation = pipe.adaptor(x1, t, y, e_r, numeric=restoration_numbers([prompt_r]))
    with modulate_unet(pipe.unet, modulation):
        residual = pipe.unet(x1, t, encoder_hidden_states=e_s).sample
    return ((pipe.vae.decode(x1 + residual).sample + 1) / 2).clamp(0, 1)


@pytest.fixture(scope="module")
def bridge():
    pipe = tiny_bridge_pipeline(seed=0)
    with torch.no_grad():  # give the zero-initialised fusion something to do
        for conv in pipe.adaptor.fusion_convs:
            conv.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
        pipe.adaptor.numeric_embedding.net[-1].weight.normal_(
            0, 0.05, generator=torch.Generator().manual_seed(2)
        )
    return pipe


def test_one_step_equals_one_call_of_the_x0_predictor(bridge):
    y = make_photo(32, 32)
    out = bridge(y, restoration_prompt="Denoise with sigma 0.05", num_inference_steps=1,
                 generator=torch.Generator().manual_seed(7), output_type="pt").images  # fmt: skip
    with torch.no_grad():
        expected = _x0_by_hand(bridge, y, "Denoise with sigma 0.05", 7)
    assert torch.allclose(out, expected, atol=1e-5)


def test_strength_blends_the_input_and_the_restoration(bridge):
    y = make_photo(32, 32)
    kwargs = dict(restoration_prompt="Deblur with sigma 1.0", num_inference_steps=1, output_type="pt")
    full = bridge(y, generator=torch.Generator().manual_seed(0), **kwargs).images
    half = bridge(y, strength=0.25, generator=torch.Generator().manual_seed(0), **kwargs).images
    # K = 1 at strength s: y + s·(x̂₀ − y); compared where the final clamp did not touch x̂₀
    inside = (full > 0) & (full < 1)
    assert inside.float().mean() > 0.5
    assert torch.allclose(half[inside], (y + 0.25 * (full - y))[inside], atol=1e-5)


def test_numeric_channel_changes_the_output_with_the_number(bridge):
    y = make_photo(32, 32)
    outs = [bridge(y, restoration_prompt=f"Denoise with sigma {s}", num_inference_steps=1, output_type="pt",
                   generator=torch.Generator().manual_seed(0)).images for s in (0.02, 0.2)]  # fmt: skip
    assert float((outs[0] - outs[1]).abs().max()) > 1e-4


@pytest.mark.parametrize(
    "scheduler_class",
    [DDIMScheduler, EulerDiscreteScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler],
)
@pytest.mark.parametrize("start", ["noised_lq", "noise"])
def test_every_diffusers_scheduler_runs_the_one_loop(scheduler_class, start):
    pipe = tiny_pipeline(seed=0)
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    image = make_photo(32, 32)
    runs = [pipe(image, prompt="a cat", restoration_prompt="Denoise with sigma 0.05", num_inference_steps=4,
                 strength=0.5, start=start, generator=torch.Generator().manual_seed(0), output_type="pt").images
            for _ in range(2)]  # fmt: skip
    assert runs[0].shape == image.shape
    assert torch.isfinite(runs[0]).all()
    assert torch.equal(runs[0], runs[1])  # the same seed gives the same output under every scheduler


@pytest.mark.parametrize("stochastic", [False, True])
def test_resshift_in_a_saved_model_folder_round_trips(tmp_path, stochastic):
    pipe = tiny_bridge_pipeline(seed=0, stochastic=stochastic)
    pipe.save_pretrained(tmp_path / "model")
    from spire_ir.pipeline import SpirePipeline

    loaded = SpirePipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    assert (
        isinstance(loaded.scheduler, ResShiftScheduler) and loaded.scheduler.config.stochastic == stochastic
    )
    y = make_photo(32, 32)
    a, b = (p(y, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt").images
            for p in (pipe, loaded))  # fmt: skip
    assert torch.equal(a, b)
