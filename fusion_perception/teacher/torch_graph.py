"""A TF.js graph model as a torch ``nn.Module``: TensorFlow's NHWC ops mapped to NCHW torch ops.

The NanoDet-g graph came to TF.js through ONNX (onnx-tf), so it wraps every NHWC ``Conv2D`` in
``Transpose`` nodes back to ONNX's NCHW. Copying that literally would cost ~80 memory copies per
image. Instead the builder tracks, per tensor and at build time, how the torch tensor's axes relate
to the TensorFlow tensor's axes (a permutation): a ``Transpose`` only relabels axes, and a tensor is
physically permuted only where an op needs a given layout (``Reshape``, an output). Every
convolution then sees NCHW data directly, as ``nn.Conv2d`` with TF's HWIO filter turned into OIHW.

Two more rewrites keep the module plain: a zero ``Pad`` followed by a ``VALID`` convolution becomes the
convolution's own padding (a ``-inf`` pad before ``MaxPool`` likewise), and a constant vector added
right after a convolution becomes its bias. Constant-only subgraphs (the ``SparseToDense`` shape
arithmetic) are folded by :func:`.graph_numpy.fold_constants`.

Correctness is checked against :mod:`.graph_numpy`, which runs the same graph op by op in NumPy
with TensorFlow's own layouts (test/test_teacher_convert.py).

This module needs torch: training and evaluation side only, never the runtime or the node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelFormatError
from .graph_numpy import fold_constants
from .tfjs import GraphModel, Node, node_of

__all__ = ["TfjsGraphModule"]

Perm = tuple[int, ...]
NHWC_AS_NCHW: Perm = (0, 2, 3, 1)  # logical NHWC axes held as physical NCHW


def _inverse(perm: Perm) -> Perm:
    return tuple(int(i) for i in np.argsort(perm))


@dataclass(frozen=True)
class _Layout:
    """How a torch tensor relates to its TensorFlow tensor: ``tf = torch_tensor.permute(perm)``,
    after applying ``pad`` (physical (before, after) per axis) when it is not None."""

    perm: Perm
    pad: tuple[tuple[int, int], ...] | None = None
    pad_value: float = 0.0


Step = Callable[[dict[str, torch.Tensor]], None]


class TfjsGraphModule(nn.Module):
    """Runs a :class:`~.tfjs.GraphModel` with torch ops.

    Args:
        graph: the parsed graph (weights already dequantized to float32).
        keep_batch: the graph's ``Reshape`` constants were exported for batch 1; keep the input's
            batch size instead, so training code can run batches.

    ``forward(*inputs)`` takes the placeholders in ``graph.inputs`` order and returns the outputs in
    ``graph.outputs`` order, each in TensorFlow's layout and shape.
    """

    def __init__(self, graph: GraphModel, *, keep_batch: bool = True) -> None:
        super().__init__()
        self.input_names = tuple(graph.inputs)
        self.output_names = tuple(graph.outputs)
        self.keep_batch = keep_batch
        self.convs = nn.ModuleList()
        self._steps: list[Step] = []
        self._const = fold_constants(graph)
        self._layout: dict[str, _Layout] = {n: _Layout(tuple(range(len(s)))) for n, s in graph.inputs.items()}
        order = graph.topological_order()
        self._consumers: dict[str, list[Node]] = {}
        for node in order:
            for i in node.inputs:
                self._consumers.setdefault(node_of(i), []).append(node)
        self._bias_of: dict[str, str] = {}  # conv node -> Add node whose constant became its bias
        builders = {
            "Conv2D": self._conv,
            "MaxPool": self._max_pool,
            "Pad": self._pad,
            "PadV2": self._pad,
            "Transpose": self._transpose,
            "Add": self._add,
            "AddV2": self._add,
            "ConcatV2": self._concat,
            "ResizeBilinear": self._resize,
            "Reshape": self._reshape,
            "SplitV": self._split,
            "LeakyRelu": self._unary,
            "Sigmoid": self._unary,
            "Identity": self._unary,
        }
        for node in order:
            if node.name in self._const:
                continue
            if node.name in self._bias_of.values():
                continue  # absorbed into the convolution before it
            build = builders.get(node.op)
            if build is None:
                raise ModelFormatError(f"node {node.name}: op {node.op} has no torch mapping")
            build(node)
        for name in self.output_names:
            self._materialize(name)
        # build-time bookkeeping only: the steps hold what they need (the weights live in modules)
        del self._const, self._consumers, self._layout, self._bias_of

    # -- layout helpers (build time) ---------------------------------------------------------------

    def _plain(self, name: str, perm: Perm | None) -> str:
        """Name of a tensor holding ``name`` with pending pads applied and physical layout ``perm``
        (None: keep its perm); adds the steps that compute it."""
        layout = self._layout[name]
        out = name
        if layout.pad is not None:
            pads = [p for pair in reversed(layout.pad) for p in pair]  # F.pad: last axis first
            value, src, out = layout.pad_value, out, f"{name}#padded"
            self._steps.append(
                lambda env, s=src, d=out, p=pads, v=value: env.__setitem__(d, F.pad(env[s], p, value=v))
            )
            self._layout[out] = layout = _Layout(layout.perm)
        if perm is not None and perm != layout.perm:
            move = tuple(layout.perm[i] for i in _inverse(perm))
            src, out = out, f"{name}#perm{''.join(map(str, perm))}"
            self._steps.append(lambda env, s=src, d=out, m=move: env.__setitem__(d, env[s].permute(m)))
            self._layout[out] = _Layout(perm)
        return out

    def _materialize(self, name: str) -> None:
        """Make ``name`` itself hold its TF tensor exactly (identity layout), for outputs."""
        plain = self._plain(name, tuple(range(len(self._layout[name].perm))))
        if plain != name:
            self._steps.append(lambda env, s=plain, d=name: env.__setitem__(d, env[s].contiguous()))
            self._layout[name] = self._layout[plain]

    def _int_const(self, node: Node, index: int) -> list[int]:
        name = node.inputs[index]
        if name not in self._const:
            raise ModelFormatError(f"node {node.name}: input {name} must be a constant")
        return [int(v) for v in np.asarray(self._const[name]).ravel()]

    def _spatial_pad(self, layout: _Layout) -> tuple[int, int] | None:
        """(pad_h, pad_w) when a pending pad is symmetric and on H/W of an NCHW tensor only."""
        if layout.pad is None or layout.perm != NHWC_AS_NCHW:
            return None
        (n0, n1), (c0, c1), (h0, h1), (w0, w1) = layout.pad
        if n0 or n1 or c0 or c1 or h0 != h1 or w0 != w1:
            return None
        return h0, w0

    # -- op builders -------------------------------------------------------------------------------

    def _conv(self, node: Node) -> None:
        if node.attrs.get("data_format", "NHWC") != "NHWC" or node.attrs.get("padding") not in (
            "VALID",
            "SAME",
        ):
            raise ModelFormatError(f"node {node.name}: only NHWC VALID/SAME Conv2D is mapped")
        src = node.inputs[0]
        weight = self._const.get(node.inputs[1])
        if weight is None:
            raise ModelFormatError(f"node {node.name}: filter {node.inputs[1]} is not a constant")
        kh, kw, cin_g, cout = weight.shape
        strides, dil = node.attrs.get("strides", [1] * 4), node.attrs.get("dilations", [1] * 4)
        layout = self._layout[src]
        padding: tuple[int, int] | str = (0, 0)
        spatial = self._spatial_pad(layout) if layout.pad_value == 0.0 else None
        if node.attrs["padding"] == "SAME":
            if strides[1] != 1 or strides[2] != 1:
                raise ModelFormatError(f"node {node.name}: SAME padding with stride > 1 is not mapped")
            padding, src = "same", self._plain(src, NHWC_AS_NCHW)
        elif spatial is not None:
            padding = spatial  # the pending zero pad becomes the convolution's own padding
        else:
            src = self._plain(src, NHWC_AS_NCHW)
        # groups = 1: the TF filter's I dimension is C_in / groups, and a graph converted from ONNX
        # without depthwise layers has none; nn.Conv2d rejects a channel mismatch at run time.
        conv = nn.Conv2d(
            cin_g,
            cout,
            (kh, kw),
            stride=(strides[1], strides[2]),
            padding=padding,
            dilation=(dil[1], dil[2]),
            bias=False,
        )
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(weight.transpose(3, 2, 0, 1)))
        out = node.name
        bias_node = self._bias_after(node, cout)
        if bias_node is not None:
            conv.bias = nn.Parameter(
                torch.from_numpy(self._const[self._other_input(bias_node, node.name)].copy())
            )
            self._bias_of[node.name] = bias_node.name
            out = bias_node.name
        index = len(self.convs)
        self.convs.append(conv)
        self._steps.append(lambda env, s=src, d=out, i=index: env.__setitem__(d, self.convs[i](env[s])))
        self._layout[out] = _Layout(NHWC_AS_NCHW)

    def _other_input(self, add: Node, name: str) -> str:
        return add.inputs[1] if node_of(add.inputs[0]) == name else add.inputs[0]

    def _bias_after(self, conv: Node, cout: int) -> Node | None:
        users = self._consumers.get(conv.name, [])
        if conv.name in self.output_names or len(users) != 1 or users[0].op not in ("Add", "AddV2"):
            return None
        const = self._const.get(self._other_input(users[0], conv.name))
        return users[0] if const is not None and const.shape == (cout,) else None

    def _max_pool(self, node: Node) -> None:
        ksize, strides = node.attrs["ksize"], node.attrs["strides"]
        if node.attrs.get("data_format", "NHWC") != "NHWC" or node.attrs.get("padding") != "VALID":
            raise ModelFormatError(f"node {node.name}: only NHWC VALID MaxPool is mapped")
        layout = self._layout[node.inputs[0]]
        spatial = self._spatial_pad(layout) if layout.pad_value == -np.inf else None
        k, s = (ksize[1], ksize[2]), (strides[1], strides[2])
        if spatial is not None and spatial[0] * 2 <= k[0] and spatial[1] * 2 <= k[1]:
            src, padding = node.inputs[0], spatial
        else:
            src, padding = self._plain(node.inputs[0], NHWC_AS_NCHW), (0, 0)
        self._steps.append(
            lambda env, a=src, d=node.name: env.__setitem__(d, F.max_pool2d(env[a], k, s, padding))
        )
        self._layout[node.name] = _Layout(NHWC_AS_NCHW)

    def _pad(self, node: Node) -> None:
        src = self._plain(node.inputs[0], None)
        layout = self._layout[src]
        pads = np.asarray(self._int_const(node, 1)).reshape(-1, 2)
        value = float(self._const[node.inputs[2]]) if len(node.inputs) > 2 else 0.0
        physical = [(0, 0)] * len(layout.perm)
        for logical_axis, phys_axis in enumerate(layout.perm):
            physical[phys_axis] = (int(pads[logical_axis][0]), int(pads[logical_axis][1]))
        self._steps.append(lambda env, s=src, d=node.name: env.__setitem__(d, env[s]))
        self._layout[node.name] = _Layout(layout.perm, tuple(physical), value)

    def _transpose(self, node: Node) -> None:
        perm = self._int_const(node, 1)
        layout = self._layout[node.inputs[0]]
        self._steps.append(lambda env, s=node.inputs[0], d=node.name: env.__setitem__(d, env[s]))
        self._layout[node.name] = _Layout(tuple(layout.perm[p] for p in perm), layout.pad, layout.pad_value)

    def _add(self, node: Node) -> None:
        a, b = node.inputs
        if b in self._const or a in self._const:
            var, const = (a, b) if b in self._const else (b, a)
            src = self._plain(var, None)
            perm = self._layout[src].perm
            c = np.asarray(self._const[const], np.float32)
            c = c.reshape((1,) * (len(perm) - c.ndim) + c.shape).transpose(_inverse(perm))
            buf = f"const_{len(self._steps)}"
            self.register_buffer(buf, torch.from_numpy(np.ascontiguousarray(c)))
            self._steps.append(
                lambda env, s=src, d=node.name, k=buf: env.__setitem__(d, env[s] + getattr(self, k))
            )
        else:
            src_a = self._plain(a, None)
            perm = self._layout[src_a].perm
            src_b = self._plain(b, perm)
            self._steps.append(lambda env, x=src_a, y=src_b, d=node.name: env.__setitem__(d, env[x] + env[y]))
        self._layout[node.name] = _Layout(perm)

    def _concat(self, node: Node) -> None:
        axis = self._int_const(node, len(node.inputs) - 1)[0]
        first = self._plain(node.inputs[0], None)
        perm = self._layout[first].perm
        srcs = [first] + [self._plain(i, perm) for i in node.inputs[1:-1]]
        dim = perm[axis % len(perm)]
        self._steps.append(
            lambda env, ss=srcs, d=node.name: env.__setitem__(d, torch.cat([env[s] for s in ss], dim))
        )
        self._layout[node.name] = _Layout(perm)

    def _resize(self, node: Node) -> None:
        size = tuple(self._int_const(node, 1))
        align, half = node.attrs.get("align_corners", False), node.attrs.get("half_pixel_centers", False)
        if not align and not half:
            raise ModelFormatError(
                f"node {node.name}: legacy (asymmetric) ResizeBilinear has no torch mapping"
            )
        src = self._plain(node.inputs[0], NHWC_AS_NCHW)
        self._steps.append(
            lambda env, s=src, d=node.name: env.__setitem__(
                d, F.interpolate(env[s], size=size, mode="bilinear", align_corners=bool(align))
            )
        )
        self._layout[node.name] = _Layout(NHWC_AS_NCHW)

    def _reshape(self, node: Node) -> None:
        shape = self._int_const(node, 1)
        src = self._plain(node.inputs[0], tuple(range(len(self._layout[node.inputs[0]].perm))))
        keep = self.keep_batch and shape[0] == 1

        def reshape(env: dict[str, torch.Tensor], s: str = src, d: str = node.name) -> None:
            x = env[s]
            env[d] = x.reshape(x.shape[0], *shape[1:]) if keep else x.reshape(shape)

        self._steps.append(reshape)
        self._layout[node.name] = _Layout(tuple(range(len(shape))))

    def _split(self, node: Node) -> None:
        sizes, axis = self._int_const(node, 1), self._int_const(node, 2)[0]
        src = self._plain(node.inputs[0], None)
        perm = self._layout[src].perm
        dim = perm[axis % len(perm)]
        names = [f"{node.name}:{k}" for k in range(len(sizes))]

        def split(env: dict[str, torch.Tensor], s: str = src) -> None:
            for name, part in zip(names, torch.split(env[s], sizes, dim), strict=True):
                env[name] = part
            env[node.name] = env[names[0]]

        self._steps.append(split)
        for name in [*names, node.name]:
            self._layout[name] = _Layout(perm)

    def _unary(self, node: Node) -> None:
        src = self._plain(node.inputs[0], None)
        if node.op == "LeakyRelu":
            alpha = float(node.attrs.get("alpha", 0.2))
            fn: Callable[[torch.Tensor], torch.Tensor] = lambda x: F.leaky_relu(x, alpha)  # noqa: E731
        elif node.op == "Sigmoid":
            fn = torch.sigmoid
        else:
            fn = lambda x: x  # noqa: E731
        self._steps.append(lambda env, s=src, d=node.name: env.__setitem__(d, fn(env[s])))
        self._layout[node.name] = _Layout(self._layout[src].perm)

    # -- run ----------------------------------------------------------------------------------------

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"expected {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        env: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs, strict=True))
        for step in self._steps:
            step(env)
        return tuple(env[name] for name in self.output_names)
