import json

import pytest
from PIL import Image

from helpers import make_photo
from spire_ir.cli import main
from spire_ir.utils.images import save_image


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m"
    assert main(["new-model", "--preset", "tiny", "-o", str(path)]) == 0
    return path


def test_restore_folder_with_corrupt_file_and_sidecars(tmp_path, model_dir, capsys):
    folder = tmp_path / "in"
    save_image(make_photo(48, 64), folder / "a.png")
    save_image(make_photo(40, 40, seed=1), folder / "b.png")
    (folder / "b.json").write_text(
        json.dumps({"semantic_prompt": "a dog", "restoration_prompt": "deblur σ=1.5"})
    )
    (folder / "a.txt").write_text("a cat on a mat\n")
    (folder / "c.png").write_bytes(b"garbage")
    status = main(
        ["restore", str(folder), "--model", str(model_dir), "-o", str(tmp_path / "out"), "--steps", "2"]
    )
    assert status == 1
    assert "c.png" in capsys.readouterr().err
    assert Image.open(tmp_path / "out" / "a.png").size == (64, 48)
    assert Image.open(tmp_path / "out" / "b.png").size == (40, 40)
    lines = [json.loads(line) for line in (tmp_path / "out" / "prompts.jsonl").read_text().splitlines()]
    by_name = {line["output"].rsplit("/", 1)[-1]: line for line in lines}
    assert by_name["a.png"]["semantic_prompt"] == "a cat on a mat"
    assert by_name["a.png"]["restoration_prompt"] == "Remove all degradation"
    assert by_name["b.png"]["semantic_prompt"] == "a dog"
    assert by_name["b.png"]["restoration_prompt"] == "Deblur with sigma 1.5"  # canonical: what the model read
    assert by_name["b.png"]["restoration_prompt_as_given"] == "deblur σ=1.5"
    assert by_name["b.png"]["seed"] == 0 and by_name["b.png"]["num_inference_steps"] == 2


def test_acceptance_single_photo(tmp_path, model_dir):
    save_image(make_photo(72, 100), tmp_path / "photo.png")
    args = [
        "restore",
        str(tmp_path / "photo.png"),
        "--model",
        str(model_dir),
        "-r",
        "Denoise with sigma 0.05",
    ]
    assert (
        main([*args, "-p", "a cat", "-o", str(tmp_path / "out"), "--steps", "2", "--num-samples", "2"]) == 0
    )
    assert Image.open(tmp_path / "out" / "photo_0.png").size == (100, 72)
    assert Image.open(tmp_path / "out" / "photo_1.png").size == (100, 72)
    lines = (tmp_path / "out" / "prompts.jsonl").read_text().splitlines()
    assert [json.loads(line)["seed"] for line in lines] == [0, 1]


def test_restore_without_model_explains_what_to_do_when_no_builtin_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPIRE_IR_WEIGHTS", str(tmp_path / "empty"))
    save_image(make_photo(32, 32), tmp_path / "photo.png")
    assert main(["restore", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 330, err  # one short line
    assert "broken install" in err and "reinstall spire-ir" in err and "--model FOLDER" in err


def test_builtin_name_without_weights_says_how_to_make_them(tmp_path, monkeypatch):
    from spire_ir import SpirePipeline

    monkeypatch.setenv("SPIRE_IR_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(
        FileNotFoundError, match=r"spire-tiny weights are missing .*recipes/spire-tiny/train\.sh"
    ):
        SpirePipeline.from_pretrained("spire-tiny")


def test_builtin_weights_folder_can_be_moved_with_an_environment_variable(tmp_path, model_dir, monkeypatch):
    import shutil

    shutil.copytree(model_dir, tmp_path / "weights" / "spire-tiny")
    monkeypatch.setenv("SPIRE_IR_WEIGHTS", str(tmp_path / "weights"))
    save_image(make_photo(32, 32), tmp_path / "photo.png")
    assert main(["restore", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--steps", "2"]) == 0
    line = json.loads((tmp_path / "out" / "prompts.jsonl").read_text().splitlines()[0])
    assert line["model"] == "spire-tiny"
    assert Image.open(tmp_path / "out" / "photo.png").size == (32, 32)


def test_restore_never_overwrites_inputs(tmp_path, model_dir, capsys):
    save_image(make_photo(32, 32), tmp_path / "photo.png")
    before = (tmp_path / "photo.png").read_bytes()
    assert (
        main(
            [
                "restore",
                str(tmp_path / "photo.png"),
                "--model",
                str(model_dir),
                "-o",
                str(tmp_path),
                "--steps",
                "1",
            ]
        )
        == 1
    )
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "photo.png").read_bytes() == before


def test_walk_writes_one_cell_per_value(tmp_path, model_dir):
    save_image(make_photo(48, 48), tmp_path / "photo.png")
    values = "0.02,0.06,0.12,0.24"
    args = ["walk", str(tmp_path / "photo.png"), "--model", str(model_dir), "-r", "Denoise with sigma {}"]
    assert main([*args, "--values", values, "-o", str(tmp_path / "grid.png"), "--steps", "1"]) == 0
    grid = Image.open(tmp_path / "grid.png")
    assert grid.width == 48 * (1 + 4)  # the input, then one cell per value
    meta = json.loads((tmp_path / "grid.json").read_text())
    assert [c["restoration_prompt"] for c in meta["cells"]] == [
        f"Denoise with sigma {v}" for v in values.split(",")
    ]


def test_walk_semantic_prompts(tmp_path, model_dir):
    save_image(make_photo(32, 32), tmp_path / "photo.png")
    args = ["walk", str(tmp_path / "photo.png"), "--model", str(model_dir), "-p", "a photo of a {}"]
    assert main([*args, "--values", "zebra,horse", "-o", str(tmp_path / "g.png"), "--steps", "1"]) == 0
    meta = json.loads((tmp_path / "g.json").read_text())
    assert [c["semantic_prompt"] for c in meta["cells"]] == ["a photo of a zebra", "a photo of a horse"]


def test_consistency_follows_the_model_folder_unless_a_flag_says_otherwise(tmp_path, model_dir):
    """The tiny SD-style model leaves it off; --consistency turns it on, changes a deblur output and is recorded."""
    save_image(make_photo(48, 48), tmp_path / "photo.png")
    outputs = {}
    for name, flags in (("default", []), ("on", ["--consistency"])):
        args = ["restore", str(tmp_path / "photo.png"), "--model", str(model_dir), "-r", "Deblur with sigma 1.5",
                "--steps", "1", "-o", str(tmp_path / name), *flags]  # fmt: skip
        assert main(args) == 0
        line = json.loads((tmp_path / name / "prompts.jsonl").read_text().splitlines()[0])
        assert line["consistency"] is (name == "on")
        outputs[name] = Image.open(tmp_path / name / "photo.png").tobytes()
    assert outputs["default"] != outputs["on"]


def test_restore_keeps_the_alpha_channel_and_the_look_on_white(tmp_path, model_dir):
    import numpy as np
    import torch

    from spire_ir.utils.images import load_image

    rgb = (make_photo(48, 48)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    alpha = np.full((48, 48), 255, np.uint8)
    alpha[:, 24:] = np.linspace(0, 255, 48).round().astype(np.uint8)[:, None]  # opaque left, a ramp on the right
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "cut.png")
    save_image(load_image(tmp_path / "cut.png").tensor, tmp_path / "flat.png")  # the same colours on white
    for name in ("cut.png", "flat.png"):
        assert main(["restore", str(tmp_path / name), "-o", str(tmp_path / "out"), "--model", str(model_dir),
                     "-r", "Denoise with sigma 0.05", "--seed", "4"]) == 0  # fmt: skip
    out = Image.open(tmp_path / "out" / "cut.png")
    assert out.mode == "RGBA" and (np.asarray(out)[..., 3] == alpha).all()
    # shown on white, the restored cut-out is the restoration of the input shown on white, where a pixel of that
    # alpha can show it (on white it is at least 1 - α: darker is clipped)
    on_white = load_image(tmp_path / "out" / "cut.png").tensor
    opacity = torch.from_numpy(alpha / 255.0).float()
    expected = torch.maximum(load_image(tmp_path / "out" / "flat.png").tensor, 1 - opacity)
    assert (on_white - expected).abs().max() <= 1.01 / 255
    assert (on_white - expected)[..., :24].abs().max() == 0  # opaque: the colour itself
    assert main(["restore", str(tmp_path / "cut.png"), "-o", str(tmp_path / "cut.jpg"), "--model", str(model_dir),
                 "-r", "Denoise with sigma 0.05"]) == 0  # fmt: skip
    assert Image.open(tmp_path / "cut.jpg").mode == "RGB"
    records = [json.loads(line) for line in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    assert "alpha dropped: JPG has no alpha channel" in records[-1]["conversions"]
