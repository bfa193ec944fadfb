"""``fusion-perception``: one command, one sub-command per job.

Each sub-command lives in its own module with a ``main(argv)``; it is imported only when chosen,
so ``demo`` and ``bag`` never import torch and start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Mapping

from .errors import FusionPerceptionError

__all__ = ["COMMANDS", "main", "run_action"]

#: name -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("fusion_perception.demo", "run the ROS 2 node pipeline on the bundled sample pairs"),
    "train": ("fusion_perception.training.cli", "train the network (bi-level dual-task or learnable loss)"),
    "evaluate": (
        "fusion_perception.training.evaluate",
        "fusion metrics and detection mAP on an MSRS-layout folder",
    ),
    "export": ("fusion_perception.export.cli", "export a checkpoint to ONNX (fixed and dynamic shape)"),
    "build-engine": ("fusion_perception.export.engine_cli", "build a TensorRT engine from an ONNX file"),
    "quantize": (
        "fusion_perception.export.quantize_cli",
        "INT8 (QDQ) ONNX model for the CPU, calibrated on real pairs",
    ),
    "bag": ("fusion_perception.bag.cli", "make, evaluate and play ROS 2 bags"),
    "calibrate": (
        "fusion_perception.calibration.cli",
        "IR -> visible homography of a rig from a bag or pair folder (params file + report)",
    ),
    "teacher": (
        "fusion_perception.teacher.cli",
        "fetch, convert and run the NanoDet-g teacher (labels for training)",
    ),
}


def run_action(
    prog: str, actions: Mapping[str, Callable[[argparse.Namespace], int]], args: argparse.Namespace
) -> int:
    """Run ``actions[args.action](args)`` and return its exit status.

    An error the package raises on purpose (or a ValueError) becomes one ``PROG ACTION: error: ...``
    line on stderr and exit status 1. Shared so that every command with actions (``bag``,
    ``teacher``) reports a failure in the same words and with the same status.
    """
    try:
        return actions[args.action](args)
    except (FusionPerceptionError, ValueError) as err:
        print(f"{prog} {args.action}: error: {err}", file=sys.stderr)
        return 1


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: fusion-perception COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "fusion-perception COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the chosen sub-command; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = [c for c in COMMANDS if c.startswith(name[:2])]
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        print(f"fusion-perception: unknown command {name!r}{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
