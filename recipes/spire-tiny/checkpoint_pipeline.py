"""A pipeline folder from a `spire train` checkpoint (its EMA weights when the run keeps one).

    python recipes/spire-tiny/checkpoint_pipeline.py recipes/spire-tiny/adaptor.yaml \
        RUN/checkpoint-0001200 -o RUN/pipeline-1200 [--set model.prior=frozen ...]

For comparing runs at one step count (the ablations) without waiting for a run's end.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--set", action="append", default=[], help="the run's --set overrides")
    args = parser.parse_args()
    from safetensors.torch import load_file

    from spire_ir.training.spire import SpireTask, TrainConfig
    from spire_ir.utils.config import load_config

    task = SpireTask(load_config(TrainConfig, args.config, args.set))
    checkpoint = Path(args.checkpoint)
    weights = checkpoint / "ema.safetensors"
    if not weights.is_file():
        weights = checkpoint / "model.safetensors"
    state = load_file(str(weights))
    missing, unexpected = task.trainable.load_state_dict(state, strict=False)
    trainable = {n for n, p in task.trainable.named_parameters()}
    if unexpected or trainable & set(missing):
        raise SystemExit(
            f"{weights} does not fit this config: missing {sorted(missing)[:3]}, unexpected {unexpected[:3]}"
        )
    task.pipeline(task.trainable.eval()).save_pretrained(args.output)
    print(f"{weights} -> {args.output}")


if __name__ == "__main__":
    main()
