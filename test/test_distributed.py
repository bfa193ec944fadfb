"""Multi-process training through torchrun (2 CPU ranks, gloo): the code path multi-GPU runs use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

def test_torchrun_ranks_stay_in_sync(tmp_path: Path, msrs_root: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).with_name("ddp_worker.py")), str(msrs_root), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    check = (tmp_path / "ddp_check.txt").read_text().split()
    assert check == ["same_weights=True", "distinct_batches=True", "resumed_own_rng=True"], check
    assert (tmp_path / "last.pt").is_file()  # rank 0 checkpoints
