"""``fusion-perception quantize``: INT8 (QDQ) model that keeps the contract, the metadata and the fused image.

Calibration uses 4 MSRS train pairs (fast); the accuracy check runs a bundled val pair, never seen in
calibration, through both models.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from fusion_perception.assets import load_sample_pairs as sample_pairs
from fusion_perception.backend_factory import create_backend
from fusion_perception.errors import DatasetError, ModelFormatError
from fusion_perception.export.quantize import (
    QUANT_METADATA_KEY,
    QuantizeOptions,
    calibration_pairs,
    quantize_model,
    tail_nodes,
)
from fusion_perception.export.quantize_cli import main
from fusion_perception.runtime.backend import OnnxRuntimeBackend
from fusion_perception.runtime.backends import int8_model_path
from fusion_perception.runtime.model_info import INPUT_NAMES, METADATA_KEY, OUTPUT_NAMES
from fusion_perception.runtime.pipeline import Pipeline

CALIB_PAIRS = 4
#: Allowed |INT8 - FP32| of the fused image in uint8 levels (0-255) on a real val pair, with only
#: 4 calibration pairs: mean and 99th percentile over pixels. Measured on the shipped model: default
#: options 0.02 mean, p99 1 level; with the fused tail quantized (``--no-fp32-tails``) mean 0.18;
#: everything quantized (``--no-fp32-tails --op-types= --min-conv-channels 1``) mean 0.53, max 11.
FUSED_MEAN_LEVELS = 0.1
FUSED_P99_LEVELS = 2.0


@pytest.fixture(scope="module")
def quantized(
    model_path: Path, msrs_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, dict]:
    """(FP32 copy, its INT8 sibling, the facts) in a temporary folder; skips without MSRS."""
    folder = tmp_path_factory.mktemp("quantize")
    fp32 = folder / "model.onnx"
    shutil.copy(model_path, fp32)
    pairs = calibration_pairs(msrs_root, "train", CALIB_PAIRS)
    facts = quantize_model(fp32, int8_model_path(fp32), pairs)
    return fp32, int8_model_path(fp32), facts


def _io(path: Path) -> dict[str, list]:
    model = onnx.load(str(path))
    dims = lambda v: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]  # noqa: E731
    return {v.name: dims(v) for v in (*model.graph.input, *model.graph.output)}


def test_int8_model_keeps_io_contract_and_metadata(
    quantized: tuple[Path, Path, dict], msrs_root: Path
) -> None:
    fp32, int8, facts = quantized
    assert int8.name == "model_int8.onnx"
    backend = OnnxRuntimeBackend(int8)  # the project's backend validates names and metadata
    assert backend.info == OnnxRuntimeBackend(fp32).info
    assert _io(int8) == _io(fp32) and set(_io(int8)) == {*INPUT_NAMES, *OUTPUT_NAMES}
    props = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert METADATA_KEY in props and json.loads(props[QUANT_METADATA_KEY]) == facts
    beside = json.loads((int8.parent / "model_int8.quantization.json").read_text())
    assert beside == facts and facts["calibration_pairs"] == CALIB_PAIRS
    train = set((msrs_root / "splits" / "train.txt").read_text().split())
    assert set(facts["calibration_names"]) <= train  # calibration never sees val pairs


def test_convs_run_in_int8_except_the_fp32_tails(quantized: tuple[Path, Path, dict]) -> None:
    _, int8, facts = quantized
    graph = onnx.load(str(int8)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    reads_int8 = {n.name for n in graph.node
                  if any(producer.get(name) == "DequantizeLinear" for name in n.input)}
    convs = {n.name for n in graph.node if n.op_type == "Conv"}
    kept = {n for names in facts["kept_fp32"].values() for n in names}
    assert facts["ops_reading_int8"]["Conv"] >= len(convs) // 2
    assert not (kept & convs & reads_int8), "a Conv kept FP32 reads an INT8 tensor"
    assert convs - kept <= reads_int8, "a Conv that should be INT8 is not"
    assert any(name.endswith("Conv") for name in facts["kept_fp32"]["tail:fused"])


def test_fused_output_stays_within_tolerance_of_fp32_on_a_real_pair(quantized: tuple) -> None:
    fp32, int8, _ = quantized
    (_, ir, visible), = sample_pairs(1)  # a val pair: not among the calibration pairs
    ref = Pipeline(OnnxRuntimeBackend(fp32))(ir, visible)
    got = Pipeline(OnnxRuntimeBackend(int8))(ir, visible)
    diff = np.abs(got.fused_bgr.astype(np.int16) - ref.fused_bgr.astype(np.int16))
    assert diff.mean() <= FUSED_MEAN_LEVELS and np.percentile(diff, 99) <= FUSED_P99_LEVELS, (
        f"fused |INT8 - FP32|: mean {diff.mean():.3f}, p99 {np.percentile(diff, 99)} levels")
    assert (got.labels == ref.labels).mean() > 0.9  # segmentation mostly unchanged


def test_tail_walks_back_to_the_last_conv() -> None:
    node = onnx.helper.make_node
    graph = onnx.helper.make_graph(
        [node("Conv", ["x", "w"], ["a"], name="early"), node("Relu", ["a"], ["b"], name="relu"),
         node("Conv", ["b", "w2"], ["c"], name="last"), node("Add", ["c", "x"], ["d"], name="add"),
         node("Clip", ["d"], ["out"], name="clip")],
        "g", [], [])
    assert tail_nodes(graph, "out") == ["clip", "add", "last"]


def test_precision_int8_loads_the_sibling_and_fails_clearly_without_it(
    quantized: tuple[Path, Path, dict], tmp_path: Path,
) -> None:
    fp32, int8, _ = quantized
    assert create_backend("onnxruntime", fp32, precision="int8").model_path == int8
    assert create_backend("onnxruntime", fp32, precision="fp16").model_path == fp32
    assert create_backend("onnxruntime", int8, precision="int8").model_path == int8
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(fp32, lonely)
    with pytest.raises(ModelFormatError, match=r"lonely_int8\.onnx.*fusion-perception quantize"):
        create_backend("onnxruntime", lonely, precision="int8")


def test_bad_requests_fail_with_a_reason(model_path: Path, msrs_root: Path, tmp_path: Path, capsys) -> None:
    args = [str(model_path), "--out", str(tmp_path / "q.onnx"), "--calib", str(msrs_root)]
    assert main([*args, "--limit", "1", "--exclude", "nope*"]) == 2
    assert "matches no node" in capsys.readouterr().err
    assert main([*args, "--split", "no_such_split"]) == 2
    assert "no_such_split" in capsys.readouterr().err
    with pytest.raises(ValueError, match="overwrite"):
        quantize_model(model_path, model_path, calibration_pairs(msrs_root, "train", 1))
    with pytest.raises(ValueError, match="calibrate_method"):
        QuantizeOptions(calibrate_method="mse")
    with pytest.raises(DatasetError):
        calibration_pairs(tmp_path, None)
