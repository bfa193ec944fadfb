"""``fusion-perception bag make|evaluate|play``: the command line over :mod:`fusion_perception.bag`.

Errors the package raises on purpose (bad bag, missing topic, bad labels, ...) are printed as one
``error:`` line naming the problem, with exit status 1; usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli import run_action
from ..errors import FusionPerceptionError

__all__ = ["main"]


def _add_make(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make", help="image-pair folder (ir/ + vi/) -> ROS 2 bag")
    p.add_argument("dataset", type=Path, help="folder with ir/ and vi/ (MSRS layout)")
    p.add_argument("out", type=Path, help="bag folder to create (must not exist)")
    p.add_argument(
        "--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)"
    )
    p.add_argument("--rate", type=float, default=30.0, help="frame rate of the stamps, Hz (default 30)")
    p.add_argument(
        "--jitter-ms", type=float, default=0.0, help="max |IR - visible| stamp offset, ms (default 0)"
    )
    p.add_argument("--ir-16bit", action="store_true", help="store 8-bit IR as mono16 (counts x 257)")
    p.add_argument("--visible-encoding", choices=("bgr8", "rgb8"), default="bgr8")
    p.add_argument("--limit", type=int, help="at most this many pairs")
    p.add_argument("--split", type=Path, help="file listing the pair names to use (e.g. splits/val.txt)")
    p.add_argument(
        "--labels-dir", help="label folder (default: labels_det_fusion, labels_det_vi or labels; '' for none)"
    )
    p.add_argument("--ir-topic", default="/ir/image")
    p.add_argument("--visible-topic", default="/visible/image")
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="run the node's pipeline over a bag; speed, quality, outputs bag")
    p.add_argument("bag", type=Path)
    p.add_argument("--json", type=Path, required=True, help="summary JSON to write (must not exist)")
    p.add_argument("--report", type=Path, help="report folder to write (plots, samples, index.md)")
    p.add_argument("--output-bag", type=Path, help="outputs bag (MCAP) to write; default <json stem>_outputs")
    p.add_argument("--no-output-bag", action="store_true", help="do not write an outputs bag")
    p.add_argument(
        "--params-file", type=Path, help="the node's ROS params file (config/fusion_perception.yaml)"
    )
    p.add_argument("--model", type=Path, help="ONNX model (default: the node's model_file_path)")
    p.add_argument("--ir-topic", help="IR topic in the bag (default: the node's, made absolute)")
    p.add_argument("--visible-topic", help="visible topic in the bag (default: the node's, made absolute)")
    p.add_argument("--labels", type=Path, help="label index (default: <bag>/labels.json if present)")
    p.add_argument("--metrics-every", type=int, default=1, help="fusion metrics on every n-th pair (0: none)")
    p.add_argument("--max-pairs", type=int, help="stop after this many pairs")
    p.add_argument("--threads", type=int, help="backend threads, 0: all cores (default: the node's threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--judge",
        action="store_true",
        help="also score fused/IR/visible/average/max images with the fixed NanoDet-g teacher",
    )


def _add_play(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("play", help="publish a bag's messages live with their recorded timing")
    p.add_argument("bag", type=Path)
    p.add_argument("--rate", type=float, default=1.0, help="time factor (2 = twice as fast)")
    p.add_argument("--loop", action="store_true", help="start again at the end (Ctrl-C stops)")
    p.add_argument("--loops", type=int, default=0, help="with --loop: stop after N passes (0: Ctrl-C)")
    p.add_argument("--clock", action="store_true", help="publish /clock (for use_sim_time)")
    p.add_argument("--topics", nargs="+", help="only these topics")
    p.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="rename topics")
    p.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for a subscriber on every image topic before starting",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="pause after discovery before the first message (DDS drops early messages)",
    )


def _make(args: argparse.Namespace) -> int:
    from .make import MakeOptions, make_bag

    names = None
    if args.split is not None:
        try:
            names = tuple(line.strip() for line in args.split.read_text().splitlines() if line.strip())
        except OSError as err:
            raise FusionPerceptionError(f"cannot read split file {args.split}: {err}") from err
    opts = MakeOptions(
        storage=args.storage,
        rate_hz=args.rate,
        jitter_ms=args.jitter_ms,
        ir_16bit=args.ir_16bit,
        visible_encoding=args.visible_encoding,
        limit=args.limit,
        names=names,
        labels_dir=args.labels_dir,
        ir_topic=args.ir_topic,
        visible_topic=args.visible_topic,
        seed=args.seed,
    )
    summary = make_bag(args.dataset, args.out, opts)
    print(
        f"wrote {summary.bag}: {summary.pairs} pairs, {summary.labelled} labelled; topics "
        + ", ".join(f"{t} [{m}]" for t, m in summary.topics.items())
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import EvaluateOptions, evaluate_bag, load_params_file

    output_bag = None
    if not args.no_output_bag:
        output_bag = args.output_bag or args.json.with_name(args.json.stem + "_outputs")
    opts = EvaluateOptions(
        params=load_params_file(args.params_file) if args.params_file else {},
        model=args.model,
        ir_topic=args.ir_topic,
        visible_topic=args.visible_topic,
        labels=args.labels,
        output_bag=output_bag,
        report_dir=args.report,
        metrics_every=args.metrics_every,
        max_pairs=args.max_pairs,
        threads=args.threads,
        progress=not args.no_progress,
        judge=args.judge,
    )
    s = evaluate_bag(args.bag, args.json, opts)
    lat, tp, pairing = s["latency_ms"]["total"], s["throughput"], s["pairing"]
    brief = {
        "pairs": tp["pairs"],
        "pairs_per_s": round(tp["pairs_per_s"], 2),
        "latency_ms_p50_p95_p99": [round(lat[k], 2) for k in ("p50", "p95", "p99")],
        "dropped": pairing["dropped"],
        "fusion_metrics_mean": {k: round(v, 4) for k, v in s["fusion_metrics"]["mean"].items()},
        "detection": {k: s["detection"][k] for k in ("mAP50", "mAP50_95", "num_images")}
        if s["detection"]
        else None,
    }
    print(json.dumps(brief, indent=1))
    if s["judge"]:
        from ..teacher.judge import format_judge

        print("\n".join(format_judge(s["judge"])))
    print(
        f"wrote {args.json}"
        + (f", {output_bag}" if output_bag else "")
        + (f", {args.report}" if args.report else "")
    )
    return 0


def _play(args: argparse.Namespace) -> int:
    from .play import PlayOptions, play_bag

    remap = {}
    for item in args.remap:
        src, sep, dst = item.partition(":=")
        if not sep or not src or not dst:
            raise FusionPerceptionError(f"--remap needs FROM:=TO, got {item!r}")
        remap[src] = dst
    opts = PlayOptions(
        rate=args.rate,
        loop=args.loop,
        loops=args.loops,
        clock=args.clock,
        topics=tuple(args.topics) if args.topics else None,
        remap=remap,
        wait_for_subscribers_s=args.wait_for_subscribers,
        settle_s=args.settle,
    )
    count = play_bag(args.bag, opts)
    print(f"published {count} messages")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (without the ``bag`` word) and run the chosen action; returns the exit status."""
    parser = argparse.ArgumentParser(prog="fusion-perception bag", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    _add_make(sub)
    _add_evaluate(sub)
    _add_play(sub)
    args = parser.parse_args(argv)
    try:
        return run_action(parser.prog, {"make": _make, "evaluate": _evaluate, "play": _play}, args)
    except KeyboardInterrupt:  # Ctrl-C ends ``play --loop``: the shell's status for SIGINT, no traceback
        return 130
