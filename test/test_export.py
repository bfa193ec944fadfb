"""Checkpoint format, `fusion-perception export`, and ONNX Runtime vs PyTorch parity on real pairs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from fusion_perception.errors import ModelFormatError
from fusion_perception.export.cli import PARITY_TOLERANCE, main, parity_errors
from fusion_perception.export.engine_build import calibration_batches
from fusion_perception.image_pairs import find_pairs
from fusion_perception.models.checkpoint import (
    build_deployed,
    default_model_config,
    load_deployed,
    random_deployed,
    save_deployed,
)
from fusion_perception.runtime.model_info import METADATA_KEY, ModelInfo


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)  # the machine is shared; the model is small
    model = random_deployed(seed=7)
    return save_deployed(
        model, tmp_path_factory.mktemp("ckpt") / "model.pt", default_model_config(model.info)
    )


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory, sample_pairs_msrs: Path) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    argv = [str(checkpoint), "--out-dir", str(out), "--verify-dir", str(sample_pairs_msrs)]
    assert main([*argv, "--verify-count", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def real_inputs(sample_pairs_msrs: Path) -> list[dict[str, np.ndarray]]:
    """Three shipped sample pairs (real MSRS content) at 640x480."""
    return list(calibration_batches(find_pairs(sample_pairs_msrs)[:3], (640, 480)))


def test_checkpoint_round_trip_keeps_weights_info_and_outputs(checkpoint: Path, real_inputs: list) -> None:
    original = random_deployed(seed=7)
    loaded = load_deployed(checkpoint)
    assert loaded.info == original.info and not loaded.training
    batch = real_inputs[0]
    with torch.no_grad():
        a = original(torch.from_numpy(batch["ir"]), torch.from_numpy(batch["visible"]))
        b = loaded(torch.from_numpy(batch["ir"]), torch.from_numpy(batch["visible"]))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_checkpoint_extra_trainer_keys_are_ignored(tmp_path: Path) -> None:
    model = random_deployed(seed=1)
    path = save_deployed(model, tmp_path / "m.pt", default_model_config(model.info))
    raw = torch.load(path, weights_only=True)
    raw.update(optimizer={"state": {}, "param_groups": []}, step=1200)
    torch.save(raw, path)
    assert load_deployed(path).info == model.info


def test_checkpoint_keeps_the_detection_levels(tmp_path: Path) -> None:
    """A task net with a stride-4 detection level (8 px at task_scale 2) loads with its strides, and a
    model info that lays anchors on other strides is refused rather than decoded wrongly."""
    config = {"fusion": {}, "tasks": {"det_levels": [4, 8, 16]}}
    info = replace(ModelInfo(), det_strides=(8, 16, 32))
    path = save_deployed(build_deployed(config, info), tmp_path / "fine.pt", config)
    assert load_deployed(path).tasks.det_strides == (8, 16, 32)
    with pytest.raises(ModelFormatError, match=r"strides \(8, 16, 32\).*\(16, 32\)"):
        build_deployed(config, ModelInfo())


def test_checkpoint_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="does not exist"):
        load_deployed(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ModelFormatError, match="not a readable torch checkpoint"):
        load_deployed(tmp_path / "text.pt")
    model = random_deployed(seed=2)
    torch.save({"fusion": model.fusion.state_dict()}, tmp_path / "partial.pt")
    with pytest.raises(ModelFormatError, match=r"lacks \['tasks', 'info', 'model_config'\]"):
        load_deployed(tmp_path / "partial.pt")
    wide = {"fusion": {"width": 16}, "tasks": {}}
    save_deployed(model, tmp_path / "wide.pt", wide)
    with pytest.raises(ModelFormatError, match="'fusion' weights do not fit"):
        load_deployed(tmp_path / "wide.pt")
    three_class_config = default_model_config(model.info)
    model.info = replace(model.info, det_classes=("person", "car"))
    save_deployed(model, tmp_path / "classes.pt", three_class_config)
    with pytest.raises(ModelFormatError, match="num_det_classes=3 but the model info lists 2"):
        load_deployed(tmp_path / "classes.pt")


def test_export_writes_fixed_and_dynamic_onnx_with_metadata(exported: Path) -> None:
    for name, dynamic in (("model", False), ("model_dynamic", True)):
        proto = onnx.load(str(exported / f"{name}.onnx"))
        meta = {p.key: p.value for p in proto.metadata_props}
        info = ModelInfo.from_json(meta[METADATA_KEY])
        assert info.dynamic is dynamic and info.input_size == (640, 480)
        assert ModelInfo.load(exported / f"{name}.json") == info
        dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
        assert dims == (["batch", 1, "height", "width"] if dynamic else [1, 1, 480, 640])


@pytest.mark.parametrize("name", ["model", "model_dynamic"])
def test_onnxruntime_matches_torch_on_real_pairs(
    exported: Path, checkpoint: Path, real_inputs: list, name: str
) -> None:
    """All three outputs within PARITY_TOLERANCE on 3 real (sample) pairs at 640x480."""
    errors = parity_errors(load_deployed(checkpoint), exported / f"{name}.onnx", real_inputs)
    assert set(errors) == set(PARITY_TOLERANCE)
    assert all(v <= 0 for v in errors.values()), errors


def test_dynamic_onnx_matches_torch_at_another_size(
    exported: Path, checkpoint: Path, sample_pairs_msrs: Path
) -> None:
    inputs = list(calibration_batches(find_pairs(sample_pairs_msrs)[:2], (320, 256)))
    errors = parity_errors(load_deployed(checkpoint), exported / "model_dynamic.onnx", inputs)
    assert all(v <= 0 for v in errors.values()), errors


def test_parity_check_fails_for_a_different_model(exported: Path, real_inputs: list) -> None:
    errors = parity_errors(random_deployed(seed=8), exported / "model.onnx", real_inputs[:1])
    assert all(v > 0 for v in errors.values()), errors


def test_export_cli_size_flag_and_bad_input(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(checkpoint), "--out-dir", str(tmp_path), "--size", "320x256", "--no-dynamic"]) == 0
    assert not (tmp_path / "model_dynamic.onnx").exists()
    info = json.loads((tmp_path / "model.json").read_text())
    assert (info["input_width"], info["input_height"], info["dynamic"]) == (320, 256, False)
    assert main([str(checkpoint), "--out-dir", str(tmp_path), "--size", "330x256"]) == 2
    assert "multiples of 32" in capsys.readouterr().err
    assert main([str(tmp_path / "nope.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
