"""Reading a TensorFlow.js graph model (``model.json`` + weight shards) into NumPy, without TensorFlow.

A TF.js graph model is a JSON file with a ``modelTopology`` (a TensorFlow ``GraphDef`` as JSON: one
entry per node with ``name``, ``op``, ``input`` and ``attr``) and a ``weightsManifest`` listing, per
group of binary shards, every constant tensor in byte order (``name``, ``shape``, ``dtype`` and an
optional ``quantization``). The shards of a group are concatenated and the tensors read back to back.

Quantized tensors are dequantized to their original dtype on reading, because every consumer here
(the NumPy reference, the torch module, the ONNX file) computes in float32:

* ``float16``: IEEE half floats, widened to float32 (exact);
* ``uint8`` / ``uint16``: affine, ``value = q * scale + min`` (TF.js's own formula).

Only reading lives here; what the ops mean is in :mod:`.graph_numpy` and :mod:`.torch_graph`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError

__all__ = ["GraphModel", "Node", "decode_attr", "read_graph_model", "read_weights"]

#: manifest dtype -> (NumPy dtype of the stored bytes)
_STORED = {"float32": np.float32, "int32": np.int32, "bool": np.uint8}
_QUANT = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


@dataclass(frozen=True)
class Node:
    """One graph node. ``inputs`` are tensor names (``node`` or ``node:k``; control inputs
    ``^node`` are dropped because a pure inference graph has no side effects to order)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphModel:
    """A parsed graph model.

    Attributes:
        nodes: every non-constant node, in file order (:func:`topological_order` sorts them).
        constants: name -> dequantized array, one per ``Const`` node.
        inputs: placeholder name -> shape (``-1`` for unknown sizes).
        outputs: output tensor names in signature order (e.g. ``Identity_2``).
        meta: the top-level fields other than topology and manifest (format, generatedBy, ...).
    """

    nodes: tuple[Node, ...]
    constants: dict[str, np.ndarray]
    inputs: dict[str, tuple[int, ...]]
    outputs: tuple[str, ...]
    meta: dict[str, Any]

    def topological_order(self) -> list[Node]:
        """The nodes sorted so every node follows the producers of its inputs.

        Raises:
            ModelFormatError: an input names a tensor no node produces, or the graph has a cycle.
        """
        by_name = {n.name: n for n in self.nodes}
        known = set(self.constants) | set(self.inputs)
        order: list[Node] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done
        for root in self.nodes:
            stack: list[tuple[Node, int]] = [(root, 0)]
            while stack:
                node, i = stack.pop()
                if i == 0:
                    if state.get(node.name) == 2:
                        continue
                    if state.get(node.name) == 1:
                        raise ModelFormatError(f"graph has a cycle through node {node.name}")
                    state[node.name] = 1
                if i < len(node.inputs):
                    stack.append((node, i + 1))
                    src = node_of(node.inputs[i])
                    if src in known or state.get(src) == 2:
                        continue
                    if src not in by_name:
                        raise ModelFormatError(f"node {node.name} reads {src!r}, which no node produces")
                    stack.append((by_name[src], 0))
                else:
                    state[node.name] = 2
                    order.append(node)
        return order


def node_of(tensor: str) -> str:
    """Node name of a tensor name (``a/b:1`` -> ``a/b``)."""
    return tensor.split(":", 1)[0]


def decode_attr(value: dict[str, Any]) -> Any:
    """One GraphDef ``AttrValue`` in JSON form -> a Python value.

    ``s`` is base64 (``"TkhXQw=="`` -> ``"NHWC"``), integers arrive as decimal strings, lists hold
    one of ``i``/``f``/``s``/``b``/``type``; shapes and tensors are returned as given.

    >>> decode_attr({"s": "TkhXQw=="}), decode_attr({"list": {"i": ["1", "2"]}}), decode_attr({"f": 0.1})
    ('NHWC', [1, 2], 0.1)
    """
    if "list" in value:
        items = value["list"]
        for key in ("i", "f", "s", "b", "type"):
            if key in items:
                return [decode_attr({key: v}) for v in items[key]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode("utf-8", errors="replace")
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return str(value["type"])
    return value  # shape, tensor, func: consumers read them as given


def _dequantize(raw: bytes, offset: int, entry: dict[str, Any], source: Path) -> tuple[np.ndarray, int]:
    name, shape = entry["name"], tuple(int(s) for s in entry["shape"])
    count = int(np.prod(shape, dtype=np.int64))
    quant = entry.get("quantization")
    stored = _QUANT.get(quant["dtype"]) if quant else _STORED.get(entry["dtype"])
    if stored is None:
        what = quant["dtype"] if quant else entry["dtype"]
        raise ModelFormatError(f"{source}: weight {name!r} has unsupported dtype {what!r}")
    nbytes = count * np.dtype(stored).itemsize
    if offset + nbytes > len(raw):
        raise ModelFormatError(
            f"{source}: weight {name!r} needs bytes {offset}..{offset + nbytes}, the shards hold {len(raw)}"
        )
    arr = np.frombuffer(raw, dtype=stored, count=count, offset=offset).reshape(shape)
    if quant is None:
        out = arr.astype(np.bool_) if entry["dtype"] == "bool" else arr.copy()
    elif quant["dtype"] == "float16":
        out = arr.astype(np.float32)
    else:
        if "scale" not in quant or "min" not in quant:
            raise ModelFormatError(
                f"{source}: weight {name!r} is {quant['dtype']}-quantized without scale/min"
            )
        out = arr.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
    if entry["dtype"] == "int32" and quant is not None:
        out = np.rint(out).astype(np.int32)
    return out, offset + nbytes


def read_weights(manifest: list[dict[str, Any]], folder: Path) -> dict[str, np.ndarray]:
    """Every tensor of a ``weightsManifest``, dequantized; shards are read from ``folder``.

    Raises:
        ModelFormatError: a shard is missing, too short or too long, or a dtype is unsupported
            (the message names the file and the tensor).
    """
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        paths = [folder / p for p in group.get("paths", [])]
        chunks = []
        for path in paths:
            try:
                chunks.append(path.read_bytes())
            except OSError as err:
                raise ModelFormatError(f"cannot read weight shard {path}: {err}") from err
        raw, offset = b"".join(chunks), 0
        for entry in group.get("weights", []):
            out[entry["name"]], offset = _dequantize(raw, offset, entry, paths[0] if paths else folder)
        if offset != len(raw):
            raise ModelFormatError(
                f"{', '.join(map(str, paths))}: manifest covers {offset} bytes but the shards hold {len(raw)}"
            )
    return out


def _signature_outputs(meta: dict[str, Any], nodes: list[Node]) -> tuple[str, ...]:
    outputs = meta.get("signature", {}).get("outputs", {})
    if outputs:
        return tuple(node_of(k) for k in outputs)
    consumed = {node_of(i) for n in nodes for i in n.inputs}
    return tuple(n.name for n in nodes if n.name not in consumed)


def read_graph_model(json_path: Path | str) -> GraphModel:
    """Parse ``model.json`` and its weight shards (in the same folder).

    >>> from fusion_perception.teacher.assets import MODEL_JSON
    >>> model = read_graph_model(MODEL_JSON)
    >>> len(model.constants), model.inputs
    (229, {'input_1': (1, 3, 416, 416)})

    Raises:
        ModelFormatError: the file is missing or not a graph model, a node lacks its constant, or
            the weights do not fit the manifest.
    """
    path = Path(json_path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelFormatError(f"cannot read TF.js model {path}: {err}") from err
    if doc.get("format") != "graph-model" or "modelTopology" not in doc:
        raise ModelFormatError(f"{path} is not a TF.js graph model (format {doc.get('format')!r})")
    weights = read_weights(doc.get("weightsManifest", []), path.parent)
    nodes: list[Node] = []
    inputs: dict[str, tuple[int, ...]] = {}
    constants: dict[str, np.ndarray] = {}
    for raw in doc["modelTopology"].get("node", []):
        attrs = {k: decode_attr(v) for k, v in raw.get("attr", {}).items()}
        node = Node(
            raw["name"], raw["op"], tuple(i for i in raw.get("input", []) if not i.startswith("^")), attrs
        )
        if node.op == "Const":
            if node.name not in weights:
                raise ModelFormatError(f"{path}: constant {node.name!r} is not in the weights manifest")
            constants[node.name] = weights[node.name]
        elif node.op == "Placeholder":
            dims = attrs.get("shape", {}).get("shape", {}).get("dim", [])
            inputs[node.name] = tuple(int(d.get("size", -1)) for d in dims)
        else:
            nodes.append(node)
    meta = {k: v for k, v in doc.items() if k not in ("modelTopology", "weightsManifest")}
    return GraphModel(tuple(nodes), constants, inputs, _signature_outputs(meta, nodes), meta)
