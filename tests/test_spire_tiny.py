"""The shipped spire-tiny model: restores out of the box, offline, with the gains its card promises."""

import json

import pytest
import torch
from PIL import Image

from spire_ir.cli import main
from spire_ir.degradations import degrade
from spire_ir.evaluation.metrics import psnr
from spire_ir.models.builtin import builtin_model_dir
from spire_ir.pipeline import SpirePipeline
from spire_ir.utils.images import load_image, save_image
from spire_ir.utils.seeding import make_generator


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A real photo (scikit-image's coffee, CC0), 256² crop of its short side: one of the evaluation photos."""
    from skimage import data

    array = torch.from_numpy(data.coffee().copy()).permute(2, 0, 1).float() / 255
    return torch.nn.functional.interpolate(array[None, :, :, 100:500], size=(256, 256), mode="area")


@pytest.fixture(scope="module")
def pipe() -> SpirePipeline:
    pipe = SpirePipeline.from_pretrained("spire-tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _degraded(photo, prompt):
    y = degrade(photo, prompt, make_generator(0))[0].clamp(0, 1)
    return (y * 255).round() / 255  # as saved to a file


def test_the_folder_is_small_and_references_the_packaged_text_encoder():
    folder = builtin_model_dir("spire-tiny")
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 30e6, f"{size / 1e6:.1f} MB"
    assert (
        json.loads((folder / "text_encoder" / "spire_reference.json").read_text())["packaged_encoder"]
        == "minilm"
    )


def test_noise_gains_4_db_and_blur_1_db_on_a_real_photo(pipe, photo):
    for prompt, gain in (("Denoise with sigma 0.08", 4.0), ("Deblur with sigma 1.5", 1.0)):
        y = _degraded(photo, prompt)
        out = pipe(y, restoration_prompt=prompt, generator=make_generator(0), output_type="pt").images
        assert float(psnr(out, photo)) >= float(psnr(y, photo)) + gain, prompt


def test_the_default_self_ensemble_beats_one_view_on_noise(pipe, photo):
    prompt = "Denoise with sigma 0.08"
    y = _degraded(photo, prompt)
    assert pipe.config.default_self_ensemble == 4
    scores = {}
    for views in (1, 4):
        out = pipe(y, restoration_prompt=prompt, self_ensemble=views, generator=make_generator(0),
                   output_type="pt").images  # fmt: skip
        scores[views] = float(psnr(out, photo))
    assert scores[4] >= scores[1] + 0.3, scores


def test_smaller_tiles_restore_a_large_photo_better_than_one_piece_and_leave_no_seam(pipe):
    # scikit-image's astronaut at its full 512² (the evaluation set holds its 256² downscale): trained on 128²
    # crops, the model denoises better in 384-px tiles (here 2 × 2 of 288, overlapping at 224–288) than over the
    # whole image, which is what its folder's 512-px tiles leave a 512² photo
    from skimage import data

    photo = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1)[None].float() / 255
    y = _degraded(photo, "Denoise with sigma 0.05")
    assert pipe.config.default_tile_size == 512
    outputs = {}
    for tile in (384, 0):
        outputs[tile] = pipe(y, restoration_prompt="Denoise with sigma 0.05", self_ensemble=1, tile_size=tile,
                             generator=make_generator(0), output_type="pt").images  # fmt: skip
    scores = {tile: float(psnr(out, photo)) for tile, out in outputs.items()}
    assert scores[384] >= scores[0] + 0.15, scores
    # no seam: where tiled and whole outputs differ, they differ smoothly. The step of that difference between
    # neighbouring rows and columns, averaged along each, peaks in the interior at no more than 3x its median
    # (1.7x here; a tiled output whose last tile overwrites the first, unblended, steps 8x at column 224)
    difference = (outputs[384] - outputs[0]).mean(dim=(0, 1))
    steps = torch.maximum(
        (difference[:, 1:] - difference[:, :-1]).abs().mean(0), (difference[1:] - difference[:-1]).abs().mean(1)
    )
    assert float(steps[16:-16].max() / steps.median()) <= 3.0


def test_restore_without_model_works_offline_and_keeps_the_size(tmp_path, photo, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    y = _degraded(photo[..., :200, :232], "Denoise with sigma 0.08")
    save_image(y, tmp_path / "photo.png")
    assert (
        main(
            [
                "restore",
                str(tmp_path / "photo.png"),
                "-r",
                "Denoise with sigma 0.08",
                "-o",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "out" / "photo.png").size == (232, 200)
    restored = load_image(tmp_path / "out" / "photo.png").tensor
    assert float(psnr(restored, photo[..., :200, :232])) >= float(psnr(y, photo[..., :200, :232])) + 4.0


def test_restore_warns_outside_the_ranges_spire_tiny_was_trained_on(tmp_path, photo, capsys):
    # stage 4 trained deblur up to σ 4.0, past Table 2's 3.0: the warning names the model's range
    save_image(_degraded(photo[..., :64, :64], "Deblur with sigma 2.0"), tmp_path / "photo.png")
    for value, warned in (("4.0", False), ("4.5", True)):
        args = ["restore", str(tmp_path / "photo.png"), "-r", f"Deblur with sigma {value}", "-o", str(tmp_path / value)]
        assert main(args) == 0
        err = capsys.readouterr().err
        assert ("outside the training range 0.2-4;" in err) == warned, err
        assert "0.2-3" not in err
    walk = ["walk", str(tmp_path / "photo.png"), "-r", "Deblur with sigma {}", "--values", "1.0,4.0,4.5",
            "-o", str(tmp_path / "walk.png")]  # fmt: skip
    assert main(walk) == 0
    err = capsys.readouterr().err
    assert err.count("outside the training range 0.2-4;") == 1 and "0.2-3" not in err, err
