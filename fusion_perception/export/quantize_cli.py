"""``fusion-perception quantize MODEL.onnx [--out MODEL_int8.onnx] --calib DATASET_DIR``.

Writes the INT8 (QDQ) sibling the node loads with ``precision: int8`` (default ``<stem>_int8.onnx``
beside the model) and ``<stem>_int8.quantization.json`` with the calibration facts; see
:mod:`.quantize` for what is quantized and why. Calibrates on ``DATASET_DIR/splits/train.txt``
unless ``--split`` says otherwise. Exit status: 0 written, 2 bad arguments or unusable inputs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import FusionPerceptionError
from ..runtime.backends import int8_model_path
from ..runtime.model_info import OUTPUT_NAMES
from .quantize import (
    CALIBRATION_METHODS,
    DEFAULT_FP32_TAILS,
    DEFAULT_OP_TYPES,
    QuantizeOptions,
    calibration_pairs,
    quantize_model,
)

__all__ = ["main", "parser"]

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fusion-perception quantize",
        description="Write the INT8 (QDQ) sibling of an FP32 ONNX model, statically calibrated on real "
        "pairs through the node's preprocessing (train split by default); the node runs it with "
        "precision: int8.",
    )
    p.add_argument("model", type=Path, help="(path) FP32 ONNX file written by `fusion-perception export`")
    p.add_argument("--out", type=Path, help="(path) output; default <stem>_int8.onnx beside the model")
    p.add_argument("--calib", type=Path, required=True, help="(path) pair folder (ir/, vi/; MSRS layout)")
    p.add_argument("--split", default="train",
                   help="(str) name under CALIB/splits/ or a split file; '' = every pair (default train)")
    p.add_argument("--limit", type=int, help="(int) use the first N calibration pairs (default: all)")
    p.add_argument("--method", choices=CALIBRATION_METHODS, default="minmax",
                   help="(str) calibration; entropy/percentile hold ~40 MB a pair in memory")
    p.add_argument("--op-types", default=",".join(DEFAULT_OP_TYPES),
                   help="(str) comma-separated op types to quantize; '' = every op ORT can (default Conv)")
    tails = " and ".join(DEFAULT_FP32_TAILS)
    p.add_argument("--fp32-tail", action="append", choices=OUTPUT_NAMES,
                   help=f"(str) output whose tail stays FP32, repeatable (default {tails})")
    p.add_argument("--no-fp32-tails", action="store_true", help="quantize the output tails too")
    p.add_argument("--exclude", action="append", default=[], help="(glob) node names kept FP32, repeatable")
    p.add_argument("--min-conv-channels", type=int, default=QuantizeOptions.min_conv_channels,
                   help="(int) convs with fewer input channels stay FP32 (default %(default)s)")
    p.add_argument("--fp32-depthwise", action="store_true", help="keep depthwise convs FP32")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    p.add_argument("--no-preprocess", action="store_true",
                   help="skip ORT's quant_pre_process (symbolic shape inference) if it fails on a graph")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tails = () if args.no_fp32_tails else tuple(args.fp32_tail or DEFAULT_FP32_TAILS)
    out = args.out or int8_model_path(args.model)
    try:
        options = QuantizeOptions(
            op_types=tuple(t for t in args.op_types.split(",") if t), fp32_tails=tails,
            exclude=tuple(args.exclude), per_channel=not args.per_tensor, calibrate_method=args.method,
            min_conv_channels=args.min_conv_channels, fp32_depthwise=args.fp32_depthwise,
            preprocess=not args.no_preprocess,
        )
        pairs = calibration_pairs(args.calib, args.split or None, args.limit)
        facts = quantize_model(args.model, out, pairs, options)
    except (ValueError, FusionPerceptionError) as err:
        print(f"quantize: error: {err}", file=sys.stderr)
        return 2
    log.info("calibrated on %d pairs of %s; kept FP32: %s", facts["calibration_pairs"],
             facts["calibration_folder"], {k: len(v) for k, v in facts["kept_fp32"].items()})
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
