import json

import pytest
import torch

from helpers import make_photo
from spire_ir.data.datasets import (
    DataConfig,
    EpochBatchSampler,
    SampleMaker,
    build_dataloader,
    coco_items,
    folder_items,
    restoration_prompt_variant,
)
from spire_ir.utils.images import save_image


def _folder(tmp_path, n=6, corrupt=True):
    root = tmp_path / "images"
    for i in range(n):
        save_image(make_photo(40, 48, seed=i), root / f"img{i}.png")
        (root / f"img{i}.txt").write_text(f"caption {i}")
    if corrupt:
        (root / "bad.png").write_bytes(b"broken")
    return root


def _take(loader, count):
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == count:
            return out
    return out


def test_folder_source_with_sidecars_and_corrupt_file(tmp_path):
    root = _folder(tmp_path)
    items = folder_items(root)
    assert len(items) == 7 and dict((p.name, c) for p, c in items)["img3.png"] == ["caption 3"]
    config = DataConfig(source="folder", path=str(root), resolution=32, seed=1)
    loader, size = build_dataloader(config, batch_size=7)
    batch = next(iter(loader))
    assert size == 7 and batch["skipped"] == 1
    assert batch["x"].shape == (6, 3, 32, 32) and batch["y"].shape == (6, 3, 32, 32)
    assert len(batch["c_s"]) == len(batch["c_r"]) == len(batch["record"]) == 6


def test_metadata_jsonl_captions(tmp_path):
    root = _folder(tmp_path, n=2, corrupt=False)
    (root / "metadata.jsonl").write_text(
        json.dumps({"file_name": "img0.png", "text": "a red kite"})
        + "\n"
        + json.dumps({"file_name": "img0.png", "text": "a kite"})
    )
    captions = {p.name: c for p, c in folder_items(root)}
    assert captions["img0.png"] == ["a red kite", "a kite"]
    assert captions["img1.png"] == ["caption 1"]  # no metadata entry: falls back to the sidecar


def test_coco_source_samples_among_captions(tmp_path):
    root = _folder(tmp_path, n=2, corrupt=False)
    coco = {
        "images": [{"id": 1, "file_name": "img0.png"}, {"id": 2, "file_name": "img1.png"}],
        "annotations": [{"image_id": 1, "caption": f"cap {k}"} for k in range(3)]
        + [{"image_id": 2, "caption": "only"}],
    }
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    items = coco_items(root, tmp_path / "captions.json")
    assert items[0][1] == ["cap 0", "cap 1", "cap 2"]
    config = DataConfig(source="coco", path=str(root), captions=str(tmp_path / "captions.json"), resolution=16,
                        caption_dropout=0.0, degrade=False)  # fmt: skip
    loader, _ = build_dataloader(config, batch_size=2)
    seen = {c for batch in _take(loader, 30) for c in batch["c_s"]}
    assert {"cap 0", "cap 1", "cap 2", "only"} <= seen


def test_webdataset_shards_with_a_corrupt_member(tmp_path):
    wds = pytest.importorskip("webdataset")
    import io

    from PIL import Image

    for shard in range(2):
        with wds.TarWriter(str(tmp_path / f"shard-{shard}.tar")) as sink:
            for i in range(4):
                buffer = io.BytesIO()
                array = (make_photo(32, 32, seed=shard * 4 + i)[0].permute(1, 2, 0).numpy() * 255).astype(
                    "uint8"
                )
                Image.fromarray(array).save(buffer, format="PNG")
                data = b"corrupt" if (shard, i) == (1, 2) else buffer.getvalue()
                sink.write({"__key__": f"s{shard}-{i}", "png": data, "txt": f"photo {shard}-{i}"})
    config = DataConfig(source="webdataset", path=str(tmp_path / "shard-{0..1}.tar"), resolution=16)
    loader, size = build_dataloader(config, batch_size=4)
    batches = list(loader)
    assert size is None
    assert sum(b["skipped"] for b in batches) == 1
    assert sum(b["x"].shape[0] for b in batches if "x" in b) == 7
    assert {c for b in batches for c in b["c_s"]} <= {
        f"photo {s}-{i}" for s in range(2) for i in range(4)
    } | {""}


def test_worker_count_does_not_change_the_stream(tmp_path):
    root = _folder(tmp_path, n=8, corrupt=False)
    streams = []
    for workers in (0, 2):
        config = DataConfig(source="folder", path=str(root), resolution=24, seed=3, num_workers=workers)
        loader, _ = build_dataloader(config, batch_size=3)
        streams.append(_take(loader, 4))
    for a, b in zip(*streams, strict=True):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
        assert a["c_s"] == b["c_s"] and a["c_r"] == b["c_r"] and a["key"] == b["key"]


def test_sampler_start_equals_skipping_and_shards_do_not_overlap():
    full = iter(EpochBatchSampler(10, 2, seed=0))
    skipped = [next(full) for _ in range(7)][3:]
    resumed = iter(EpochBatchSampler(10, 2, seed=0, start=3))
    assert [next(resumed) for _ in range(4)] == skipped
    ranks = [iter(EpochBatchSampler(10, 2, seed=0, rank=r, world_size=2)) for r in range(2)]
    first = [next(r) for r in ranks]
    assert not set(first[0]) & set(first[1])
    epoch0 = [key for _ in range(2) for r in ranks for key in next(r)]  # two global batches more
    assert (
        len({k for k in epoch0 + first[0] + first[1] if k[0] == 0}) == 8
    )  # 10 // 4 = 2 batches/epoch -> 8 keys


def test_caption_dropout_rate():
    maker = SampleMaker(DataConfig(resolution=8, caption_dropout=0.1, degrade=False))
    image = make_photo(8, 8)
    from spire_ir.utils.seeding import make_generator

    dropped = sum(maker(image, ["a cat"], make_generator(i))["c_s"] == "" for i in range(1000))
    assert dropped / 1000 == pytest.approx(0.1, abs=0.03)


def test_restoration_prompt_variants():
    text = "Deblur with sigma 2.0, Dejpeg with quality 40"
    assert restoration_prompt_variant(text, "with_params") == text
    assert restoration_prompt_variant(text, "without_params") == "Deblur, Dejpeg"
    assert restoration_prompt_variant("Remove all degradation", "without_params") == "Remove all degradation"
    assert restoration_prompt_variant(text, "none") == ""


def test_several_folders_with_repeats(tmp_path):
    from spire_ir.data import folders_items

    a = _folder(tmp_path / "a", n=3, corrupt=False)
    b = _folder(tmp_path / "b", n=2, corrupt=False)
    items = folders_items(f"{a},{b}", (3, 1))
    assert len(items) == 3 * 3 + 2
    assert sum(1 for path, _ in items if path.parent == a) == 9
    config = DataConfig(source="folder", path=f"{a}, {b}", repeats=(3, 1), resolution=16, degrade=False)
    _, size = build_dataloader(config, batch_size=4)
    assert size == 11
    with pytest.raises(ValueError, match="2 folder"):
        folders_items(f"{a},{b}", (1,))
    with pytest.raises(ValueError, match="whole number"):
        folders_items(f"{a},{b}", (0, 1))


def test_scenes_on_texture_backgrounds_name_them():
    from spire_ir.data.scenes import render_scene

    # without backgrounds, scenes are exactly those of earlier versions
    assert render_scene(0, 0, 64)[1] == "an orange square above a purple triangle on a blue background"
    grass = torch.zeros(3, 80, 80)
    grass[1] = 0.6  # a flat green "texture", easy to find in the image
    scenes = [render_scene(1, i, 64, {"on grass": grass}) for i in range(40)]
    on_grass = [(image, caption) for image, caption in scenes if caption.endswith("on grass")]
    assert 10 < len(on_grass) < 30  # about half
    for image, _ in on_grass:
        corner = image[0, :, :4, :4]  # shapes stay near the centre
        assert torch.allclose(corner, grass[:, :4, :4], atol=1e-6)
    patterns = " ".join(caption for _, caption in scenes)
    assert "dotted" in patterns or "checked" in patterns
