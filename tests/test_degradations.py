import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from helpers import make_photo
from spire_ir import prompts
from spire_ir.degradations import (
    DegradationMixer,
    ParameterizedConfig,
    ParameterizedDegradation,
    RealESRGANDegradation,
    degrade,
    degrade_batch,
)
from spire_ir.degradations.kernels import KERNEL_TYPES, mixed_kernel, sinc_kernel
from spire_ir.ops import image as image_ops
from spire_ir.utils.seeding import derive_seed, make_generator

# ----------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "pipeline", [ParameterizedDegradation(), RealESRGANDegradation(), DegradationMixer()]
)
def test_same_seed_same_result_whatever_the_batch_size(pipeline):
    images = torch.cat([make_photo(48, 48, seed=i) for i in range(4)])
    whole = degrade_batch(pipeline, images, seed=7)
    halves = [
        degrade_batch(pipeline, images[:2], seeds=[derive_seed(7, 0), derive_seed(7, 1)]),
        degrade_batch(pipeline, images[2:], seeds=[derive_seed(7, 2), derive_seed(7, 3)]),
    ]
    singles = torch.cat([h.images for h in halves])
    assert torch.equal(whole.images, singles)
    assert whole.prompts == halves[0].prompts + halves[1].prompts
    again = degrade_batch(pipeline, images, seed=7)
    assert torch.equal(again.images, whole.images) and again.records == whole.records


def test_different_seeds_differ(photo):
    a = degrade_batch(DegradationMixer(), photo.repeat(2, 1, 1, 1), seed=0)
    assert not torch.equal(a.images[0], a.images[1])


# ----------------------------------------------------------------------------------------- op effects


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.1, 3.0])
def test_gaussian_kernel_sums_to_one(sigma):
    assert image_ops.gaussian_kernel1d(sigma).sum().item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("sigma", [0.8, 1.5, 2.0, 3.0])
def test_blur_sigma_measured_on_a_step_edge(sigma):
    step = torch.zeros(1, 3, 8, 128)
    step[..., 64:] = 1.0
    profile = image_ops.gaussian_blur(step, sigma)[0, 0, 4].double()
    derivative = profile[1:] - profile[:-1]  # a sampled Gaussian centred between pixels 63 and 64
    positions = torch.arange(derivative.numel(), dtype=torch.float64) + 0.5
    mean = (derivative * positions).sum() / derivative.sum()
    measured = math.sqrt(((positions - mean) ** 2 * derivative).sum() / derivative.sum())
    assert measured == pytest.approx(sigma, rel=0.10)


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1])
@pytest.mark.parametrize("gray", [False, True])
def test_noise_std_matches_sigma(sigma, gray):
    flat = torch.full((1, 3, 256, 256), 0.5)
    noisy = image_ops.add_gaussian_noise(flat, sigma, make_generator(3), gray=gray)
    assert (noisy - flat).std().item() == pytest.approx(sigma, rel=0.05)
    if gray:
        assert torch.equal(noisy[:, 0], noisy[:, 1])


@pytest.mark.parametrize("quality", [30, 47, 61, 75, 92])
def test_jpeg_quality_reads_back(quality, photo):
    data = image_ops.encode_jpeg(photo, quality)[0]
    assert image_ops.estimate_jpeg_quality(data) == quality
    decoded = image_ops.jpeg(photo, quality)
    assert decoded.shape == photo.shape
    assert torch.equal(decoded, decoded.mul(255).round().div(255))  # 8-bit values


def _grating(freq: float, size: int = 256) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32)
    wave = 0.5 + 0.25 * torch.sin(2 * math.pi * freq * x)
    return wave.view(1, 1, 1, -1).expand(1, 3, 32, size).contiguous()


@pytest.mark.parametrize("factor", [2.0, 4.0])
def test_down_up_removes_frequencies_above_the_new_nyquist(factor):
    nyquist = 0.5 / factor  # cycles per pixel after downsampling by `factor`

    def kept(freq):
        image = _grating(freq)
        out = image_ops.resize_down_up(image, factor)
        centre = slice(32, 224)
        return ((out - 0.5)[..., centre].std() / (image - 0.5)[..., centre].std()).item()

    assert kept(0.3 * nyquist) > 0.85  # well inside the passband
    assert kept(1.6 * nyquist) < 0.15  # above the new Nyquist rate: gone


def test_filter2d_fft_matches_direct_convolution():
    image = torch.rand(2, 3, 40, 37, generator=make_generator(0))
    kernels = torch.rand(2, 21, 21, generator=make_generator(1))
    kernels /= kernels.sum(dim=(-1, -2), keepdim=True)
    padded = F.pad(image, (10, 10, 10, 10), mode="reflect")
    for index in range(2):
        weight = kernels[index].expand(3, 1, 21, 21)
        direct = F.conv2d(padded[index : index + 1], weight, groups=3)
        assert torch.allclose(image_ops.filter2d(image, kernels)[index : index + 1], direct, atol=1e-5)


@pytest.mark.parametrize("kind", KERNEL_TYPES)
def test_realesrgan_kernels_are_normalised(kind):
    kernel = mixed_kernel(kind, 21, 2.0, 1.0, 0.5, beta=1.5)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert kernel[10, 10] == kernel.max()
    assert sinc_kernel(math.pi / 2, 13).sum().item() == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------------------------------- Table 2


def _stage_stats(config: ParameterizedConfig, draws: int = 2000):
    pipeline = ParameterizedDegradation(config)
    generator = make_generator(123)
    fired = dict.fromkeys(prompts.OP_KINDS, 0)
    with_param = total = empty = 0
    values: dict[str, list[float]] = {k: [] for k in prompts.OP_KINDS}
    orders_ok = True
    for _ in range(draws):
        stages = pipeline.sample_params(generator)
        kinds = [s.op.kind for s in stages]
        orders_ok &= kinds == [k for k in prompts.OP_KINDS if k in kinds]
        empty += not stages
        for stage in stages:
            fired[stage.op.kind] += 1
            values[stage.op.kind].append(stage.op.value)
            with_param += stage.with_param
            total += 1
    return fired, with_param / total, values, empty, orders_ok


def test_table2_distributions_over_2000_draws():
    fired, param_share, values, empty, orders_ok = _stage_stats(ParameterizedConfig())
    assert orders_ok
    assert empty == 0  # the default policy never returns an identity pair
    for kind in prompts.OP_KINDS:  # resampling the empty draw makes each stage fire with p = 8/15
        assert fired[kind] / 2000 == pytest.approx(8 / 15, abs=0.035)
    assert param_share == pytest.approx(0.5, abs=0.03)
    assert min(values["deblur"]) >= 0.2 and max(values["deblur"]) <= 3.0
    assert min(values["upsample"]) >= 1.0 and max(values["upsample"]) <= 7.0
    assert min(values["denoise"]) >= 0.0 and max(values["denoise"]) <= 0.12
    assert min(values["dejpeg"]) >= 30 and max(values["dejpeg"]) <= 92
    assert all(v == int(v) for v in values["dejpeg"])
    # roughly uniform: the mean sits in the middle of each range
    assert sum(values["deblur"]) / len(values["deblur"]) == pytest.approx(1.6, abs=0.1)
    assert sum(values["dejpeg"]) / len(values["dejpeg"]) == pytest.approx(61, abs=2)


def test_single_op_weights_set_each_ops_share_of_single_op_draws():
    config = ParameterizedConfig(single_op_prob=1.0, single_op_weights={"denoise": 2.0, "dejpeg": 2.0})
    degradation = ParameterizedDegradation(config)
    counts = dict.fromkeys(prompts.OP_KINDS, 0)
    for seed in range(3000):
        (draw,) = degradation.sample_params(make_generator(seed))
        counts[draw.op.kind] += 1
    for kind in prompts.OP_KINDS:  # weights 1, 1, 2, 2 of 6
        share = 2 / 6 if kind in ("denoise", "dejpeg") else 1 / 6
        assert counts[kind] / 3000 == pytest.approx(share, abs=0.025)
    with pytest.raises(ValueError, match="unknown op 'sharpen'"):
        ParameterizedConfig(single_op_weights={"sharpen": 1.0})
    with pytest.raises(ValueError, match="at least one op"):
        ParameterizedConfig(single_op_weights=dict.fromkeys(prompts.OP_KINDS, 0.0))


def test_keep_policy_gives_p_half_and_flags_identity(photo):
    fired, _, _, empty, _ = _stage_stats(ParameterizedConfig(empty="keep"))
    for kind in prompts.OP_KINDS:
        assert fired[kind] / 2000 == pytest.approx(0.5, abs=0.035)
    assert empty / 2000 == pytest.approx(1 / 16, abs=0.015)
    pipeline = ParameterizedDegradation(ParameterizedConfig(empty="keep"))
    assert pipeline.record([]) == {"pipeline": "parameterized", "ops": [], "identity": True}


def test_prompt_matches_record_and_application(photo):
    pipeline = ParameterizedDegradation()
    for seed in range(20):
        _y, c_r, record = pipeline(photo, make_generator(seed))
        assert c_r == ", ".join(op["in_prompt"] for op in record["ops"])
        parsed = prompts.parse(c_r)
        assert parsed.kinds() == [op["op"] for op in record["ops"]]
        for op, rec in zip(parsed.ops, record["ops"], strict=True):
            assert op.value is None or op.value == rec[op.spec.param]


def test_mixer_is_fifty_fifty():
    mixer = DegradationMixer()
    tiny = make_photo(32, 32)
    picks = [mixer(tiny, make_generator(i))[2]["pipeline"] for i in range(400)]
    assert picks.count("parameterized") / 400 == pytest.approx(0.5, abs=0.08)
    for seed in range(40):
        _, c_r, record = mixer(tiny, make_generator(seed))
        assert (c_r == prompts.BLIND_PROMPT) == (record["pipeline"] == "realesrgan")


# ----------------------------------------------------------------------------------------- Real-ESRGAN


@pytest.mark.parametrize("size", [(64, 64), (96, 80)])
def test_realesrgan_keeps_size_and_is_8bit(size):
    image = make_photo(*size)
    for seed in range(5):
        y, c_r, record = RealESRGANDegradation()(image, make_generator(seed))
        assert y.shape == image.shape
        assert c_r == "Remove all degradation"
        assert torch.equal(y, y.mul(255).round().div(255))
        assert 0 <= y.min() and y.max() <= 1
        assert record["pipeline"] == "realesrgan" and record["ops"][0]["op"] == "blur"


def test_gray_noise_is_independent_across_the_batch():
    flat = torch.full((2, 3, 128, 128), 0.5)
    noisy = image_ops.add_gaussian_noise(flat, 0.1, make_generator(0), gray=True) - flat
    a, b = noisy[0, 0].flatten(), noisy[1, 0].flatten()
    correlation = torch.corrcoef(torch.stack([a, b]))[0, 1].abs().item()
    assert correlation < 0.05
    poisson = image_ops.add_poisson_noise(flat, 1.0, make_generator(1), gray=True) - flat
    assert not torch.equal(poisson[0], poisson[1])


def test_poisson_noise_scales_with_scale():
    flat = torch.linspace(0, 1, 256 * 256).view(1, 1, 256, 256).expand(1, 3, 256, 256).contiguous()
    small = (image_ops.add_poisson_noise(flat, 0.5, make_generator(0), clip=False) - flat).std()
    large = (image_ops.add_poisson_noise(flat, 2.0, make_generator(0), clip=False) - flat).std()
    assert (large / small).item() == pytest.approx(4.0, rel=0.05)


# ----------------------------------------------------------------------------------------- degrade()


def test_degrade_applies_exactly_the_prompt(photo):
    y, text, record = degrade(photo, "Deblur with sigma 2.0, Denoise with sigma 0.05", make_generator(1))
    assert text == "Deblur with sigma 2.0, Denoise with sigma 0.05"
    assert [(op["op"], op["sigma"]) for op in record["ops"]] == [("deblur", 2.0), ("denoise", 0.05)]
    generator = make_generator(1)
    expected = image_ops.add_gaussian_noise(image_ops.gaussian_blur(photo, 2.0), 0.05, generator)
    assert torch.equal(y, expected)


def test_degrade_fills_missing_values_from_the_training_range(photo):
    _, text, _record = degrade(photo, "Upsample, Dejpeg", make_generator(4))
    parsed = prompts.parse(text)
    assert parsed.kinds() == ["upsample", "dejpeg"]
    assert 1.0 <= parsed.ops[0].value <= 7.0 and 30 <= parsed.ops[1].value <= 92


def test_degrade_applies_values_beyond_the_training_range_without_the_model_warning(photo):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "outside the training range" is about a model following c_r, not synthesis
        y, text, _record = degrade(photo, "Upsample to 16.0", make_generator(0))
    assert text == "Upsample to 16.0"
    assert torch.equal(y, image_ops.resize_down_up(photo, 16.0))
    with pytest.warns(prompts.PromptWarning, match="not understood"):  # unknown words are still reported
        degrade(photo, "Upsample to 16.0, make it pop", make_generator(0))


def test_degrade_rejects_empty_prompt(photo):
    with pytest.raises(ValueError, match="names no degradation"):
        degrade(photo, "", make_generator(0))


def test_fired_stages_always_change_the_image():
    pipeline = ParameterizedDegradation()
    generator = make_generator(9)
    for _ in range(500):
        for stage in pipeline.sample_params(generator):
            assert not (stage.op.kind == "denoise" and stage.op.value == 0.0)
            assert not (stage.op.kind == "upsample" and stage.op.value == 1.0)
