"""What an exact WebDataset resume costs: re-reading (without decoding) against making training batches.

Writes shards of JPEG photos at a web-like size, then times, for one stream (one worker):
  * make:   the training stream (decode, random crop, degrade, collate) in samples/s;
  * reread: the exact resume's fast-forward over the same samples (tar read + shuffle buffer, no decode).

    python benchmarks/shard_stream.py                      # 4 shards x 64 photos of 768x512, crops of 512
    python benchmarks/shard_stream.py --size 512 --resolution 256

An exact resume after N samples per worker costs N / reread seconds; ``data.resume: fast`` skips that.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))


def write_shards(root: Path, shards: int, per_shard: int, width: int, height: int) -> str:
    import webdataset as wds
    from PIL import Image

    from helpers import make_photo  # tests/helpers.py: deterministic photo-like images

    for shard in range(shards):
        with wds.TarWriter(str(root / f"shard-{shard:04d}.tar")) as sink:
            for i in range(per_shard):
                photo = make_photo(height, width, seed=shard * per_shard + i)[0].permute(1, 2, 0).numpy()
                buffer = io.BytesIO()
                Image.fromarray((photo * 255).astype("uint8")).save(buffer, format="JPEG", quality=90)
                sink.write({"__key__": f"{shard:04d}-{i:05d}", "jpg": buffer.getvalue(), "txt": "a photo"})
    return str(root / f"shard-{{0000..{shards - 1:04d}}}.tar")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--per-shard", type=int, default=64)
    parser.add_argument("--size", type=int, default=768, help="photo width (height is 2/3 of it)")
    parser.add_argument("--resolution", type=int, default=512, help="training crop")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    import torch

    from spire_ir.data.datasets import DataConfig
    from spire_ir.data.shards import ShardStream

    torch.set_num_threads(1)  # one DataLoader worker's view
    with tempfile.TemporaryDirectory() as tmp:
        pattern = write_shards(Path(tmp), args.shards, args.per_shard, args.size, args.size * 2 // 3)
        size_mb = sum(p.stat().st_size for p in Path(tmp).glob("*.tar")) / 2**20
        config = DataConfig(source="webdataset", path=pattern, resolution=args.resolution, holdout=0)
        total = args.shards * args.per_shard
        batches = total // args.batch_size

        started = time.perf_counter()
        stream = iter(ShardStream(config, args.batch_size))
        for _ in range(batches):
            next(stream)
        make = batches * args.batch_size / (time.perf_counter() - started)

        started = time.perf_counter()
        stream = iter(ShardStream(config, args.batch_size, skip=batches))
        next(stream)  # fast-forwards over `batches` batches, then makes one
        elapsed = time.perf_counter() - started - args.batch_size / make
        reread = batches * args.batch_size / elapsed
    print(f"{total} JPEGs of {args.size}x{args.size * 2 // 3} in {args.shards} shards ({size_mb:.1f} MB), "
          f"crops of {args.resolution}, batch {args.batch_size}, one worker:")  # fmt: skip
    print(f"  make training samples: {make:8.1f} samples/s")
    print(f"  exact-resume re-read:  {reread:8.1f} samples/s ({reread / make:.0f}x faster)")
    print(f"  so resuming after 1M samples per worker re-reads for {1e6 / reread / 60:.1f} min")


if __name__ == "__main__":
    main()
