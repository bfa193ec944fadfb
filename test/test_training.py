"""Trainer: config validation, one step lowers the losses, resume restores the exact state."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fusion_perception.training.config import load_config  # noqa: E402
from fusion_perception.training.trainer import Trainer  # noqa: E402

MSRS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "msrs"
needs_msrs = pytest.mark.skipif(
    not MSRS.is_dir(), reason="MSRS dataset (../shared/datasets/msrs) not present"
)


def _tiny(tmp_path: Path, **over):
    base = {
        "data": {"msrs_root": str(MSRS), "batch_size": 2, "crop_width": 96, "crop_height": 64},
        "steps": 4,
        "warmup_steps": 0,
        "upper_every": 1,
        "out_dir": str(tmp_path / "run"),
        "threads": 1,
        "log_every": 1,
        "checkpoint_every": 2,
    }
    for key, value in over.items():
        if isinstance(value, dict):
            base.setdefault(key, {}).update(value)
        else:
            base[key] = value
    return load_config(None, base)


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ValueError, match="did you mean 'aggregation'"):
        load_config(None, {"agregation": "random"})
    with pytest.raises(ValueError, match="crop size"):
        load_config(None, {"data": {"crop_width": 100}})
    with pytest.raises(ValueError, match="aggregation must be one of"):
        load_config(None, {"aggregation": "mean"})


def test_shipped_training_config_loads() -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "train_bilevel.yaml")
    assert cfg.scheme == "bilevel" and cfg.upper_every >= 1


@needs_msrs
def test_training_steps_lower_the_losses_on_a_fixed_batch(tmp_path: Path) -> None:
    trainer = Trainer(_tiny(tmp_path, steps=40, fusion_lr=5e-3, lower_lr=5e-3))
    batch = next(trainer.batches())
    first = trainer.train_step(batch)
    for _ in range(15):
        last = trainer.train_step(batch)
    assert last["det"] + last["seg"] < first["det"] + first["seg"]
    assert last["fusion"] < first["fusion"]
    assert {"c_seg", "c_det", "c_disc", "w_seg", "w_det", "w_disc"} <= last.keys()


@needs_msrs
@pytest.mark.parametrize("aggregation", ["random", "normalized", "min_norm"])
def test_resume_restores_the_exact_state(tmp_path: Path, aggregation: str) -> None:
    straight = Trainer(_tiny(tmp_path / "a", aggregation=aggregation))
    straight.fit(progress=False)

    first = Trainer(_tiny(tmp_path / "b", aggregation=aggregation))
    first.fit(progress=False, stop_at=2)  # interrupted; checkpoint_every=2 saved step 2
    ckpt = torch.load(Path(first.cfg.out_dir) / "last.pt", weights_only=False)
    resumed = Trainer(_tiny(tmp_path / "b", aggregation=aggregation))
    resumed.load_state_dict(ckpt)
    assert resumed.step == 2
    resumed.fit(progress=False)

    for name in ("fusion", "tasks", "disc"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs after resume"
