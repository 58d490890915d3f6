"""Captions from a local image-to-text model: `spire caption`, `spire restore --caption auto`, and the bench's
caption / unmatched prompt modes (Table 4's semantic half). A random-weight BLIP checks the plumbing only."""

import json

import pytest

from helpers import make_photo, write_captioned_photos, write_tiny_captioner
from spire_ir.cli import main
from spire_ir.utils.images import save_image


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    return write_tiny_captioner(tmp_path_factory.mktemp("captioner") / "blip")


def test_caption_writes_sidecars_skips_existing_and_reports_bad_files(captioner, tmp_path, capsys):
    from spire_ir.models.captioner import Captioner

    folder = tmp_path / "images"
    for i in range(3):
        save_image(make_photo(40, 48, seed=i), folder / f"img{i}.png")
    (folder / "img2.txt").write_text("my own caption\n")
    (folder / "bad.png").write_bytes(b"not an image")
    assert (
        main(["caption", str(folder), "--captioner", str(captioner)]) == 1
    )  # bad.png failed, the rest went on
    err = capsys.readouterr().err
    assert "bad.png" in err and "img2.txt exists; skipped" in err
    assert (folder / "img2.txt").read_text() == "my own caption\n"  # never replaced without --overwrite
    expected = Captioner(captioner)(make_photo(40, 48, seed=0))[0]
    assert expected and (folder / "img0.txt").read_text() == expected + "\n"
    assert main(["caption", str(folder / "img0.png"), "--captioner", str(captioner), "--overwrite"]) == 0
    assert (folder / "img0.txt").read_text() == expected + "\n"  # greedy decoding: the same caption again


def test_a_missing_or_wrong_captioner_folder_says_what_it_must_hold(tmp_path, capsys):
    save_image(make_photo(32, 32), tmp_path / "a.png")
    assert main(["caption", str(tmp_path / "a.png"), "--captioner", str(tmp_path / "nope")]) == 2
    assert "no such folder; a captioner folder holds" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["caption", str(tmp_path / "a.png"), "--captioner", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "cannot load an image-to-text model" in err and "preprocessor_config.json" in err


def test_restore_with_caption_auto_records_the_caption(captioner, tmp_path):
    from spire_ir.models.captioner import Captioner
    from spire_ir.testing import tiny_pipeline

    model = tmp_path / "model"
    tiny_pipeline(seed=0).save_pretrained(model)
    save_image(make_photo(40, 40), tmp_path / "in.png")
    args = ["restore", str(tmp_path / "in.png"), "--model", str(model), "-o", str(tmp_path / "out"), "--steps", "1",
            "--caption", "auto", "--captioner", str(captioner)]  # fmt: skip
    assert main(args) == 0
    record = json.loads((tmp_path / "out" / "prompts.jsonl").read_text().splitlines()[0])
    assert record["semantic_prompt"] == Captioner(captioner)(make_photo(40, 40))[0]
    assert record["caption"] == {"captioner": str(captioner), "style": "short"}
    assert main([*args[:-4], "-p", "a cat", "--caption", "auto", "--captioner", str(captioner)]) == 2


def test_bench_caption_and_unmatched_rows(captioner, tmp_path):
    photos = write_captioned_photos(tmp_path / "photos", 4, 56, 56, caption="photo number {}")
    bench = tmp_path / "bench"
    assert (
        main(["bench", "build", "--images", str(photos), "--n", "4", "--size", "48", "-o", str(bench)]) == 0
    )
    run = ["bench", "run", str(bench), "--method", "identity", "--metrics", "psnr"]
    assert (
        main([*run, "--prompts", "caption", "--captioner", str(captioner), "-o", str(tmp_path / "cap")]) == 0
    )
    assert main([*run, "--prompts", "unmatched", "-o", str(tmp_path / "un")]) == 0
    assert main([*run, "--prompts", "caption", "-o", str(tmp_path / "x")]) == 2  # no --captioner

    def used(name):
        return {p.stem: json.loads(p.read_text()) for p in (tmp_path / name / "items").glob("*.json")}

    from spire_ir.models.captioner import Captioner
    from spire_ir.utils.images import load_image

    caption = Captioner(captioner)
    for item_id, item in used("cap").items():
        assert (
            item["used_c_s"] == caption(load_image(bench / "y" / f"{item_id}.png").tensor)[0]
        )  # of the degraded y
    unmatched = used("un")
    assert all(item["used_c_s"] != item["c_s"] for item in unmatched.values())  # nobody keeps their own
    assert sorted(i["used_c_s"] for i in unmatched.values()) == sorted(i["c_s"] for i in unmatched.values())
    assert main(["bench", "run", str(bench), "--method", "identity", "--metrics", "psnr", "--prompts", "unmatched",
                 "-o", str(tmp_path / "un2")]) == 0  # fmt: skip
    assert {k: v["used_c_s"] for k, v in used("un2").items()} == {
        k: v["used_c_s"] for k, v in unmatched.items()
    }
    assert (
        main(["bench", "report", str(tmp_path / "cap"), str(tmp_path / "un"), "-o", str(tmp_path / "r")]) == 0
    )
    table = (tmp_path / "r" / "table.md").read_text()
    assert "✗ (caption)" in table and "✗ (unmatched)" in table  # identity reads no prompt; the row says which
