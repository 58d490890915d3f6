import json

from PIL import Image

from helpers import make_photo, write_photo_folder
from spire_ir.cli import main
from spire_ir.utils.images import save_image


def test_folder_with_corrupt_file_finishes_the_rest_and_fails(tmp_path, capsys):
    notes = write_photo_folder(tmp_path / "in")
    before = {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    status = main(
        ["degrade", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--random", "mixed", "--seed", "3"]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 of 6" in err
    for name, note in notes.items():
        stem = name.rsplit(".", 1)[0]
        out = Image.open(tmp_path / "out" / f"{stem}.png")
        assert out.mode == ("RGBA" if name == "alpha.png" else "RGB")  # the alpha channel is kept
        sidecar = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
        assert sidecar["seed"] == 3 and sidecar["restoration_prompt"] and sidecar["record"]["pipeline"]
        assert note in " ".join(sidecar["conversions"])
    assert Image.open(tmp_path / "out" / "rotated.png").size == (
        48,
        24,
    )  # EXIF 6: 24x48 stored, shown 48 wide
    assert not (tmp_path / "out" / "broken.png").exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before  # inputs untouched
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no temporary files left behind


def test_prompt_mode_is_byte_identical_and_records_the_ops(tmp_path):
    save_image(make_photo(64, 64), tmp_path / "photo.png")
    prompt = "Deblur with sigma 2.0, Denoise with sigma 0.05"
    outputs = []
    for run in range(2):
        target = tmp_path / f"out{run}.png"
        assert (
            main(
                ["degrade", str(tmp_path / "photo.png"), "-o", str(target), "--prompt", prompt, "--seed", "1"]
            )
            == 0
        )
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1]
    sidecar = json.loads((tmp_path / "out0.json").read_text())
    assert sidecar["restoration_prompt"] == prompt
    assert sidecar["record"]["ops"] == [
        {"op": "deblur", "sigma": 2.0, "in_prompt": "Deblur with sigma 2.0"},
        {"op": "denoise", "sigma": 0.05, "in_prompt": "Denoise with sigma 0.05"},
    ]


def test_never_overwrites_the_input(tmp_path, capsys):
    path = tmp_path / "photo.png"
    save_image(make_photo(32, 32), path)
    original = path.read_bytes()
    assert main(["degrade", str(path), "-o", str(path), "--prompt", "Deblur with sigma 1.0"]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert path.read_bytes() == original


def test_bad_prompt_is_a_clear_error(tmp_path, capsys):
    save_image(make_photo(32, 32), tmp_path / "photo.png")
    status = main(
        [
            "degrade",
            str(tmp_path / "photo.png"),
            "-o",
            str(tmp_path / "o.png"),
            "--prompt",
            "denoise with sigma 3",
        ]
    )
    assert status == 2
    assert "did you mean 0.03" in capsys.readouterr().err
