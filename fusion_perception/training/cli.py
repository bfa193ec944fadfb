"""``fusion-perception train --config config/train_bilevel.yaml [--set key=value ...] [--resume]``.

Multi-GPU: ``torchrun --nproc_per_node=N -m fusion_perception.cli train --config ... --device cuda``
(every rank samples its own batches; gradients are averaged before each step).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml

__all__ = ["main", "parse_overrides"]


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["data.batch_size=4", "scheme=plain"]`` -> nested dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusion-perception train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, help="YAML config (defaults: TrainConfig)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set steps=100 --set data.batch_size=4",
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt if it exists")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (overrides the config)")
    parser.add_argument("--seed", type=int, help="random seed (overrides the config)")
    parser.add_argument("--export", type=Path, help="write the trained deployed graph to this ONNX file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    parser.add_argument(
        "--dump-loss-weights",
        type=Path,
        metavar="DIR",
        help="tdfusion/refusion: after training, write the loss net's per-pixel weight maps of the "
        "first four validation pairs to DIR (PNG)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import torch

    from ..export.onnx_export import export_onnx
    from .config import load_config
    from .distributed import init_distributed, shutdown_distributed
    from .schemes import SCHEMES, LearnedLossScheme
    from .trainer import Trainer

    overrides = parse_overrides(args.overrides)
    if args.device:
        overrides["device"] = args.device
    if args.seed is not None:
        overrides["seed"] = args.seed
    try:
        config = load_config(args.config, overrides)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    if args.dump_loss_weights and not issubclass(SCHEMES[config.scheme], LearnedLossScheme):
        parser.error("--dump-loss-weights needs scheme tdfusion or refusion")
    init_distributed()
    trainer = Trainer(config)
    last = Path(config.out_dir) / "last.pt"
    if args.resume and last.is_file():
        trainer.load_state_dict(torch.load(last, map_location=trainer.device, weights_only=False))
        logging.info("resumed from %s at step %d", last, trainer.step)
    trainer.fit(progress=not args.no_progress)
    if args.export and trainer.rank == 0:
        export_onnx(trainer.deployed().cpu(), args.export)
    if args.dump_loss_weights and trainer.rank == 0:
        written = trainer.dump_loss_weights(args.dump_loss_weights)
        logging.info("wrote %d loss-weight maps to %s", len(written), args.dump_loss_weights)
    shutdown_distributed()  # not on errors: a barrier there could wait forever for a dead rank
    return 0
