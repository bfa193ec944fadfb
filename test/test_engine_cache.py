"""TensorRT engine cache rules, I/O planning, calibration data and `build-engine` argument handling.

All of this runs without TensorRT or a GPU; the one real build test is marked and skips with the
reason where TensorRT is absent.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fusion_perception.errors import DatasetError, EngineError, ModelFormatError
from fusion_perception.export.engine_build import calibration_batches
from fusion_perception.export.engine_cli import main as build_engine_main
from fusion_perception.image_pairs import find_pairs
from fusion_perception.runtime.engine_cache import (
    EngineKey,
    EngineMeta,
    ShapeProfile,
    engine_path_for,
    file_sha256,
    meta_path,
    parse_size,
    read_meta,
    resolve_engine,
    stale_reasons,
    timing_cache_path_for,
    write_meta,
)
from fusion_perception.runtime.model_info import ModelInfo
from fusion_perception.runtime.tensorrt_backend import TensorSpec, plan_io

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
KEY = EngineKey("10.3.0", "8.7", "fp16", "640x480", "ab" * 32)


# ---------------------------------------------------------------- sizes and profiles


def test_parse_size_accepts_wxh_and_rejects_the_rest() -> None:
    assert parse_size("640x480") == (640, 480)
    assert parse_size(" 320X256 ") == (320, 256)
    for bad in ("640", "640x", "x480", "640*480", "-640x480"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_size(bad)
    with pytest.raises(ValueError, match="multiples of 32"):
        parse_size("650x480")


def test_profile_for_fixed_model_refuses_other_shapes() -> None:
    info = ModelInfo(dynamic=False)
    assert ShapeProfile.for_model(info) == ShapeProfile.fixed((640, 480))
    assert ShapeProfile.for_model(info, opt_size="640x480").describe() == "640x480"
    with pytest.raises(ValueError, match=r"fixed 640x480 input.*'max': '1280x960'"):
        ShapeProfile.for_model(info, max_size="1280x960")


def test_profile_for_dynamic_model_defaults_and_order() -> None:
    info = ModelInfo(dynamic=True)
    profile = ShapeProfile.for_model(info, min_size="320x256", max_size="1280x960")
    assert (profile.min, profile.opt, profile.max) == ((320, 256), (640, 480), (1280, 960))
    assert profile.describe() == "320x256..640x480..1280x960" and not profile.is_fixed
    assert profile.nchw(3) == ((1, 3, 256, 320), (1, 3, 480, 640), (1, 3, 960, 1280))
    assert profile.contains((640, 256)) and not profile.contains((1312, 480))
    with pytest.raises(ValueError, match="heights must satisfy min <= opt <= max, got 512, 480, 960"):
        ShapeProfile.for_model(info, min_size="320x512", max_size="1280x960")


# ---------------------------------------------------------------- keys, staleness, metadata


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tensorrt_version", "10.7.0", "TensorRT version differs: engine has 10.3.0, needed 10.7.0"),
        ("compute_capability", "8.9", "GPU compute capability differs: engine has 8.7, needed 8.9"),
        ("precision", "fp32", "precision differs: engine has fp16, needed fp32"),
        ("input_shape", "320x256..640x480..640x480", "input shape profile differs"),
        ("onnx_sha256", "cd" * 32, "ONNX file sha256 differs: engine has abababababab, needed cdcdcdcdcdcd"),
    ],
)
def test_every_key_field_makes_an_engine_stale(field: str, value: str, message: str) -> None:
    other = replace(KEY, **{field: value})
    reasons = stale_reasons(KEY, other)
    assert len(reasons) == 1 and message in reasons[0]
    assert other.digest() != KEY.digest()
    assert stale_reasons(KEY, replace(KEY)) == []


def test_key_digest_is_stable_and_precision_checked() -> None:
    assert KEY.digest() == EngineKey(**json.loads(json.dumps(KEY.__dict__))).digest()
    assert len(KEY.digest()) == 12
    with pytest.raises(ValueError, match="precision must be one of"):
        replace(KEY, precision="bf16")


def test_engine_and_timing_cache_paths(tmp_path: Path) -> None:
    path = engine_path_for(tmp_path / "a" / "default.onnx", KEY)
    assert path == tmp_path / "a" / f"default.fp16.{KEY.digest()}.engine"
    assert engine_path_for(tmp_path / "default.onnx", KEY, tmp_path / "c").parent == tmp_path / "c"
    assert meta_path(path).name == path.name + ".json"
    assert timing_cache_path_for(tmp_path, KEY).name == "timing.trt10.3.0.sm87.cache"


def write_engine(folder: Path, key: EngineKey = KEY, payload: bytes = b"plan" * 100) -> Path:
    """A file standing in for engine bytes (the cache never parses them) plus its metadata."""
    engine = folder / "m.engine"
    engine.write_bytes(payload)
    write_meta(
        engine,
        EngineMeta(
            key=key,
            info=ModelInfo(),
            engine_sha256=file_sha256(engine),
            engine_bytes=len(payload),
            onnx_path="m.onnx",
            build_seconds=1.5,
        ),
    )
    return engine


def test_meta_round_trip_and_plain_engine_file(tmp_path: Path) -> None:
    engine = write_engine(tmp_path)
    assert engine.read_bytes() == b"plan" * 100  # no header prepended
    meta = read_meta(engine)
    assert meta.key == KEY and meta.info == ModelInfo() and meta.build_seconds == 1.5
    raw = json.loads(meta_path(engine).read_text())
    assert raw["key_digest"] == KEY.digest() and raw["model_info"]["det_classes"] == [
        "person",
        "bicycle",
        "car",
    ]


def test_bad_metadata_is_an_engine_error(tmp_path: Path) -> None:
    engine = write_engine(tmp_path)
    meta_path(engine).write_text("{not json")
    with pytest.raises(EngineError, match="not valid JSON"):
        read_meta(engine)
    meta_path(engine).write_text(json.dumps({"format": 99}))
    with pytest.raises(EngineError, match="format 99, expected 1"):
        read_meta(engine)
    meta_path(engine).write_text(json.dumps({"format": 1, "key": {}}))
    with pytest.raises(EngineError, match="lacks or mistypes"):
        read_meta(engine)


def test_resolve_loads_a_fresh_engine(tmp_path: Path) -> None:
    decision = resolve_engine(write_engine(tmp_path), KEY, allow_build=False)
    assert decision.action == "load" and decision.reasons == () and decision.meta.key == KEY


def test_resolve_rebuilds_missing_empty_foreign_corrupt_and_stale(tmp_path: Path) -> None:
    assert "no engine file at" in resolve_engine(tmp_path / "none.engine", KEY, allow_build=True).reasons[0]
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"")
    assert "is empty" in resolve_engine(engine, KEY, allow_build=True).reasons[0]
    engine.write_bytes(b"bytes from trtexec")  # foreign: no metadata beside it
    assert "has no metadata file" in resolve_engine(engine, KEY, allow_build=True).reasons[0]
    engine = write_engine(tmp_path)
    engine.write_bytes(engine.read_bytes()[:-7])  # truncated copy
    assert "corrupt or was replaced" in resolve_engine(engine, KEY, allow_build=True).reasons[0]
    engine = write_engine(tmp_path, key=replace(KEY, compute_capability="7.2"))
    decision = resolve_engine(engine, KEY, allow_build=True)
    assert decision.action == "build" and decision.reasons == (
        "GPU compute capability differs: engine has 7.2, needed 8.7",
    )


def test_resolve_refuses_with_a_clear_message_when_building_is_disabled(tmp_path: Path) -> None:
    engine = write_engine(tmp_path, key=replace(KEY, tensorrt_version="8.6.1"))
    with pytest.raises(EngineError) as info:
        resolve_engine(engine, KEY, allow_build=False, onnx_path=tmp_path / "m.onnx")
    text = str(info.value)
    assert "TensorRT version differs: engine has 8.6.1, needed 10.3.0" in text
    assert "Building is disabled" in text and f"build-engine {tmp_path / 'm.onnx'} --precision fp16" in text


# ---------------------------------------------------------------- I/O plan


def io_table(**changes: TensorSpec) -> dict[str, TensorSpec]:
    f32 = np.dtype(np.float32)
    table = {
        "ir": TensorSpec((1, 1, 480, 640), f32, True),
        "visible": TensorSpec((1, 3, 480, 640), f32, True),
        "fused": TensorSpec((1, 1, 480, 640), f32, False),
        "segmentation": TensorSpec((1, 9, 120, 160), f32, False),
        "detections": TensorSpec((1, 6000, 8), f32, False),
    }
    table.update(changes)
    return table


def test_plan_io_resolves_bytes_per_tensor() -> None:
    plans = plan_io(io_table(extra_debug=TensorSpec((1, 4), np.dtype(np.float32), False)))
    assert set(plans) == {"ir", "visible", "fused", "segmentation", "detections"}
    assert plans["visible"].nbytes == 3 * 480 * 640 * 4 and plans["visible"].is_input
    assert plans["detections"].nbytes == 6000 * 8 * 4 and not plans["detections"].is_input


def test_plan_io_rejects_contract_violations() -> None:
    f32, f16 = np.dtype(np.float32), np.dtype(np.float16)
    table = io_table()
    del table["segmentation"]
    with pytest.raises(ModelFormatError, match="expected inputs"):
        plan_io(table)
    with pytest.raises(ModelFormatError, match="expected inputs"):
        plan_io(io_table(fused=TensorSpec((1, 1, 480, 640), f32, True)))
    with pytest.raises(ModelFormatError, match="'ir' is float16, expected float32"):
        plan_io(io_table(ir=TensorSpec((1, 1, 480, 640), f16, True)))
    with pytest.raises(ModelFormatError, match="unresolved shape"):
        plan_io(io_table(fused=TensorSpec((1, 1, -1, -1), f32, False)))
    with pytest.raises(ModelFormatError, match=r"expected \[N, 3, H, W\]"):
        plan_io(io_table(visible=TensorSpec((1, 1, 480, 640), f32, True)))


# ---------------------------------------------------------------- calibration data


def test_calibration_batches_are_prepared_real_pairs(msrs_root: Path) -> None:
    pairs = find_pairs(msrs_root)[:5]
    assert len(pairs) == 5 and all(stem == i.stem == v.stem for stem, i, v in pairs)
    batches = list(calibration_batches(pairs, (320, 256)))
    assert len(batches) == 5
    for batch in batches:
        assert batch["ir"].shape == (1, 1, 256, 320) and batch["visible"].shape == (1, 3, 256, 320)
        for array in batch.values():
            assert array.dtype == np.float32 and array.min() >= 0.0 and array.max() <= 1.0
        assert batch["ir"].std() > 0.01 and batch["visible"][0, 0].std() > 0.01  # real content
    assert not np.array_equal(batches[0]["ir"], batches[1]["ir"])


def test_find_pairs_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="has no IR folder"):
        find_pairs(tmp_path)
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    (tmp_path / "ir" / "a.png").write_bytes(b"")
    (tmp_path / "vi" / "b.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"2 image\(s\) without a partner"):
        find_pairs(tmp_path)


# ---------------------------------------------------------------- build-engine command


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from fusion_perception.export.cli import export_variants
    from fusion_perception.models.checkpoint import random_deployed

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("onnx")
    export_variants(random_deployed(3, ModelInfo(input_width=160, input_height=128)), out, "small")
    return out


def test_build_engine_validates_arguments_before_needing_tensorrt(
    onnx_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fixed, dynamic = onnx_models / "small.onnx", onnx_models / "small_dynamic.onnx"
    cases = [
        ([str(fixed), "--max-shape", "320x256"], "fixed 160x128 input"),
        ([str(dynamic), "--min-shape", "320x256"], "min <= opt <= max"),
        ([str(dynamic), "--max-shape", "100x100"], "multiples of 32"),
        ([str(fixed), "--precision", "int8"], "INT8 needs calibration pairs"),
        (
            [str(fixed), "--precision", "int8", "--calib-dir", str(tmp_path)],
            "has no IR folder",
        ),
        ([str(tmp_path / "none.onnx")], "does not exist"),
    ]
    for argv, message in cases:
        assert build_engine_main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message shown where TensorRT is missing")
def test_build_engine_says_tensorrt_is_missing(
    onnx_models: Path, sample_pairs_msrs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        str(onnx_models / "small_dynamic.onnx"),
        "--min-shape",
        "128x96",
        "--max-shape",
        "320x256",
        "--precision",
        "int8",
        "--calib-dir",
        str(sample_pairs_msrs),
        "--calib-count",
        "2",
    ]
    assert build_engine_main(argv) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT is not installed on this machine")
def test_build_engine_then_reuse_from_cache(onnx_models: Path, tmp_path: Path) -> None:
    argv = [str(onnx_models / "small.onnx"), "--cache-dir", str(tmp_path), "--precision", "fp32"]
    assert build_engine_main(argv) == 0
    engines = list(tmp_path.glob("*.engine"))
    assert len(engines) == 1 and read_meta(engines[0]).key.precision == "fp32"
    built = engines[0].stat().st_mtime_ns
    assert build_engine_main([*argv, "--no-build"]) == 0  # up to date: nothing rebuilt
    assert engines[0].stat().st_mtime_ns == built
    assert list(tmp_path.glob("timing.*.cache"))
