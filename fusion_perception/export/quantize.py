"""ONNX FP32 -> INT8 (QDQ) for the CPU, statically calibrated on real pairs; file in, file out.

Why static QDQ: ONNX Runtime's CPU provider fuses ``DequantizeLinear -> Conv -> QuantizeLinear``
into integer convolutions (VNNI on x86), while a QDQ file stays a plain ONNX graph that other
runtimes (TensorRT) read too. Activation ranges come from calibration, so the calibration pairs go
through the node's own ``prepare_pair`` (gain control, YCbCr split, resize): the quantized model
sees at calibration exactly what it sees at run time. Calibrate on training pairs only, so the
accuracy report on val (``benchmarks/bench_precision.py``) is not flattered.

What stays FP32 is measured, not assumed (docs/RESULTS.md, "INT8 vs FP32"), and chosen by rules
that read the graph, so they hold for any model with the three named outputs:

* only ``Conv`` is quantized by default: quantizing every op ORT can (Add, Concat, Resize, pools)
  was no faster here and cost 10 % of mAP@0.5;
* convolutions with fewer than 8 input channels stay FP32: ORT's integer kernels are 3-4x slower
  than its FP32 ones on image-like inputs (a full-resolution 3->4 channel conv: 6 ms vs 1.5 ms);
* the tails into ``fused`` and ``detections`` (:func:`tail_nodes`) stay FP32: the fused image is
  published at 8 bits, so an 8-bit intermediate before it adds visible error (mean |diff| 0.2 vs
  0.03 levels), and box distances share a Concat with class logits of a very different range.

The output keeps the input's ``metadata_props`` (the :class:`ModelInfo` under ``fusion_perception``),
adds the calibration facts under ``fusion_perception.quantization`` and writes them beside the
model as ``<stem>.quantization.json``. Needs the ``onnx`` package (requirements/train.txt); the
node loads the result with ONNX Runtime alone (``precision: int8``). CLI: :mod:`.quantize_cli`.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..image_pairs import find_pairs, split_names
from ..runtime.backends import read_onnx_info
from ..runtime.engine_cache import file_sha256
from ..runtime.model_info import METADATA_KEY, OUTPUT_NAMES
from .engine_build import calibration_batches

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_FP32_TAILS",
    "DEFAULT_OP_TYPES",
    "QUANT_METADATA_KEY",
    "QuantizeOptions",
    "calibration_pairs",
    "conv_shapes",
    "quantize_model",
    "tail_nodes",
]

log = logging.getLogger(__name__)

QUANT_METADATA_KEY = f"{METADATA_KEY}.quantization"
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: Ops quantized by default: Conv carries ~60 % of the network's CPU time (ORT profile, 640x480).
DEFAULT_OP_TYPES = ("Conv",)
#: Outputs whose tail (the nodes after the last Conv on the way to them, and that Conv) stays FP32.
DEFAULT_FP32_TAILS = ("fused", "detections")


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize.

    Args:
        op_types: ONNX op types to quantize; empty = every op ONNX Runtime can quantize.
        fp32_tails: graph outputs whose tail stays FP32 (see :func:`tail_nodes`).
        exclude: fnmatch patterns of node names kept FP32 besides the rules; each must match a node
            (a typo must not silently quantize what it meant to protect).
        per_channel: one weight scale per output channel (needed for depthwise convolutions, whose
            channels differ in range by orders of magnitude).
        calibrate_method: ``minmax``, ``entropy`` or ``percentile`` (99.999th).
        preprocess: run ORT's ``quant_pre_process`` (shape inference, graph cleanup) first.
        min_conv_channels: convolutions with fewer input channels stay FP32.
        fp32_depthwise: keep depthwise convolutions FP32 too (not needed on the shipped model).

    ``minmax`` reduces each activation to its range on the fly; ``entropy`` and ``percentile`` hold
    every activation of every calibration pair in memory first (~40 MB a 640x480 pair): bound them
    with ``--limit``.
    """

    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    fp32_tails: tuple[str, ...] = DEFAULT_FP32_TAILS
    exclude: tuple[str, ...] = ()
    per_channel: bool = True
    calibrate_method: str = "minmax"
    preprocess: bool = True
    min_conv_channels: int = 8
    fp32_depthwise: bool = False

    def __post_init__(self) -> None:
        if self.calibrate_method not in CALIBRATION_METHODS:
            raise ValueError(
                f"calibrate_method must be one of {CALIBRATION_METHODS}, got {self.calibrate_method!r}"
            )
        bad = [t for t in self.fp32_tails if t not in OUTPUT_NAMES]
        if bad:
            raise ValueError(f"fp32_tails {bad} are not model outputs; outputs are {list(OUTPUT_NAMES)}")


def calibration_pairs(
    root: Path | str, split: str | None = "train", limit: int | None = None
) -> list[tuple[str, Path, Path]]:
    """The first ``limit`` pairs of ``root``'s ``split`` (a name under ``root/splits/`` or a file; None
    = every pair; see :func:`~fusion_perception.image_pairs.split_names`).

    Raises:
        DatasetError: the split file or a pair is missing.
        ValueError: ``limit`` < 1.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return find_pairs(root, split_names(root, split))[:limit]


def tail_nodes(graph: Any, output: str) -> list[str]:
    """Names of the nodes from the last ``Conv`` before graph output ``output`` to the output.

    Walks producers backwards from ``output`` through every input, stopping at (and including)
    ``Conv`` nodes. Reads only the graph's wiring, so it holds for any model with the three named
    outputs, not only the shipped one.
    """
    producer = {out: node for node in graph.node for out in node.output}
    seen: set[str] = set()
    stack = [output]
    names: list[str] = []
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        names.append(node.name)
        if node.op_type != "Conv":
            stack.extend(node.input)
    return names


class _PairReader:
    """ONNX Runtime ``CalibrationDataReader`` over prepared real pairs (duck-typed: ``get_next``)."""

    def __init__(self, batches: Iterator[dict[str, np.ndarray]]) -> None:
        self._batches = batches
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is not None:
            self.count += 1
        return batch


def conv_shapes(graph: Any) -> dict[str, tuple[int, int, int]]:
    """Conv node name -> (input channels, output channels, group), from the weight initializers."""
    dims = {t.name: tuple(t.dims) for t in graph.initializer}
    shapes = {}
    for node in graph.node:
        if node.op_type == "Conv" and node.input[1] in dims:
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            c_out, c_in_per_group = dims[node.input[1]][:2]
            shapes[node.name] = (c_in_per_group * group, c_out, group)
    return shapes


def _excluded_nodes(graph: Any, options: QuantizeOptions) -> dict[str, list[str]]:
    """Node names kept FP32, by the rule that chose them; a pattern that matches nothing is an error."""
    names = [n.name for n in graph.node]
    chosen = {f"tail:{out}": tail_nodes(graph, out) for out in options.fp32_tails}
    shapes = conv_shapes(graph)
    chosen[f"conv_in_channels<{options.min_conv_channels}"] = [
        n for n, (c_in, _, _) in shapes.items() if c_in < options.min_conv_channels]
    if options.fp32_depthwise:
        chosen["depthwise"] = [n for n, (c_in, _, group) in shapes.items() if group > 1 and group == c_in]
    for pattern in options.exclude:
        hits = fnmatch.filter(names, pattern)
        if not hits:
            example = names[len(names) // 2]
            raise ValueError(f"exclude pattern {pattern!r} matches no node (names look like {example!r})")
        chosen[pattern] = hits
    return chosen


def _name_nodes(graph: Any) -> None:
    """Give every unnamed node a unique name: exclusions are by name (ONNX does not require names)."""
    taken = {node.name for node in graph.node}
    for i, node in enumerate(graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def _ops_reading_int8(graph: Any) -> dict[str, int]:
    """Op type -> nodes that read a dequantized INT8 tensor (ORT runs a Conv between DequantizeLinear
    and QuantizeLinear as an integer QLinearConv; the others read the dequantized float)."""
    producer = {out: node.op_type for node in graph.node for out in node.output}
    counts = Counter(
        node.op_type for node in graph.node
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and any(producer.get(name) == "DequantizeLinear" for name in node.input)
    )
    return dict(sorted(counts.items()))


def _keep_io_types(graph: Any, source: Any) -> None:
    """Give ``graph``'s inputs and outputs the source model's types and shapes.

    ``quant_pre_process`` runs symbolic shape inference, which renames fixed output dimensions to
    symbols (``Convsegmentation_dim_0``); an engine build and the contract check need the exact
    shapes the FP32 export declared.
    """
    declared = {v.name: v.type for v in (*source.input, *source.output)}
    for value in (*graph.input, *graph.output):
        if value.name in declared:
            value.type.CopyFrom(declared[value.name])


def _quantize_graph(
    model: Path, pairs: Sequence[tuple[str, Path, Path]], options: QuantizeOptions, size: tuple[int, int]
) -> tuple[Any, dict[str, list[str]], int]:
    """(quantized ModelProto, nodes kept FP32 by rule, calibration pairs read), via a temp folder."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        work = Path(tmp) / "pre.onnx"
        if options.preprocess:
            quant_pre_process(str(model), str(work))
        prepared = onnx.load(str(work if options.preprocess else model))
        _name_nodes(prepared.graph)
        onnx.save(prepared, str(work))
        excluded = _excluded_nodes(prepared.graph, options)
        reader = _PairReader(calibration_batches(pairs, size))
        quantize_static(
            str(work), str(Path(tmp) / "q.onnx"), reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(options.op_types) or None,
            per_channel=options.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted({n for names in excluded.values() for n in names}),
            calibrate_method=methods[options.calibrate_method],
            extra_options={"CalibPercentile": 99.999},
        )
        return onnx.load(str(Path(tmp) / "q.onnx")), excluded, reader.count


def quantize_model(
    model: Path | str, out: Path | str, pairs: Sequence[tuple[str, Path, Path]],
    options: QuantizeOptions | None = None,
) -> dict[str, Any]:
    """Quantize ``model`` to ``out`` (QDQ INT8), calibrating on ``pairs``; returns the facts written
    to ``<out stem>.quantization.json`` and into the model's metadata.

    Raises:
        ModelFormatError: ``model`` is not a fusion_perception ONNX file, or the result does not
            load in the project's ONNX Runtime backend (``out`` is then left untouched).
        ValueError: bad options, no pairs, or ``out`` is ``model``.
    """
    import onnx

    options = options or QuantizeOptions()
    model, out = Path(model), Path(out)
    if not pairs:
        raise ValueError("calibration needs at least one pair")
    if model.resolve() == out.resolve():
        raise ValueError(f"--out {out} would overwrite the FP32 model")
    info = read_onnx_info(model)  # validates the contract and metadata before minutes of work
    t0 = time.perf_counter()
    quantized, excluded, count = _quantize_graph(model, pairs, options, info.input_size)
    facts: dict[str, Any] = {
        "source_model": str(model),
        "source_sha256": file_sha256(model),
        "calibration_pairs": count,
        "calibration_names": [name for name, _, _ in pairs],
        "calibration_folder": str(Path(pairs[0][1]).parent.parent),
        "input_size": list(info.input_size),
        "options": asdict(options),
        "activation_type": "uint8 (asymmetric)",
        "weight_type": "int8 (symmetric" + (", per channel)" if options.per_channel else ")"),
        "kept_fp32": excluded,
        "ops_reading_int8": _ops_reading_int8(quantized.graph),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    facts = json.loads(json.dumps(facts))  # as written: tuples become lists
    source = onnx.load(str(model), load_external_data=False)
    _keep_io_types(quantized.graph, source.graph)
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(source.metadata_props)
    entry = quantized.metadata_props.add()
    entry.key, entry.value = QUANT_METADATA_KEY, json.dumps(facts, sort_keys=True)
    quantized.producer_name = "fusion_perception"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    onnx.save(quantized, str(tmp_out))
    try:
        read_onnx_info(tmp_out)  # loads in the project's backend with the same contract, or raises
    except Exception:
        tmp_out.unlink(missing_ok=True)
        raise
    tmp_out.replace(out)
    out.with_name(f"{out.stem}.quantization.json").write_text(json.dumps(facts, indent=2) + "\n")
    log.info("quantize: %s (%.1f KiB) from %d pairs in %.0f s; %d nodes kept FP32", out,
             out.stat().st_size / 1024, count, facts["seconds"],
             len({n for names in excluded.values() for n in names}))
    return facts
