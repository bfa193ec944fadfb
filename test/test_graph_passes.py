"""ONNX graph passes after export: fewer operators, the same numbers."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fusion_perception.export.graph_passes import fold_zero_pads


def _pad_conv_model(mode: str = "constant", value: float | None = None, shape: tuple = (1, 2, 8, 10),
                    pads: tuple = (0, 0, 0, 0, 0, 0, 1, 1)) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    channels = shape[1] + pads[1] + pads[5]
    weight = numpy_helper.from_array(rng.standard_normal((3, channels, 3, 3)).astype(np.float32), "w")
    amounts = numpy_helper.from_array(np.asarray(pads, np.int64), "pads")
    inits = [weight, amounts]
    pad_inputs = ["x", "pads"]
    if value is not None:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), "value"))
        pad_inputs.append("value")
    nodes = [helper.make_node("Pad", pad_inputs, ["padded"], mode=mode),
             helper.make_node("Conv", ["padded", "w"], ["y"], strides=[2, 2])]
    out_hw = [(shape[2] + pads[2] + pads[6] - 3) // 2 + 1, (shape[3] + pads[3] + pads[7] - 3) // 2 + 1]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, *out_hw])
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    # IR version 8 (opset 17): what torch.onnx writes, and what this ONNX Runtime reads
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_a_zero_pad_before_a_conv_becomes_its_asymmetric_pads() -> None:
    model = _pad_conv_model()
    x = np.random.default_rng(1).standard_normal((1, 2, 8, 10)).astype(np.float32)
    want = _run(model, x)
    assert fold_zero_pads(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv"]
    (pads,) = [a for a in model.graph.node[0].attribute if a.name == "pads"]
    assert list(pads.ints) == [0, 0, 1, 1]  # top, left, bottom, right: TF "SAME" for stride 2
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(_run(model, x), want)


@pytest.mark.parametrize(("kwargs", "why"), [
    ({"mode": "reflect"}, "reflect padding is not zero padding"),
    ({"value": 1.0}, "an explicit pad value"),
    ({"pads": (0, 1, 0, 0, 0, 0, 1, 1)}, "padding the channel axis"),
])
def test_pads_that_are_not_plain_spatial_zeros_stay(kwargs: dict, why: str) -> None:
    model = _pad_conv_model(**kwargs)
    assert fold_zero_pads(model) == 0, why
    assert [n.op_type for n in model.graph.node] == ["Pad", "Conv"]


def test_dynamic_input_sizes_are_refused() -> None:
    model = _pad_conv_model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    with pytest.raises(ValueError, match="fixed input sizes"):
        fold_zero_pads(model)


def test_the_exported_task_backbone_keeps_no_pad_and_its_outputs(tmp_path) -> None:
    """torch's F.pad exports as a Pad fed by a chain of constant operators; all of it goes."""
    import torch

    from fusion_perception.models.efficientnet_lite import _SamePad as SamePad

    net = torch.nn.Sequential(SamePad(3, 2), torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(),
                              SamePad(5, 2), torch.nn.Conv2d(4, 4, 5, stride=2, groups=4)).eval()
    x = torch.rand(1, 3, 64, 96)
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"], opset_version=17,
                      dynamo=False)
    model = onnx.load(str(path))
    assert fold_zero_pads(model) == 2
    assert {n.op_type for n in model.graph.node} == {"Conv", "Relu"}
    np.testing.assert_allclose(_run(model, x.numpy()), net(x).detach().numpy(), rtol=1e-5, atol=1e-6)
