"""Trainer: config validation, scheme objects, one step lowers the losses, resume restores the exact state."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fusion_perception.image_pairs import split_names  # noqa: E402
from fusion_perception.training.config import SCHEME_NAMES, load_config  # noqa: E402
from fusion_perception.training.schemes import SCHEMES  # noqa: E402
from fusion_perception.training.train_data import holdout_split  # noqa: E402
from fusion_perception.training.trainer import Trainer  # noqa: E402

# The config's default data.msrs_root ("msrs") resolves under $FUSION_PERCEPTION_DATA; the fixture
# skips, naming the variable, where MSRS is absent.
needs_msrs = pytest.mark.usefixtures("msrs_root")


def _tiny(tmp_path: Path, **over):
    base = {
        "data": {"batch_size": 2, "crop_width": 96, "crop_height": 64},
        "steps": 4,
        "warmup_steps": 0,
        "upper_every": 1,
        "out_dir": str(tmp_path / "run"),
        "threads": 1,
        "log_every": 1,
        "checkpoint_every": 2,
        "meta": {"recon_pretrain_steps": 2},
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
    with pytest.raises(ValueError, match="intensity_target must be one of"):  # not silently saliency
        load_config(None, {"loss": {"intensity_target": "maximum"}})
    with pytest.raises(ValueError, match="seg_box_core must lie in"):
        load_config(None, {"data": {"seg_box_core": 1.5}})
    with pytest.raises(ValueError, match="map_share must lie in"):
        load_config(None, {"data": {"map_share": -0.1}})


def test_shipped_training_config_loads() -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "train_bilevel.yaml")
    assert cfg.scheme == "bilevel" and cfg.upper_every >= 1


@needs_msrs
def test_training_steps_lower_the_losses_on_a_fixed_batch(tmp_path: Path) -> None:
    trainer = Trainer(
        _tiny(tmp_path, steps=40, fusion_lr=5e-3, lower_lr=5e-3, bilevel_modules=["seg", "det", "disc"])
    )
    batch = next(trainer.data.batches())
    first = trainer.train_step(batch)
    for _ in range(15):
        last = trainer.train_step(batch)
    assert last["det"] + last["seg"] < first["det"] + first["seg"]
    assert last["upper/fusion"] < first["upper/fusion"]
    for name in ("seg", "det", "disc"):
        assert {f"upper/c_{name}", f"upper/w_{name}", f"upper/F_{name}", f"upper/f_{name}"} <= last.keys()
        assert {f"upper/norm_correction_{name}", f"upper/cos_direct_correction_{name}"} <= last.keys()


@needs_msrs
def test_logged_lower_losses_are_means_over_the_steps_since_the_last_log(tmp_path: Path) -> None:
    """One step's value is one batch's (with log_every a multiple of pseudo_every, always a
    teacher-labelled one); the log holds the mean of every step since the previous log."""
    trainer = Trainer(_tiny(tmp_path, scheme="plain", steps=4, log_every=4, upper_every=8))
    seen: list[dict[str, float]] = []
    step = trainer.train_step

    def recorded(batch: dict) -> dict[str, float]:
        seen.append(step(batch))
        return seen[-1]

    trainer.train_step = recorded
    row = next(r for r in trainer.fit(progress=False) if r["step"] == 4)
    assert len(seen) == 4 and len({s["det"] for s in seen}) > 1
    assert row["det"] == pytest.approx(sum(s["det"] for s in seen) / 4)
    assert row["seg"] == pytest.approx(sum(s["seg"] for s in seen) / 4)


@needs_msrs
def test_upper_steps_are_logged_whatever_log_every_is(tmp_path: Path) -> None:
    """log_every a multiple of upper_every used to hide every upper step; now each one is logged."""
    trainer = Trainer(_tiny(tmp_path, steps=4, upper_every=2, log_every=4))
    history = trainer.fit(progress=False)
    upper_rows = [row for row in history if "upper/c_det" in row]
    assert [row["step"] for row in upper_rows] == [1, 3]
    assert all("upper/w_seg" in row and "upper/F_det" in row for row in upper_rows)


def test_holdout_is_fixed_disjoint_and_seed_independent() -> None:
    names = [f"{i:05d}D" for i in range(270)]
    lower, upper = holdout_split(names, 0.1)
    assert len(upper) == 27 and not set(lower) & set(upper) and set(lower) | set(upper) == set(names)
    assert holdout_split(list(reversed(names)), 0.1)[1] == upper  # order of the split file is irrelevant


@needs_msrs
def test_upper_batches_come_from_the_held_out_pairs(tmp_path: Path) -> None:
    trainer = Trainer(_tiny(tmp_path))
    upper = {stem for stem, _, _ in trainer.data.upper_set.pairs}
    lower = {stem for stem, _, _ in trainer.data.train_set.pairs}
    assert upper and not upper & lower
    assert set(trainer.data.held_out()["names"]) <= upper


@needs_msrs
@pytest.mark.parametrize(
    ("over", "held"),
    [
        ({"scheme": "plain"}, False),  # no upper-level objective: every train pair trains
        ({"scheme": "bilevel", "freeze_fusion": True}, False),  # F frozen: no upper step reads them
        ({"scheme": "bilevel"}, True),
        ({"scheme": "tdfusion"}, True),
    ],
)
def test_pairs_are_held_out_only_for_an_upper_objective_that_reads_them(
    tmp_path: Path, over: dict, held: bool
) -> None:
    trainer = Trainer(_tiny(tmp_path, **over))
    split = set(split_names(trainer.data.paths.msrs, trainer.cfg.data.train_split))
    lower = {stem for stem, _, _ in trainer.data.train_set.pairs}
    if held:
        assert trainer.data.upper_set is not None and len(trainer.data.upper_set) == round(0.1 * len(split))
        assert lower == split - {stem for stem, _, _ in trainer.data.upper_set.pairs}
    else:
        assert trainer.data.upper_set is None and lower == split
        with pytest.raises(RuntimeError, match="holds no pairs out"):
            trainer.data.held_out()
    assert f"{len(lower)} lower-level pairs" in trainer.data.describe()


@needs_msrs
@pytest.mark.parametrize(
    ("scheme", "aggregation"),
    [
        ("bilevel", "random"),
        ("bilevel", "normalized"),
        ("bilevel", "min_norm"),
        ("tdfusion", "min_norm"),
        ("refusion", "min_norm"),
    ],
)
def test_resume_restores_the_exact_state(tmp_path: Path, scheme: str, aggregation: str) -> None:
    over = {"scheme": scheme, "aggregation": aggregation, "meta": {"meta_every": 1}}
    if scheme == "bilevel":
        over["bilevel_modules"] = ["seg", "det", "disc"]
    straight = Trainer(_tiny(tmp_path / "a", **over))
    straight.fit(progress=False)

    first = Trainer(_tiny(tmp_path / "b", **over))
    first.fit(progress=False, stop_at=2)  # interrupted; checkpoint_every=2 saved step 2
    ckpt = torch.load(Path(first.cfg.out_dir) / "last.pt", weights_only=False)
    assert len(ckpt["rng"]) == 1  # one sampling state per rank
    resumed = Trainer(_tiny(tmp_path / "b", **over))
    resumed.load_state_dict(ckpt)
    assert resumed.step == 2
    resumed.fit(progress=False)

    modules = {"fusion": straight.nets.fusion, "tasks": straight.nets.tasks, **straight.scheme.modules()}
    again = {"fusion": resumed.nets.fusion, "tasks": resumed.nets.tasks, **resumed.scheme.modules()}
    assert set(modules) == set(again) and len(modules) >= 3  # + disc, or loss_net (and recon)
    for name, module in modules.items():
        a, b = module.state_dict(), again[name].state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs after resume"
    a, b = straight.nets.ema.module.state_dict(), resumed.nets.ema.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "EMA weights differ after resume"


@needs_msrs
@pytest.mark.parametrize("scheme", ["tdfusion", "refusion"])
def test_learnable_loss_schemes_log_every_meta_step_and_dump_weights(tmp_path: Path, scheme: str) -> None:
    trainer = Trainer(_tiny(tmp_path, scheme=scheme, steps=2, meta={"meta_every": 1}))
    history = trainer.fit(progress=False)
    meta_rows = [row for row in history if "upper/meta_outer" in row]
    assert [row["step"] for row in meta_rows] == [1, 2]
    for row in meta_rows:
        assert 0.05 <= row["upper/w_int_ir_min"] <= row["upper/w_int_ir_max"] <= 0.95
    assert ("upper/recon" in meta_rows[0]) == (scheme == "refusion")
    maps = trainer.dump_loss_weights(tmp_path / "maps", count=1)
    assert len(maps) == 1 and maps[0].stat().st_size > 0


@needs_msrs
def test_resume_with_another_world_size_is_refused(tmp_path: Path) -> None:
    trainer = Trainer(_tiny(tmp_path))
    state = trainer.state_dict()
    state["rng"] = state["rng"] * 2
    with pytest.raises(ValueError, match="2 rank"):
        Trainer(_tiny(tmp_path)).load_state_dict(state)


@needs_msrs
def test_checkpoint_exports_the_ema_weights(tmp_path: Path) -> None:
    trainer = Trainer(_tiny(tmp_path, steps=3))
    trainer.fit(progress=False)
    ckpt = torch.load(Path(trainer.cfg.out_dir) / "last.pt", weights_only=False)
    ema = trainer.nets.ema.module.state_dict()
    assert all(torch.equal(ckpt["tasks"][k], ema[f"tasks.{k}"]) for k in ckpt["tasks"])
    raw = trainer.nets.tasks.state_dict()
    assert any(not torch.equal(ckpt["tasks"][k], raw[k]) for k in raw if raw[k].is_floating_point())
    info = trainer.model_info()
    assert info.det_strides == (16, 32) and info.seg_stride == 8


def test_fusion_only_phase_needs_the_plain_scheme() -> None:
    with pytest.raises(ValueError, match="train_tasks"):
        load_config(None, {"train_tasks": False, "scheme": "bilevel"})


# --------------------------------------------------------------------------- scheme objects
def test_every_configurable_scheme_has_one_class() -> None:
    assert set(SCHEMES) == set(SCHEME_NAMES)
    assert all(cls.name == name for name, cls in SCHEMES.items())


@needs_msrs
@pytest.mark.parametrize(
    ("over", "modules", "state"),
    [
        ({"scheme": "plain"}, set(), set()),
        ({"scheme": "bilevel"}, set(), set()),  # seg + det only: no discriminator is built
        ({"scheme": "bilevel", "bilevel_modules": ["seg", "disc"]}, {"disc"}, {"disc", "opt_disc"}),
        ({"scheme": "bilevel", "bilevel_modules": ["disc"], "freeze_fusion": True}, set(), set()),
        ({"scheme": "tdfusion"}, {"loss_net"}, {"loss_net"}),
        ({"scheme": "refusion"}, {"loss_net", "recon"}, {"loss_net", "recon"}),
    ],
)
def test_schemes_build_only_the_modules_they_use(
    tmp_path: Path, over: dict, modules: set, state: set
) -> None:
    trainer = Trainer(_tiny(tmp_path, **over))
    assert type(trainer.scheme) is SCHEMES[over["scheme"]]
    assert set(trainer.scheme.modules()) == modules
    assert set(trainer.scheme.state_dict()) == state


@needs_msrs
def test_meta_step_and_fusion_update_both_see_both_source_orders(tmp_path: Path) -> None:
    """TDFusion's swap in both phases: every fusion-net call of the upper step (meta step's virtual
    step and outer objective, the real update) gets each pair as (IR, VIS) and as (VIS, IR)."""
    trainer = Trainer(_tiny(tmp_path, scheme="tdfusion", meta={"meta_every": 1}))
    batch = next(trainer.data.batches())
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    trainer.nets.fusion.register_forward_pre_hook(lambda _m, args: calls.append(args))
    logs = trainer.train_step(batch)
    assert "upper/meta_outer" in logs
    lower_call, *upper_calls = calls
    assert torch.equal(lower_call[0], batch["ir"])  # the task net's input: the deployed order only
    # virtual step on the batch (2 pairs), outer objective on the held-out batch (1 pair), update
    assert [first.shape[0] for first, _ in upper_calls] == [4, 2, 4]
    for first, second in upper_calls:
        n = first.shape[0] // 2
        assert torch.equal(first[:n], second[n:]) and torch.equal(first[n:], second[:n])
    for first, second in (upper_calls[0], upper_calls[2]):
        assert torch.equal(first[:2], batch["ir"]) and torch.equal(second[:2], batch["visible"][:, :1])


@needs_msrs
def test_refusion_starts_with_a_pretrained_reconstruction_net(tmp_path: Path) -> None:
    trainer = Trainer(_tiny(tmp_path, scheme="refusion"))
    heads = trainer.scheme.modules()["recon"]
    assert float(heads.head_ir.weight.detach().abs().sum()) > 0
    assert float(heads.head_vis.weight.detach().abs().sum()) > 0


@needs_msrs
def test_a_new_checkpoint_deploys_and_an_old_one_is_refused_for_resume(tmp_path: Path) -> None:
    from fusion_perception.models.checkpoint import load_deployed

    trainer = Trainer(_tiny(tmp_path, steps=1, checkpoint_every=1))
    trainer.fit(progress=False)
    path = Path(trainer.cfg.out_dir) / "last.pt"
    model = load_deployed(path)  # weights_only, as export and evaluate read it
    assert model.info.training["scheme"] == "bilevel"
    old = torch.load(path, weights_only=False)
    old.pop("scheme")
    with pytest.raises(ValueError, match="init_from"):
        Trainer(_tiny(tmp_path)).load_state_dict(old)
    with pytest.raises(ValueError, match="'bilevel' run"):
        Trainer(_tiny(tmp_path, scheme="plain")).load_state_dict(torch.load(path, weights_only=False))
