"""A direct NumPy interpreter of TensorFlow graph ops: the reference the torch conversion is checked
against, and the constant folder both share.

Every op follows TensorFlow's own definition literally (NHWC convolutions on HWIO filters, explicit
``Pad`` before ``VALID`` windows, TF's half-pixel bilinear formula), with no torch and no layout
tricks, so a mistake in :mod:`.torch_graph`'s NHWC -> NCHW bookkeeping shows up as a mismatch
instead of hiding in both. It is slow (about a second for NanoDet-g at 416x416) and meant for tests
and debugging, not for inference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from .tfjs import GraphModel, Node

__all__ = ["NUMPY_OPS", "fold_constants", "run_graph"]

Values = dict[str, np.ndarray]
OpFn = Callable[[Node, list[np.ndarray]], np.ndarray | list[np.ndarray]]


def _window_pads(node: Node, x: np.ndarray, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int]):
    """Per-axis (before, after) padding of H and W for TF's VALID / SAME / EXPLICIT."""
    mode = node.attrs.get("padding", "VALID")
    if mode == "VALID":
        return [(0, 0), (0, 0)]
    if mode == "EXPLICIT":
        flat = node.attrs.get("explicit_paddings", [])
        return [(flat[2], flat[3]), (flat[4], flat[5])]
    if mode == "SAME":
        pads = []
        for size, kk, ss, dd in zip(x.shape[1:3], k, s, d, strict=True):
            eff = (kk - 1) * dd + 1
            total = max((-(-size // ss) - 1) * ss + eff - size, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    raise ModelFormatError(f"node {node.name}: padding {mode!r} is not supported")


def _nhwc_only(node: Node) -> None:
    if node.attrs.get("data_format", "NHWC") != "NHWC":
        raise ModelFormatError(f"node {node.name}: data_format {node.attrs['data_format']!r}, expected NHWC")


def _conv2d(node: Node, args: list[np.ndarray]) -> np.ndarray:
    _nhwc_only(node)
    x, w = args[0].astype(np.float32), args[1].astype(np.float32)  # NHWC, HWIO
    kh, kw, cin_g, cout = w.shape
    strides, dil = node.attrs.get("strides", [1, 1, 1, 1]), node.attrs.get("dilations", [1, 1, 1, 1])
    s, d = (strides[1], strides[2]), (dil[1], dil[2])
    pads = _window_pads(node, x, (kh, kw), s, d)
    x = np.pad(x, [(0, 0), *pads, (0, 0)])
    groups = x.shape[3] // cin_g
    if groups * cin_g != x.shape[3] or cout % groups:
        raise ModelFormatError(f"node {node.name}: {x.shape[3]} input channels for a {w.shape} filter")
    eff = ((kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1)
    win = np.lib.stride_tricks.sliding_window_view(x, eff, axis=(1, 2))[:, :: s[0], :: s[1]]
    win = win[..., :: d[0], :: d[1]]  # N, Ho, Wo, C, kh, kw
    outs = []
    per = cout // groups
    for g in range(groups):
        xg = win[:, :, :, g * cin_g : (g + 1) * cin_g]
        wg = w[:, :, :, g * per : (g + 1) * per]
        outs.append(np.tensordot(xg, wg, axes=([3, 4, 5], [2, 0, 1])))
    return np.concatenate(outs, axis=3).astype(np.float32)


def _max_pool(node: Node, args: list[np.ndarray]) -> np.ndarray:
    _nhwc_only(node)
    x = args[0]
    ksize, strides = node.attrs["ksize"], node.attrs["strides"]
    k, s = (ksize[1], ksize[2]), (strides[1], strides[2])
    pads = _window_pads(node, x, k, s, (1, 1))
    x = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(x, k, axis=(1, 2))[:, :: s[0], :: s[1]]
    return win.max(axis=(4, 5))


def _resize_axis(in_size: int, out_size: int, align: bool, half: bool):
    """TF's interpolation indices and weights along one axis (lower, upper, lerp)."""
    scale = (in_size - 1) / (out_size - 1) if align and out_size > 1 else in_size / out_size
    pos = np.arange(out_size, dtype=np.float64)
    src = (pos + 0.5) * scale - 0.5 if half else pos * scale
    floor = np.floor(src)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(src), in_size - 1).astype(np.int64)
    return lower, upper, (src - floor).astype(np.float32)


def _resize_bilinear(node: Node, args: list[np.ndarray]) -> np.ndarray:
    x, size = args[0].astype(np.float32), [int(v) for v in args[1]]
    align, half = node.attrs.get("align_corners", False), node.attrs.get("half_pixel_centers", False)
    y0, y1, fy = _resize_axis(x.shape[1], size[0], align, half)
    x0, x1, fx = _resize_axis(x.shape[2], size[1], align, half)
    fy, fx = fy[None, :, None, None], fx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bottom = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _split_v(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    x, sizes, axis = args[0], [int(v) for v in args[1]], int(args[2])
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _sparse_to_dense(node: Node, args: list[np.ndarray]) -> np.ndarray:
    indices, shape, values, default = (np.asarray(a) for a in args)
    shape = [int(v) for v in np.atleast_1d(shape)]
    out = np.full(shape, default, dtype=values.dtype)
    idx = indices if indices.ndim == 2 else indices.reshape(-1, len(shape))
    for i, v in zip(idx, np.broadcast_to(values, (idx.shape[0],)), strict=True):
        out[tuple(i)] = v
    return out


def _pad(node: Node, args: list[np.ndarray]) -> np.ndarray:
    value = args[2].item() if len(args) > 2 else 0
    return np.pad(args[0], np.asarray(args[1]).tolist(), constant_values=value)


NUMPY_OPS: dict[str, OpFn] = {
    "Conv2D": _conv2d,
    "Add": lambda n, a: np.add(a[0], a[1]),
    "AddV2": lambda n, a: np.add(a[0], a[1]),
    "LeakyRelu": lambda n, a: np.where(a[0] >= 0, a[0], a[0] * np.float32(n.attrs.get("alpha", 0.2))),
    "Pad": _pad,
    "PadV2": _pad,
    "MaxPool": _max_pool,
    "ConcatV2": lambda n, a: np.concatenate(a[:-1], axis=int(a[-1])),
    "ResizeBilinear": _resize_bilinear,
    "Transpose": lambda n, a: np.transpose(a[0], [int(v) for v in a[1]]),
    "Reshape": lambda n, a: np.reshape(a[0], [int(v) for v in a[1]]),
    "SplitV": _split_v,
    "Sigmoid": lambda n, a: (1.0 / (1.0 + np.exp(-a[0]))).astype(a[0].dtype),
    "SparseToDense": _sparse_to_dense,
    "Identity": lambda n, a: a[0],
}


def _store(values: Values, node: Node, result: Any) -> None:
    if isinstance(result, list):
        for k, r in enumerate(result):
            values[f"{node.name}:{k}"] = r
        values[node.name] = result[0]
    else:
        values[node.name] = result


def _evaluate(node: Node, values: Mapping[str, np.ndarray]) -> Any:
    fn = NUMPY_OPS.get(node.op)
    if fn is None:
        raise ModelFormatError(f"node {node.name}: op {node.op} is not supported by the NumPy reference")
    return fn(node, [values[i] for i in node.inputs])


def fold_constants(graph: GraphModel) -> Values:
    """Constants plus every node computable from constants alone (shape arithmetic, SparseToDense).

    The torch module takes these as fixed values, so it holds no op that only reshuffles constants.
    """
    values: Values = dict(graph.constants)
    for node in graph.topological_order():
        if node.inputs and all(i in values for i in node.inputs):
            _store(values, node, _evaluate(node, values))
    return values


def run_graph(graph: GraphModel, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the whole graph on ``feeds`` (placeholder name -> array); returns the outputs by name.

    Raises:
        ModelFormatError: a placeholder is not fed, or an op is not supported.
    """
    missing = [name for name in graph.inputs if name not in feeds]
    if missing:
        raise ModelFormatError(f"graph inputs {missing} were not fed")
    values: Values = {**graph.constants, **{k: np.asarray(v) for k, v in feeds.items()}}
    for node in graph.topological_order():
        _store(values, node, _evaluate(node, values))
    return {name: values[name] for name in graph.outputs}
