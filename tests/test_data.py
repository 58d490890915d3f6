import itertools
import json

import pytest
import torch

from helpers import make_photo, write_shards
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


def _wds(pattern, **overrides):
    settings = dict(source="webdataset", path=pattern, resolution=16, caption_dropout=0.0, holdout=0)
    return DataConfig(**{**settings, **overrides})


def _chunks(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


def _sample_ids(batches):
    """'s1-3' per sample, in stream order."""
    return [key.split("/")[-1].split("@")[0] for b in batches for key in b.get("key", [])]


def test_webdataset_repeats_past_one_pass_and_counts_a_corrupt_member(tmp_path):
    pattern = write_shards(tmp_path, corrupt={(1, 2)})
    loader, size = build_dataloader(_wds(pattern, shuffle_buffer=0), batch_size=4)
    batches = _take(loader, 6)  # 24 samples: three passes over 8
    assert size is None and len(batches) == 6
    assert sum(b["skipped"] for b in batches) == 3  # the bad member, once a pass
    ids = _sample_ids(batches)
    good = {f"s{s}-{i}" for s in range(2) for i in range(4)} - {"s1-2"}
    assert len(ids) == 21 and set(ids[:7]) == set(ids[7:14]) == set(ids[14:]) == good
    assert {c for b in batches for c in b["c_s"]} == {f"photo {i[1:]}" for i in good}
    # the same image is degraded afresh on each pass
    first, second = (torch.cat([b["y"] for b in batches[a:b]]) for a, b in ((0, 2), (2, 4)))
    assert not torch.equal(first, second)


def test_webdataset_shuffles_shards_and_samples_with_the_seed(tmp_path):
    from collections import Counter

    pattern = write_shards(tmp_path, shards=4, per_shard=6)
    shard_order = [f"s{s}-{i}" for s in range(4) for i in range(6)]

    def order(**overrides):  # four passes' worth: 24 batches of 4; a buffer of a shard's size, as at scale
        settings = {"shuffle_buffer": 6, "shuffle_initial": 6, **overrides}
        return _sample_ids(_take(build_dataloader(_wds(pattern, **settings), batch_size=4)[0], 24))

    first, again, other = order(seed=1), order(seed=1), order(seed=2)
    assert first == again and first != other and first[:24] != shard_order
    # the buffer spans the end of a pass, so a sample may come a pass early or late, never lost or piled up
    assert set(Counter(first)) == set(shard_order) and set(Counter(first).values()) <= {3, 4, 5}
    # samples of different shards interleave: the buffer mixes samples, not only the shard order
    assert sum(a[:2] != b[:2] for a, b in itertools.pairwise(first[:24])) > 6
    assert order(seed=1, shard_shuffle=False, shuffle_buffer=0) == shard_order * 4
    # shard shuffling alone: whole shards, in a new order on each pass
    passes = [
        [ids[0][:2] for ids in (p[i : i + 6] for i in range(0, 24, 6))]
        for p in _chunks(order(seed=1, shuffle_buffer=0), 24)
    ]
    assert all(sorted(p) == ["s0", "s1", "s2", "s3"] for p in passes) and len({tuple(p) for p in passes}) > 1
    workers = order(seed=1, num_workers=2)
    assert workers == order(seed=1, num_workers=2) and workers != first


@pytest.mark.parametrize("start", [3, 4, 5])
def test_webdataset_resume_with_two_workers_continues_the_exact_stream(tmp_path, start):
    pattern = write_shards(tmp_path, shards=4, per_shard=5, corrupt={(2, 1)})
    config = _wds(pattern, num_workers=2, seed=7, shuffle_buffer=4, shuffle_initial=2)
    full = _take(build_dataloader(config, batch_size=2)[0], 14)
    resumed = _take(build_dataloader(config, batch_size=2, start_batch=start)[0], 14 - start)
    assert _sample_ids(resumed) == _sample_ids(full[start:])
    assert [b["skipped"] for b in resumed] == [b["skipped"] for b in full[start:]]
    for a, b in zip(full[start:], resumed, strict=True):
        assert ("x" in a) == ("x" in b)
        if "x" in a:
            assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"]) and a["c_r"] == b["c_r"]
    fast = build_dataloader(
        _wds(pattern, num_workers=2, seed=7, resume="fast"), batch_size=2, start_batch=start
    )
    fast_ids = _sample_ids(_take(fast[0], 4))
    assert fast_ids != _sample_ids(full[start : start + 4])  # not the same samples: documented as approximate
    again = build_dataloader(
        _wds(pattern, num_workers=2, seed=7, resume="fast"), batch_size=2, start_batch=start
    )
    assert _sample_ids(_take(again[0], 4)) == fast_ids


def test_webdataset_holds_out_validation_samples_or_reads_a_validation_path(tmp_path):
    from spire_ir.data import fixed_samples

    pattern = write_shards(tmp_path / "train", shards=2, per_shard=4)
    config = _wds(pattern, holdout=3, shard_shuffle=False, shuffle_buffer=0)
    validation = fixed_samples(config, 2)
    assert [s["key"].split("/")[-1] for s in validation] == ["s0-0", "s0-1"]
    again = fixed_samples(config, 2)
    assert all(torch.equal(a["y"], b["y"]) for a, b in zip(validation, again, strict=True))
    trained = set(_sample_ids(_take(build_dataloader(config, batch_size=5)[0], 4)))
    assert trained == {f"s{s}-{i}" for s in range(2) for i in range(4)} - {"s0-0", "s0-1", "s0-2"}
    other = write_shards(tmp_path / "val", shards=1, per_shard=3)
    from_shards = fixed_samples(_wds(pattern, validation_path=other.replace("{0..0}", "0")), 4)
    assert len(from_shards) == 3 and from_shards[0]["x"].shape == (3, 16, 16)
    folder = _folder(tmp_path, n=3, corrupt=False)
    from_folder = fixed_samples(_wds(pattern, validation_path=str(folder)), 2)
    assert [s["c_s"] for s in from_folder] == ["caption 0", "caption 1"]


def test_webdataset_path_errors_name_the_fix(tmp_path):
    folder = _folder(tmp_path, n=2, corrupt=False)
    with pytest.raises(ValueError, match=r"set data\.source: folder"):
        build_dataloader(_wds(str(folder)), batch_size=2)
    pattern = write_shards(tmp_path / "s", shards=2)
    (tmp_path / "s" / "shard-1.tar").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 2 shards .* missing or empty: .*shard-1.tar"):
        build_dataloader(_wds(pattern), batch_size=2)


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


def test_a_folder_degraded_by_its_own_synthesiser(tmp_path):
    import re

    from spire_ir.data.datasets import map_dataset
    from spire_ir.degradations import DegradationConfig, ParameterizedConfig

    a = _folder(tmp_path / "a", n=3, corrupt=False)
    b = _folder(tmp_path / "b", n=3, corrupt=False)

    def only(kind: str, **ranges) -> DegradationConfig:
        weights = dict.fromkeys(("deblur", "upsample", "denoise", "dejpeg"), 0.0) | {kind: 1.0}
        return DegradationConfig(p_parameterized=1.0, parameterized=ParameterizedConfig(
            param_prob=1.0, single_op_prob=1.0, single_op_weights=weights, ranges=ranges))  # fmt: skip

    config = DataConfig(
        source="folder", path=f"{a},{b}", resolution=32, crop_scale=(1.0, 1.0),
        degradation=only("denoise"), folder_degradation={str(b): only("upsample", upsample=(10.0, 16.0))},
    )  # fmt: skip
    dataset = map_dataset(config)
    factors = []
    for epoch in range(4):
        for index, (path, _) in enumerate(dataset.items):
            c_r = dataset[(epoch, index)]["c_r"]
            if path.parent == b:
                match = re.fullmatch(r"Upsample to ([\d.]+)", c_r)
                assert match, f"{path}: {c_r!r} is not the folder's own degradation"
                factors.append(float(match.group(1)))
            else:
                assert re.fullmatch(r"Denoise with sigma [\d.]+", c_r), c_r
    assert len(factors) == 12 and 10.0 <= min(factors) and max(factors) <= 16.0
    ranges = config.trained_ranges()
    assert ranges["upsample"][1] == 16.0
    assert ranges["denoise"] == config.degradation.parameterized.trained_ranges()["denoise"]
    with pytest.raises(ValueError, match=r"key it by the folders of data\.path"):
        map_dataset(DataConfig(source="folder", path=str(a), folder_degradation={str(b): only("upsample")}))
    with pytest.raises(ValueError, match=r"needs data\.source: folder"):
        shards = DataConfig(source="webdataset", path=str(b), folder_degradation={str(b): only("upsample")})
        build_dataloader(shards, 2)
