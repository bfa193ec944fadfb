"""Run under torchrun by test_distributed.py: train a few steps on 2 CPU ranks (gloo), then check
that every rank holds the same weights (gradients are averaged before each step) while the ranks
saw different batches."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from fusion_perception.training.config import load_config
from fusion_perception.training.distributed import init_distributed, shutdown_distributed
from fusion_perception.training.trainer import Trainer


def main(msrs: str, out: str) -> None:
    init_distributed()
    cfg = load_config(None, {
        "data": {"msrs_root": msrs, "batch_size": 2, "crop_width": 96, "crop_height": 64},
        "steps": 3, "warmup_steps": 0, "upper_every": 1, "out_dir": out, "threads": 1,
        "log_every": 1, "checkpoint_every": 3, "bilevel_modules": ["seg", "det", "disc"],
    })
    trainer = Trainer(cfg)
    first_batch = next(trainer.data.batches())["names"]
    trainer.fit(progress=False)  # checkpoint_every=3: saved at the end, RNG states of both ranks
    resumed = Trainer(cfg)
    resumed.load_state_dict(torch.load(Path(out) / "last.pt", weights_only=False))
    own_rng = torch.equal(resumed.data.gen.get_state(), trainer.data.gen.get_state())
    next_names = next(resumed.data.batches())["names"] == next(trainer.data.batches())["names"]
    modules = (trainer.nets.fusion, trainer.nets.tasks, *trainer.scheme.modules().values())
    flat = torch.cat([p.detach().reshape(-1) for m in modules for p in m.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    names = [None] * dist.get_world_size()
    dist.all_gather_object(names, first_batch)
    resume = [None] * dist.get_world_size()
    dist.all_gather_object(resume, own_rng and next_names)
    if dist.get_rank() == 0:
        same = all(torch.equal(gathered[0], g) for g in gathered[1:])
        distinct = names[0] != names[1]
        (Path(out) / "ddp_check.txt").write_text(
            f"same_weights={same} distinct_batches={distinct} resumed_own_rng={all(resume)}\n"
        )
    shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    # Skip interpreter teardown: under CPU load, PyTorch's gloo threads occasionally hit
    # std::terminate while Python finalises (SIGABRT after all work and checks are done), which
    # would make this test flaky without saying anything about gradient synchronisation.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
