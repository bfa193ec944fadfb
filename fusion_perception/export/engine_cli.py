"""``fusion-perception build-engine MODEL.onnx``: build a cached TensorRT engine.

Exit status: 0 built or already up to date, 1 the build failed, 2 bad arguments or TensorRT /
GPU not available here (the message says which).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import BackendUnavailableError, DatasetError, EngineError, ModelFormatError
from ..runtime.engine_cache import PRECISIONS
from .engine_build import EngineBuildRequest, build_engine

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fusion-perception build-engine",
        description="Build a TensorRT engine from an exported ONNX file. Engines are cached by TensorRT "
        "version, GPU compute capability, precision, input shape and ONNX hash; an up-to-date one is "
        "reused, a stale or foreign one rebuilt.",
    )
    p.add_argument("onnx", type=Path, help="ONNX file written by `fusion-perception export`")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16", help="(str) engine precision")
    p.add_argument("--engine", type=Path, help="(path) engine file; default: cache dir, named by key")
    p.add_argument("--cache-dir", type=Path, help="(path) engine cache folder (default ~/.cache/...)")
    p.add_argument("--min-shape", help="(WxH) smallest input, dynamic models only")
    p.add_argument("--opt-shape", help="(WxH) input the builder tunes for, dynamic models only")
    p.add_argument("--max-shape", help="(WxH) largest input, dynamic models only")
    p.add_argument("--workspace-mib", type=int, default=1024, help="(int) builder workspace limit, MiB")
    p.add_argument("--timing-cache", type=Path, help="(path) timing cache file (default: in the cache dir)")
    p.add_argument("--calib-dir", type=Path, help="(path) calibration pairs for INT8 (ir/ and vi/ inside)")
    p.add_argument("--calib-count", type=int, default=64, help="(int) calibration pairs to use")
    p.add_argument("--force", action="store_true", help="rebuild even when the cached engine is up to date")
    p.add_argument("--no-build", action="store_true", help="only check the cache; fail if a build is needed")
    p.add_argument("--device", type=int, default=0, help="(int) CUDA device index")
    p.add_argument("-v", "--verbose", action="store_true", help="show TensorRT's info messages")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    logger = logging.getLogger("fusion_perception.build_engine")
    try:
        request = EngineBuildRequest(
            onnx_path=args.onnx,
            precision=args.precision,
            engine_path=args.engine,
            cache_dir=args.cache_dir,
            min_size=args.min_shape,
            opt_size=args.opt_shape,
            max_size=args.max_shape,
            workspace_mib=args.workspace_mib,
            timing_cache=args.timing_cache,
            calib_dir=args.calib_dir,
            calib_count=args.calib_count,
            force=args.force,
            allow_build=not args.no_build,
            device=args.device,
        )
        engine = build_engine(request, logger)
    except (ValueError, FileNotFoundError, DatasetError, ModelFormatError, BackendUnavailableError) as err:
        print(f"build-engine: error: {err}", file=sys.stderr)
        return 2
    except EngineError as err:
        print(f"build-engine: failed: {err}", file=sys.stderr)
        return 1
    print(engine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
