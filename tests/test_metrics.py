import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import make_photo
from spire_ir.evaluation.metrics import MetricSettings, create_metric, list_metrics, psnr, ssim

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "golden_metrics.json").read_text())


def _cases():
    x = make_photo(64, 80, seed=2)
    g = torch.Generator().manual_seed(0)
    return x, {
        "noise": (x + torch.randn(x.shape, generator=g) * 0.05).clamp(0, 1),
        "blur": F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1),
        "dark": x * 0.8,
    }


@pytest.mark.parametrize("name", ["noise", "blur", "dark"])
def test_matches_scikit_image_golden_values(name):
    x, cases = _cases()
    d, golden = cases[name], GOLDEN[name]
    assert psnr(d, x).item() == pytest.approx(golden["psnr"], abs=1e-4)
    assert ssim(d, x).item() == pytest.approx(golden["ssim"], abs=1e-4)
    assert psnr(d, x, crop_border=4, y_channel=True).item() == pytest.approx(golden["psnr_y_crop4"], abs=1e-4)
    assert ssim(d, x, crop_border=4, y_channel=True).item() == pytest.approx(golden["ssim_y_crop4"], abs=1e-4)


def test_scores_are_per_image_and_ordered():
    x, cases = _cases()
    batch = torch.cat([cases["noise"], x])
    scores = psnr(batch, torch.cat([x, x]))
    assert scores.shape == (2,) and torch.isinf(scores[1])
    assert ssim(x, x).item() == pytest.approx(1.0)


def test_range_and_shape_are_checked_with_a_clear_message():
    x, _ = _cases()
    with pytest.raises(ValueError, match=r"\[0, 1\].*divide 8-bit images by 255"):
        psnr(x * 255, x)
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(x[..., :32], x)


def test_registry_records_conventions():
    metric = create_metric("psnr", crop_border=4, y_channel=True)
    assert metric.describe() == {"name": "psnr", "lower_better": False, "full_reference": True, "input": "RGB [0, 1]",
                                 "data_range": 1.0, "scale": "dB", "crop_border": 4, "y_channel": True}  # fmt: skip
    assert list_metrics() == [
        "brisque", "clip_i", "clip_t", "clipiqa", "lpips", "maniqa", "musiq", "niqe", "psnr", "ssim",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown metric 'sharpness'"):
        create_metric("sharpness")
    from spire_ir.evaluation.metrics import MetricUnavailable

    with pytest.raises(MetricUnavailable, match=r"musiq: needs .*--iqa-weights DIR"):
        create_metric("musiq")
    with pytest.raises(ValueError, match="fid is a set-level metric"):
        create_metric("fid")


def test_cli_metrics_on_folders_reports_missing_pairs(tmp_path, capsys):
    from spire_ir.cli import main
    from spire_ir.utils.images import save_image

    x, cases = _cases()
    save_image(cases["dark"], tmp_path / "out" / "a.png")
    save_image(cases["dark"], tmp_path / "out" / "b.png")
    save_image(x, tmp_path / "ref" / "a.png")
    status = main(
        ["metrics", str(tmp_path / "out"), str(tmp_path / "ref"), "--json", str(tmp_path / "m.json")]
    )
    assert status == 1 and "no reference with the same name" in capsys.readouterr().err
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["items"][0]["psnr"] == pytest.approx(GOLDEN["dark"]["psnr"], abs=0.05)  # 8-bit rounding
    assert data["conventions"][0]["crop_border"] == 0


def _niqe_cases():
    from spire_ir.ops import image as image_ops
    from spire_ir.utils.seeding import make_generator

    x = make_photo(200, 240, seed=1)
    cases = {
        "clean": x,
        "blur": image_ops.gaussian_blur(x, 2.0),
        "noise": image_ops.add_gaussian_noise(x, 0.1, make_generator(0)),
    }
    return {k: v.mul(255).round().div(255) for k, v in cases.items()}


def test_niqe_matches_the_basicsr_reference():
    from spire_ir.evaluation.metrics import niqe

    golden = GOLDEN["niqe_basicsr_1.4.2"]
    for name, image in _niqe_cases().items():
        assert niqe(image).item() == pytest.approx(golden[name], rel=1e-3), name


@pytest.mark.parametrize("name", ["niqe", "brisque"])
def test_no_reference_metrics_are_monotonic_on_clean_blurred_noisier(name):
    from spire_ir.evaluation.metrics import MetricUnavailable, create_metric
    from spire_ir.ops import image as image_ops
    from spire_ir.utils.seeding import make_generator

    try:
        metric = create_metric(name)
    except MetricUnavailable as error:
        pytest.skip(str(error))
    assert metric.lower_better and not metric.full_reference
    clean = make_photo(200, 240, seed=1)
    blurred = image_ops.gaussian_blur(clean, 1.2)
    noisier = image_ops.add_gaussian_noise(blurred, 0.15, make_generator(0))
    scores = [metric(t.mul(255).round().div(255)).item() for t in (clean, blurred, noisier)]
    assert scores[0] < scores[1] < scores[2], scores


def test_niqe_needs_two_blocks():
    from spire_ir.evaluation.metrics import create_metric

    with pytest.raises(ValueError, match="at least two 96×96 blocks"):
        create_metric("niqe")(make_photo(120, 120))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A randomly initialised tiny CLIP saved in transformers format: PLUMBING ONLY, the scores mean nothing."""
    from transformers import CLIPConfig, CLIPModel

    from spire_ir.models.text import write_byte_bpe_tokenizer

    path = tmp_path_factory.mktemp("clip")
    tokenizer = write_byte_bpe_tokenizer(path)
    vocab = len(tokenizer)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                     "vocab_size": vocab, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": vocab - 1},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_clip_metrics_plumbing_with_random_weights(tiny_clip):
    from spire_ir.evaluation.metrics import create_metric

    x, cases = _cases()
    clip_i = create_metric("clip_i", settings=MetricSettings(clip_model=tiny_clip))
    assert clip_i(x, x).item() == pytest.approx(1.0, abs=1e-5)  # identical images: cosine 1
    assert clip_i(cases["noise"], x).item() < 1.0
    clip_t = create_metric("clip_t", settings=MetricSettings(clip_model=tiny_clip))
    scores = clip_t(torch.cat([x, cases["dark"]]), captions=["a cat", "a dog"])
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    # the paper's scale: the plain cosine of the two embeddings, not torchmetrics' 100 x cosine
    from spire_ir.evaluation.metrics import _clip_image_embeds, _clip_text_embeds, _load_clip

    model, tokenizer = _load_clip(tiny_clip)
    image, text = _clip_image_embeds(model, x), _clip_text_embeds(model, tokenizer, ["a cat"])
    expected = torch.nn.functional.cosine_similarity(image, text).item()
    assert scores[0].item() == pytest.approx(expected, abs=1e-6) and -1 <= scores.min() <= scores.max() <= 1
    assert clip_t.describe()["scale"].startswith("cosine")
    with pytest.raises(ValueError, match="pass captions"):
        clip_t(x)
    quality = create_metric("clipiqa", settings=MetricSettings(clip_model=tiny_clip))(torch.cat([x, cases["noise"]]))
    assert quality.shape == (2,) and ((quality >= 0) & (quality <= 1)).all()


def test_clip_metrics_without_a_model_are_unavailable(monkeypatch):
    from spire_ir.evaluation.metrics import MetricUnavailable, create_metric

    monkeypatch.delenv("SPIRE_CLIP_MODEL", raising=False)
    with pytest.raises(MetricUnavailable, match="--clip-model PATH or set SPIRE_CLIP_MODEL"):
        create_metric("clip_t")


def test_frechet_distance_closed_form():
    from spire_ir.evaluation.metrics import frechet_distance

    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + torch.tensor([1.0, 2.0, 0.0])  # same covariance, means 1, 2, 0 apart: distance 1 + 4
    assert frechet_distance(a, shifted) == pytest.approx(5.0, abs=1e-6)
    scaled = a * 2  # covariance 4I against I: tr(I + 4I - 2·2I) = 3
    assert frechet_distance(a, scaled) == pytest.approx(3.0, rel=0.05)
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, a[:, :2])


def test_set_level_fd_clip_in_a_bench_run(tiny_clip, tmp_path, capsys):
    """Plumbing with a random tiny CLIP: the set-level path runs and warns about the small set."""
    from spire_ir.cli import main
    from spire_ir.utils.images import save_image

    for i in range(3):
        save_image(make_photo(64, 64, seed=i), tmp_path / "photos" / f"p{i}.png")
    assert (
        main(
            [
                "bench",
                "build",
                "--images",
                str(tmp_path / "photos"),
                "--n",
                "3",
                "--size",
                "64",
                "-o",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    args = ["bench", "run", str(tmp_path / "b"), "--method", "identity", "--metrics", "psnr,fd_clip,clip_i"]
    assert main([*args, "--clip-model", tiny_clip, "-o", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (
        summary["set_metrics"]["fd_clip"]["value"] >= 0 and summary["set_metrics"]["fd_clip"]["images"] == 3
    )
    assert "biased on small sets" in summary["warnings"][0]
    assert "clip_i" in summary["metrics"]


def test_lpips_plumbing_with_a_random_backbone(tmp_path, monkeypatch):
    """PLUMBING ONLY: a random AlexNet trunk with the real shipped LPIPS heads; the values mean nothing."""
    from safetensors.torch import save_file

    from spire_ir.evaluation.metrics import MetricSettings, MetricUnavailable, _AlexFeatures, create_metric

    monkeypatch.delenv("SPIRE_LPIPS_BACKBONE", raising=False)
    with pytest.raises(MetricUnavailable, match=r"spire convert-weights alexnet"):
        create_metric("lpips")
    torch.manual_seed(0)
    save_file(_AlexFeatures().state_dict(), str(tmp_path / "alex.safetensors"))
    metric = create_metric("lpips", settings=MetricSettings(lpips_backbone=str(tmp_path / "alex.safetensors")))
    x, cases = _cases()
    assert metric.lower_better and metric(x, x).item() == pytest.approx(0.0, abs=1e-7)
    assert metric(cases["noise"], x).item() > 0


def test_convert_weights_keeps_the_tensors_the_metric_needs_and_never_overwrites(tmp_path, capsys):
    """`spire convert-weights alexnet` keeps features.* of a torchvision-layout state dict, bit for bit."""
    from safetensors.torch import load_file

    from spire_ir.cli import main

    generator = torch.Generator().manual_seed(0)
    state = {
        "features.0.weight": torch.randn(4, 3, 3, 3, generator=generator),
        "features.0.bias": torch.randn(4, generator=generator),
        "classifier.1.weight": torch.randn(2, 4, generator=generator),
    }
    source, target = tmp_path / "alexnet.pth", tmp_path / "alexnet.safetensors"
    torch.save(state, source)
    assert main(["convert-weights", "alexnet", str(source), str(target)]) == 0
    converted = load_file(str(target))
    assert sorted(converted) == ["features.0.bias", "features.0.weight"]
    assert all(torch.equal(converted[k], state[k]) for k in converted)
    before = target.read_bytes()
    assert main(["convert-weights", "alexnet", str(source), str(target)]) == 2
    assert "exists" in capsys.readouterr().err and target.read_bytes() == before
    (tmp_path / "code.pth").write_bytes(b"not a checkpoint")
    assert main(["convert-weights", "pyiqa", str(tmp_path / "code.pth"), str(tmp_path / "x.safetensors")]) == 2
    assert "not a plain PyTorch state dict" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
