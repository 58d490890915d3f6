import json

import pytest
import torch

from helpers import make_photo
from spire_ir.cli import main
from spire_ir.utils.images import save_image

pytest.importorskip("skimage")


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    for i in range(6):
        save_image(make_photo(120, 140, seed=i), root / f"p{i}.png")
        (root / f"p{i}.txt").write_text(f"a test photo number {i}")
    (root / "broken.png").write_bytes(b"junk")
    return root


def _files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_build_is_deterministic_and_records_everything(photos, tmp_path):
    args = [
        "bench",
        "build",
        "--images",
        str(photos),
        "--n",
        "4",
        "--setting",
        "parameterized",
        "--size",
        "96",
    ]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    assert main([*args, "-o", str(tmp_path / "b")]) == 0
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # byte-identical rebuild
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert len(manifest["items"]) == 4 and manifest["setting"] == "parameterized"
    item = manifest["items"][0]
    assert (
        item["c_s"].startswith("a test photo")
        and item["c_r"]
        and item["record"]["pipeline"] == "parameterized"
    )
    assert len(item["sha256"]["x"]) == 64
    assert main([*args, "--seed", "1", "-o", str(tmp_path / "c")]) == 0
    assert _files(tmp_path / "c") != _files(tmp_path / "a")  # another seed, other items or degradations


def test_setting_none_keeps_y_equal_to_x(photos, tmp_path):
    assert (
        main(
            [
                "bench",
                "build",
                "--images",
                str(photos),
                "--n",
                "2",
                "--setting",
                "none",
                "--size",
                "64",
                "-o",
                str(tmp_path / "n"),
            ]
        )
        == 0
    )
    files = _files(tmp_path / "n")
    ids = [k[2:] for k in files if k.startswith("x/")]
    assert all(files[f"x/{i}"] == files[f"y/{i}"] for i in ids)


def test_fixed_prompt_applies_exactly_that_task_to_every_item(photos, tmp_path, capsys):
    from spire_ir.utils.images import load_image

    args = ["bench", "build", "--images", str(photos), "--n", "3", "--size", "64", "--seed", "2"]
    assert main([*args, "--prompt", "Denoise with sigma 0.1", "-o", str(tmp_path / "b")]) == 0
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["prompt"] == "Denoise with sigma 0.1"
    for item in manifest["items"]:
        assert item["c_r"] == "Denoise with sigma 0.10"  # the canonical text
        assert [op["op"] for op in item["record"]["ops"]] == ["denoise"]
        x = load_image(tmp_path / "b" / item["x"]).tensor
        y = load_image(tmp_path / "b" / item["y"]).tensor
        measured = float((y - x).std())  # clipping at 0 and 1 removes a little of the noise
        assert 0.08 < measured < 0.105, measured
    assert main([*args, "--prompt", "Remove all degradation", "-o", str(tmp_path / "c")]) == 2
    assert "--setting realesrgan" in capsys.readouterr().err


def test_a_run_folder_resumes_only_with_the_settings_that_began_it(photos, tmp_path, capsys):
    bench, run = tmp_path / "bench", tmp_path / "run"
    assert main(["bench", "build", "--images", str(photos), "--n", "2", "--size", "64", "-o", str(bench)]) == 0
    assert main(["bench", "run", str(bench), "--method", "identity", "-o", str(run)]) == 0
    before = _files(run)
    capsys.readouterr()
    assert main(["bench", "run", str(bench), "--method", "classical", "-o", str(run)]) != 0
    err = capsys.readouterr().err
    assert "holds a run with other settings (method 'identity' -> 'classical')" in err, err
    assert _files(run) == before  # nothing of the identity run was touched
    (run / "summary.json").unlink()  # as if interrupted: run.json alone still records the settings
    assert main(["bench", "run", str(bench), "--method", "classical", "-o", str(run)]) != 0
    assert main(["bench", "run", str(bench), "--method", "identity", "-o", str(run)]) == 0


def test_run_resumes_and_report_has_the_table_layout(photos, tmp_path, capsys):
    bench, run = tmp_path / "bench", tmp_path / "run-identity"
    assert (
        main(["bench", "build", "--images", str(photos), "--n", "3", "--size", "112", "-o", str(bench)]) == 0
    )
    assert main(["bench", "run", str(bench), "--method", "identity", "-o", str(run)]) == 0
    items = sorted((run / "items").glob("*.json"))
    assert len(items) == 3
    stamps = {p.name: p.stat().st_mtime_ns for p in items}
    items[1].unlink()  # as if interrupted before the second item finished
    assert main(["bench", "run", str(bench), "--method", "identity", "-o", str(run)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in sorted((run / "items").glob("*.json"))}[
        items[0].name
    ] == stamps[items[0].name]
    assert (run / "items" / items[1].name).is_file()
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header == "id,c_s,c_r,psnr,ssim,niqe"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"]["psnr"]["crop_border"] == 0 and summary["metrics"]["niqe"]["lower_better"]
    assert summary["prompts"] == "full" and "torch" in summary["versions"]

    assert (
        main(["bench", "run", str(bench), "--method", "classical", "-o", str(tmp_path / "run-classical")])
        == 0
    )
    assert (
        main(["bench", "report", str(run), str(tmp_path / "run-classical"), "-o", str(tmp_path / "report")])
        == 0
    )
    table = (tmp_path / "report" / "table.md").read_text().splitlines()
    assert table[0] == "| Method | Sem | Res | PSNR↑ | SSIM↑ | NIQE↓ |"
    assert table[2].startswith("| identity | ✗ | ✗ |") and table[3].startswith("| classical | ✗ | ✓ |")
    assert (tmp_path / "report" / "grid.png").is_file() and (tmp_path / "report" / "table.csv").is_file()
    assert list((tmp_path / "report").glob("plot-*-psnr.png"))


def test_unavailable_metric_is_reported_with_what_it_needs(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPIRE_LPIPS_BACKBONE", raising=False)
    monkeypatch.delenv("SPIRE_FID_WEIGHTS", raising=False)
    bench = tmp_path / "bench"
    assert (
        main(["bench", "build", "--images", str(photos), "--n", "1", "--size", "64", "-o", str(bench)]) == 0
    )
    assert (
        main(
            [
                "bench",
                "run",
                str(bench),
                "--method",
                "identity",
                "--metrics",
                "psnr,lpips,fid",
                "-o",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "lpips: needs" in err and "AlexNet weights" in err
    assert "fid: needs" in err and "pt_inception-2015-12-05" in err and "--fid-weights" in err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert set(summary["unavailable"]) == {"lpips", "fid"} and set(summary["metrics"]) == {"psnr"}
    # the table keeps the asked-for columns, in order, with n/a where a metric could not run
    assert main(["bench", "report", str(tmp_path / "r"), "-o", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "table.md").read_text().splitlines()
    assert table[0] == "| Method | Sem | Res | PSNR↑ | LPIPS↓ | FID↓ |"
    assert table[2].endswith("| n/a | n/a |") and "Unavailable (n/a): lpips: needs" in "\n".join(table)


def test_classical_denoising_beats_identity_when_told_sigma():
    from spire_ir.degradations import degrade
    from spire_ir.evaluation.baselines import classical, identity
    from spire_ir.evaluation.metrics import psnr
    from spire_ir.utils.seeding import make_generator

    x = make_photo(128, 128, seed=3)
    y, c_r, _ = degrade(x, "Denoise with sigma 0.08", make_generator(0))
    y = y.mul(255).round().div(255)
    gain = psnr(classical(y, "", c_r), x) - psnr(identity(y), x)
    assert gain.item() > 2.0
    blind_gain = psnr(classical(y, "", "Remove all degradation"), x) - psnr(y, x)
    assert blind_gain.item() > 1.0  # estimated sigma
    assert torch.equal(identity(y), y)


@pytest.mark.slow
def test_two_processes_score_disjoint_shares_that_cover_the_bench_and_merge_as_one(photos, tmp_path):
    import subprocess
    import sys

    build = ["bench", "build", "--images", str(photos), "--n", "5", "--size", "48", "--seed", "1"]
    assert main([*build, "--prompt", "Denoise with sigma 0.05", "-o", str(tmp_path / "b")]) == 0
    run = ["bench", "run", str(tmp_path / "b"), "--method", "classical", "--metrics", "psnr,ssim"]
    assert main([*run, "-o", str(tmp_path / "one")]) == 0
    # the documented CPU launch line (docs/evaluation.md)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "spire_ir"]
    subprocess.run([*launch, *run, "-o", str(tmp_path / "two")], check=True, capture_output=True, timeout=300)
    one = sorted((tmp_path / "one" / "metrics.csv").read_text().splitlines())
    two = sorted((tmp_path / "two" / "metrics.csv").read_text().splitlines())
    assert one == two and len(one) == 6  # header + 5 items, merged from both processes
    shares = [json.loads((tmp_path / "two" / "processes" / f"{r}.json").read_text()) for r in range(2)]
    assert [s["processes"] for s in shares] == [2, 2]
    first, second = (set(s["items"]) for s in shares)
    assert first and second and not first & second  # each process scored its own items ...
    assert first | second == {i["id"] for i in json.loads((tmp_path / "b" / "manifest.json").read_text())["items"]}
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["processes"] == 2


class _NumberFollower:
    """A test restorer with the pipeline's call signature that obeys the prompt's number exactly: "Denoise with
    sigma s" blurs with σ 10·s (more smoothing for larger s), "Deblur with sigma s" unsharp-masks with amount s."""

    def __init__(self) -> None:
        self.scheduler = None

    def __call__(self, y, prompt, restoration_prompt, generator, output_type, **sampler):
        from types import SimpleNamespace

        from spire_ir import prompts
        from spire_ir.ops.image import gaussian_blur

        op = prompts.parse(restoration_prompt).ops[0]
        if op.kind == "denoise":
            out = gaussian_blur(y, 10 * op.value)
        else:
            out = (y + op.value * (y - gaussian_blur(y, 1.0))).clamp(0, 1)
        return SimpleNamespace(images=out)


def test_strength_walk_reads_a_model_that_follows_the_number_as_rho_one():
    from spire_ir.evaluation.walks import STRENGTH_WALKS, strength_walk

    clean = torch.cat([make_photo(48, 48, seed=i) for i in range(3)])
    denoise = strength_walk(_NumberFollower(), clean, [""] * 3, "denoise")
    deblur = strength_walk(_NumberFollower(), clean, [""] * 3, "deblur")
    assert torch.tensor(denoise["energy"]).shape == (3, len(STRENGTH_WALKS["denoise"][1]))
    assert denoise["spearman_per_image"] == pytest.approx([-1.0] * 3)
    assert deblur["spearman_mean"] == pytest.approx(1.0)
    assert min(denoise["energy_input"]) > max(denoise["energy_clean"])  # σ 0.10 noise adds high frequencies


def test_bench_sweep_and_strength_on_a_model_folder(tmp_path, capsys):
    """`spire bench sweep` scores the input as psnr() does and writes one PSNR/SSIM per (kind, K); `strength`
    writes a ρ per image in [-1, 1] for each walk."""
    from spire_ir.degradations import degrade
    from spire_ir.evaluation.metrics import psnr
    from spire_ir.testing import tiny_bridge_pipeline
    from spire_ir.utils.images import load_image, quantize_8bit
    from spire_ir.utils.seeding import make_generator

    model = tmp_path / "model"
    tiny_bridge_pipeline(seed=0).save_pretrained(str(model))
    images = tmp_path / "clean"
    for i in range(2):
        save_image(make_photo(32, 32, seed=10 + i), images / f"{i}.png")
    task = "Denoise with sigma 0.05"
    out = tmp_path / "sweep.json"
    assert main(["bench", "sweep", "--images", str(images), "--model", str(model), "--task", task,
                 "--sweep-steps", "1,2", "-o", str(out)]) == 0  # fmt: skip
    row = json.loads(out.read_text())["tasks"][task]
    assert sorted(row) == sorted(["input_psnr", "input_ssim", "deterministic_K1_psnr", "deterministic_K1_ssim",
                                  "deterministic_K2_psnr", "deterministic_K2_ssim", "stochastic_K2_psnr",
                                  "stochastic_K2_ssim"])  # fmt: skip
    clean = torch.cat([load_image(images / f"{i}.png").tensor for i in range(2)])
    y = quantize_8bit(torch.cat([degrade(clean[i : i + 1], task, make_generator(i))[0] for i in range(2)]))
    assert row["input_psnr"] == pytest.approx(float(psnr(y, clean).mean()))
    strength = tmp_path / "strength.json"
    assert main(["bench", "strength", "--images", str(images), "--model", str(model), "-o", str(strength)]) == 0
    result = json.loads(strength.read_text())
    for walk in ("denoise", "deblur"):
        rhos = result[walk]["spearman_per_image"]
        assert len(rhos) == 2 and all(rho is None or -1 <= rho <= 1 for rho in rhos)
        assert len(result[walk]["energy"]) == 2 and len(result[walk]["energy"][0]) == 6


def test_score_reads_outside_outputs_lists_every_problem_and_reports_beside_our_runs(photos, tmp_path, capsys):
    import shutil

    bench = tmp_path / "bench"
    build = ["bench", "build", "--images", str(photos), "--n", "5", "--size", "64", "--seed", "2", "-o", str(bench)]
    assert main(build) == 0
    metrics = ["--metrics", "psnr,ssim"]
    assert main(["bench", "run", str(bench), "--method", "identity", *metrics, "-o", str(tmp_path / "id")]) == 0
    ids = [item["id"] for item in json.loads((bench / "manifest.json").read_text())["items"]]
    # an outside tool's folder: the degraded inputs saved back as its "outputs" (scores must equal identity's)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for item_id in ids:
        shutil.copy(bench / "y" / f"{item_id}.png", outputs / f"{item_id}_out.png")  # Real-ESRGAN's naming
    score = ["bench", "score", str(bench), "--outputs", str(outputs), "--name", "Other tool", *metrics]
    assert main([*score, "-o", str(tmp_path / "other")]) == 0
    ours = (tmp_path / "id" / "metrics.csv").read_text().splitlines()
    theirs = (tmp_path / "other" / "metrics.csv").read_text().splitlines()
    assert theirs == ours  # same items, same scores, same columns

    (outputs / f"{ids[0]}_out.png").unlink()  # missing
    save_image(make_photo(32, 32), outputs / f"{ids[1]}_out.png")  # wrong size
    (outputs / f"{ids[2]}_out.png").write_bytes(b"not an image")  # unreadable
    shutil.copy(outputs / f"{ids[3]}_out.png", outputs / f"{ids[3]}.jpg")  # two files for one item
    save_image(make_photo(64, 64), outputs / "notes.png")  # belongs to no item
    capsys.readouterr()
    assert main([*score, "-o", str(tmp_path / "broken")]) == 1
    err = capsys.readouterr().err
    summary = json.loads((tmp_path / "broken" / "summary.json").read_text())
    assert summary["complete"] is False and summary["scored"] == 1
    problems = summary["problems"]
    assert problems["missing"] == [ids[0]] and problems["extra"] == ["notes.png"]
    assert problems["wrong_size"] == [f"{ids[1]}_out.png: 32x32, the clean image is 64x64"]
    assert problems["unreadable"][0].startswith(f"{ids[2]}_out.png") and problems["ambiguous"][0].startswith(ids[3])
    assert f"missing: {ids[0]}" in err and "extra: notes.png" in err
    assert len((tmp_path / "broken" / "metrics.csv").read_text().splitlines()) == 2  # header + the one scored

    # two runs of one method get distinct labels; the incomplete run says so
    assert main(["bench", "run", str(bench), "--method", "identity", *metrics, "-o", str(tmp_path / "id2")]) == 0
    runs = [str(tmp_path / name) for name in ("id", "id2", "other", "broken")]
    assert main(["bench", "report", *runs, "-o", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "table.md").read_text().splitlines()
    assert [row.split(" | ")[0].lstrip("| ") for row in table[2:6]] == [
        "identity [id]", "identity [id2]", "Other tool", "Other tool (incomplete: 1 of 5 items)"
    ]


def test_a_spire_run_does_not_resume_on_other_weights_saved_under_the_same_name(photos, tmp_path, capsys):
    """A run records a fingerprint of the model's weights files: weights saved over the same folder (a re-export)
    make it refuse to resume, naming the change, instead of mixing items restored by two models."""
    from spire_ir.testing import tiny_bridge_pipeline

    bench, run, model = tmp_path / "bench", tmp_path / "run", tmp_path / "model"
    tiny_bridge_pipeline(seed=0).save_pretrained(str(model))
    assert main(["bench", "build", "--images", str(photos), "--n", "2", "--size", "64", "--prompt",
                 "Denoise with sigma 0.05", "-o", str(bench)]) == 0  # fmt: skip
    args = ["bench", "run", str(bench), "--method", "spire", "--model", str(model), "--metrics", "psnr", "-o", str(run)]
    assert main(args) == 0
    first = sorted((run / "items").glob("*.json"))
    assert len(first) == 2
    first[1].unlink()  # as if interrupted before the second item finished
    assert main(args) == 0  # the same weights resume
    first[1].unlink()
    before = _files(run)
    tiny_bridge_pipeline(seed=1).save_pretrained(str(model))  # other weights, the same folder and configs
    capsys.readouterr()
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "settings.weights '" in err and "a fingerprint of the model's weights files" in err, err
    assert _files(run) == before  # the first model's item is kept, nothing restored by the second
