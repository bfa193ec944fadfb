"""``fusion-perception calibrate``: the IR -> visible homography of a rig, from a bag or a pair folder.

Exit status: 0 written; 2 the data cannot determine a homography (one line ``cannot calibrate
(<reason>): ...`` on stderr, nothing written) or a usage error; 1 any other error (unreadable bag,
missing topic, output already there, ...), also one line. Method and verdicts: docs/CALIBRATION.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ..errors import CalibrationError, FusionPerceptionError

__all__ = ["main"]

PROG = "fusion-perception calibrate"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Estimate the IR -> visible homography (the node's `homography` parameter) from a "
        "ROS 2 bag of the rig or a pair folder (ir/ + vi/), and write a params file and a report.",
    )
    p.add_argument("source", type=Path, help="bag (folder or .mcap/.db3) or pair folder with ir/ and vi/")
    p.add_argument("--out", type=Path, default=Path("homography.yaml"),
                   help="params file to write (default homography.yaml)")
    p.add_argument("--report", type=Path, default=Path("calibration_report"),
                   help="report folder to write (default calibration_report; must not exist)")
    p.add_argument("--force", action="store_true", help="replace --out and --report if they exist")
    p.add_argument("--ir-topic", default="/ir/image", help="IR image topic in a bag (default /ir/image)")
    p.add_argument("--visible-topic", default="/visible/image",
                   help="visible image topic in a bag (default /visible/image)")
    p.add_argument("--slop-ms", type=float, default=15.0,
                   help="largest |IR - visible| stamp difference that pairs, ms "
                   "(the node's sync_slop_s; default 15)")
    p.add_argument("--max-pairs", type=int, default=24, help="most pairs used, spread evenly (default 24)")
    p.add_argument("--min-pairs", type=int, default=3, help="fewest usable pairs for an answer (default 3)")
    p.add_argument("--gain-mode", choices=("percentile", "fixed"), default="percentile",
                   help="16-bit thermal gain, as the node's gain_mode (default percentile)")
    p.add_argument("--gain-low", type=float, default=1.0, help="as the node's gain_low (default 1)")
    p.add_argument("--gain-high", type=float, default=99.0, help="as the node's gain_high (default 99)")
    p.add_argument("--min-overlap", type=float, default=0.2,
                   help="least fraction of the visible frame the warped IR must cover (default 0.2)")
    p.add_argument("--consistency", type=float, default=0.02,
                   help="largest deviation of a pair from the joint answer, fraction of the visible "
                   "diagonal (default 0.02)")
    p.add_argument("--shown", type=int, default=3, help="pairs pictured in the report (default 3)")
    return p


def _run(args: argparse.Namespace) -> int:
    from ..preprocessing import GainControl
    from .estimate import CalibrationOptions, estimate_homography
    from .report import write_report, write_yaml, yaml_text
    from .sources import is_bag, pairs_from_bag, pairs_from_folder

    for path in (args.out, args.report):
        if path.exists() and not args.force:
            raise FusionPerceptionError(f"{path} exists (use --force to replace it)")
    gain = GainControl(mode=args.gain_mode, low=args.gain_low, high=args.gain_high)
    opts = CalibrationOptions(min_pairs=args.min_pairs, max_pairs=args.max_pairs, gain=gain,
                              min_overlap=args.min_overlap, consistency_fraction=args.consistency)
    if is_bag(args.source):
        src = pairs_from_bag(args.source, ir_topic=args.ir_topic, visible_topic=args.visible_topic,
                             slop_ns=round(args.slop_ms * 1e6), max_pairs=args.max_pairs)
    else:
        src = pairs_from_folder(args.source, args.max_pairs)
    result = estimate_homography(src.pairs, opts)
    if args.force and args.report.exists():
        shutil.rmtree(args.report)
    write_report(args.report, result, src.pairs, src.names, source=src.description,
                 available=src.available, gain=gain, shown=args.shown)
    write_yaml(args.out, yaml_text(result, src.description))
    h = result.as_parameter()
    print(f"homography: [{', '.join(f'{v:.6g}' for v in h)}]")
    print(f"{len(result.used)} of {len(result.pairs)} pairs used; alignment score "
          f"{result.score_before:.3f} -> {result.score_after:.3f}; "
          f"IR covers {100 * result.overlap:.1f}% of the visible frame")
    print(f"wrote {args.out} and {args.report}/ (index.md, report.json, pictures)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, calibrate, write; returns the exit status (see the module docstring)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except CalibrationError as err:
        print(f"{PROG}: cannot calibrate ({err.reason}): {err}", file=sys.stderr)
        return 2
    except (FusionPerceptionError, ValueError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
