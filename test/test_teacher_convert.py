"""The TF.js -> torch -> ONNX conversion of NanoDet-g cannot hide an error.

* torch vs an independent NumPy interpretation of the TF graph (TensorFlow layouts, op by op), on a
  real MSRS image: every one of the six outputs, max abs difference <= 1e-4 (scores in [0, 1]) and
  <= 1e-3 (distance logits, |x| up to ~10); measured 1.2e-6 and 2.3e-5;
* ONNX Runtime vs torch on two real images in one batch: same tolerances; measured ~1e-6 / ~1e-5;
* a small synthetic graph whose transposes disagree with each other exercises the layout tracking
  where NanoDet-g's graph would not (mismatched Add / Concat layouts, SAME padding, no fusion).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from fusion_perception.assets import sample_pairs  # noqa: E402
from fusion_perception.errors import ModelFormatError  # noqa: E402
from fusion_perception.teacher.assets import MODEL_JSON, source_digest  # noqa: E402
from fusion_perception.teacher.export import TEACHER_METADATA_KEY, convert  # noqa: E402
from fusion_perception.teacher.graph_numpy import run_graph  # noqa: E402
from fusion_perception.teacher.model import letterbox_tensor, load_teacher_module  # noqa: E402
from fusion_perception.teacher.nanodet import MEAN_BGR, STD_BGR, letterbox  # noqa: E402
from fusion_perception.teacher.runner import ensure_onnx  # noqa: E402
from fusion_perception.teacher.tfjs import GraphModel, Node, read_graph_model  # noqa: E402
from fusion_perception.teacher.torch_graph import TfjsGraphModule  # noqa: E402

SCORE_ATOL, LOGIT_ATOL = 1e-4, 1e-3


def _real_inputs() -> np.ndarray:
    """Two letterboxed real images, BGR 0..255: an MSRS visible frame and its IR frame."""
    pair = sample_pairs()[0]
    vis, _ = letterbox(cv2.imread(str(pair.visible), cv2.IMREAD_COLOR))
    ir, _ = letterbox(cv2.imread(str(pair.ir), cv2.IMREAD_GRAYSCALE))
    return np.concatenate([vis, ir])


@pytest.fixture(scope="module")
def teacher() -> torch.nn.Module:
    return load_teacher_module()


def test_torch_module_matches_the_numpy_interpretation_of_the_tfjs_graph() -> None:
    graph = read_graph_model(MODEL_JSON)
    module = TfjsGraphModule(graph).eval()
    bgr = _real_inputs()[:1]
    x = ((bgr - np.array(MEAN_BGR, np.float32)[:, None, None]) / np.array(STD_BGR, np.float32)[:, None, None])
    x = x.astype(np.float32)
    reference = run_graph(graph, {"input_1": x})
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    assert len(got) == 6
    for name, out in zip(module.output_names, got, strict=True):
        ref = reference[name]
        assert tuple(out.shape) == ref.shape, name
        atol = SCORE_ATOL if ref.shape[-1] == 80 else LOGIT_ATOL
        np.testing.assert_allclose(out.numpy(), ref, atol=atol, rtol=0, err_msg=name)
    # the real image drives the network: some class is confidently present, scores are probabilities
    scores = np.concatenate([reference[n] for n in module.output_names if reference[n].shape[-1] == 80], 1)
    assert 0.3 < scores.max() <= 1.0 and scores.min() >= 0.0


def test_onnx_matches_torch_with_a_dynamic_batch(teacher: torch.nn.Module, tmp_path: Path) -> None:
    path = convert(MODEL_JSON, tmp_path / "teacher.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map[TEACHER_METADATA_KEY])
    assert meta["source_sha256"] == source_digest() and meta["input"]["channels"] == "BGR"
    bgr = _real_inputs()
    scores, dists = session.run(["scores", "distance_logits"], {"bgr": bgr})
    with torch.no_grad():
        ref_scores, ref_dists = teacher(torch.from_numpy(bgr))
    assert scores.shape == (2, 3549, 80) and dists.shape == (2, 3549, 44)
    np.testing.assert_allclose(scores, ref_scores.numpy(), atol=SCORE_ATOL, rtol=0)
    np.testing.assert_allclose(dists, ref_dists.numpy(), atol=LOGIT_ATOL, rtol=0)
    with torch.no_grad():  # a batch equals its images run alone
        alone = teacher(torch.from_numpy(bgr[1:]))[0]
    np.testing.assert_allclose(ref_scores[1:].numpy(), alone.numpy(), atol=1e-6)


def test_ensure_onnx_rebuilds_a_bad_file_and_explains_what_to_run_without_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "teacher.onnx"
    path.write_bytes(b"not an onnx file")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "fusion_perception.teacher.export", None)  # as if torch were absent
        with pytest.raises(ModelFormatError, match=r"unreadable; build it with `fusion-perception teacher"):
            ensure_onnx(path)
    assert ensure_onnx(path) == path
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert json.loads(meta.custom_metadata_map[TEACHER_METADATA_KEY])["source_sha256"] == source_digest()


def test_teacher_is_frozen_but_passes_gradients_to_its_input(teacher: torch.nn.Module) -> None:
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training
    x = torch.full((1, 3, 416, 416), 100.0, requires_grad=True)
    teacher(x)[0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_torch_letterbox_matches_the_numpy_one() -> None:
    image = cv2.imread(str(sample_pairs()[0].visible), cv2.IMREAD_COLOR)
    ref, ref_box = letterbox(image)
    got, box = letterbox_tensor(torch.from_numpy(image).permute(2, 0, 1)[None].float())
    assert box == ref_box and tuple(got.shape) == ref.shape
    assert got[0, :, :52].abs().max() == 0 and got[0, :, 364:].abs().max() == 0
    assert float((got.numpy() - ref).__abs__().mean()) < 3.0  # OpenCV area vs torch antialiased bilinear


def _const(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    return name, np.asarray(value)


def test_layout_tracking_on_a_graph_with_disagreeing_transposes() -> None:
    """NHWC input; one branch is transposed to NCHW and back, another is padded SAME-convolved;
    Add and Concat then meet tensors held in different torch layouts."""
    rng = np.random.default_rng(0)
    consts = dict([
        _const("w", rng.standard_normal((3, 3, 4, 5)).astype(np.float32)),
        _const("b", rng.standard_normal(5).astype(np.float32)),
        _const("to_nchw", np.array([0, 3, 1, 2], np.int32)),
        _const("to_nhwc", np.array([0, 2, 3, 1], np.int32)),
        _const("pads", np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32)),
        _const("axis", np.array(3, np.int32)),
        _const("size", np.array([12, 10], np.int32)),
        _const("shape", np.array([1, -1], np.int64)),
    ])  # fmt: skip
    same = {"padding": "SAME", "data_format": "NHWC", "strides": [1, 1, 1, 1], "dilations": [1, 1, 1, 1]}
    nodes = (
        Node("conv", "Conv2D", ("x", "w"), same),
        Node("biased", "Add", ("conv", "b"), {}),
        Node("nchw", "Transpose", ("biased", "to_nchw"), {}),
        Node("act", "LeakyRelu", ("nchw",), {"alpha": 0.1}),
        Node("back", "Transpose", ("act", "to_nhwc"), {}),
        Node("sum", "AddV2", ("back", "biased"), {}),
        Node("cat", "ConcatV2", ("sum", "back", "axis"), {}),
        Node("padded", "Pad", ("cat", "pads"), {}),
        Node("up", "ResizeBilinear", ("padded", "size"), {"half_pixel_centers": True}),
        Node("flat", "Reshape", ("up", "shape"), {}),
        Node("out", "Identity", ("flat",), {}),
    )
    graph = GraphModel(nodes, consts, {"x": (1, 6, 7, 4)}, ("out", "cat"), {})
    x = rng.standard_normal((1, 6, 7, 4)).astype(np.float32)
    ref = run_graph(graph, {"x": x})
    with torch.no_grad():
        got = TfjsGraphModule(graph, keep_batch=False)(torch.from_numpy(x))
    for name, out in zip(graph.outputs, got, strict=True):
        np.testing.assert_allclose(out.numpy(), ref[name], atol=1e-5, rtol=1e-5, err_msg=name)
