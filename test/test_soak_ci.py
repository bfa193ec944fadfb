"""No decay (docs/ROBOT.md section 7): the soak benchmark's verdict, and its short CI variant over real DDS.

The acceptance run is 30 minutes (``benchmarks/bench_soak.py``, docs/ROBOT.md); here the verdict
logic is pinned on synthetic series (a halving after 4 minutes must fail, noise must not), and the
60 s CI variant runs the three processes for real.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench():
    if str(REPO / "benchmarks") not in sys.path:  # the benchmarks import their _report helper
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_soak", REPO / "benchmarks" / "bench_soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _series(decay_at_s: float | None, end_s: float = 600.0, rate: float = 15.0, seed: int = 0):
    """Outputs at ``rate`` with ~60 ms latency; from ``decay_at_s`` on half the rate, twice the latency."""
    rng = np.random.default_rng(seed)
    samples, t = [], 0.0
    while t < end_s:
        decayed = decay_at_s is not None and t >= decay_at_s
        samples.append((t, float(rng.normal(120.0 if decayed else 60.0, 5.0))))
        t += 2.0 / rate if decayed else 1.0 / rate
    per_second = [{"t": float(s), "node_rss_mb": 250.0 + float(rng.normal(0, 1.5)), "pipeline_ms_p50": 40.0,
                   "load1": 2.0} for s in range(int(end_s))]
    return samples, per_second


ARGS = argparse.Namespace(warmup=60.0, compare=120.0, window=60.0, tolerance=0.10, latency_tolerance=0.10,
                          max_rss_growth_mb=5.0, max_rss_rise_mb=32.0)


def test_verdict_fails_the_halving_after_four_minutes_and_passes_a_flat_run() -> None:
    bench = _bench()
    flat = bench.verdict(*_series(None), ARGS, 600.0)
    assert flat["passed"], flat
    decayed = bench.verdict(*_series(240.0), ARGS, 600.0)
    assert not decayed["checks"]["output_rate_within_tolerance"]
    assert not decayed["checks"]["latency_p50_within_tolerance"]
    assert decayed["output_rate_change"] == pytest.approx(-0.5, abs=0.02)
    samples, per_second = _series(None)
    quieter = [(t, ms * (0.8 if t >= 300 else 1.0)) for t, ms in samples]  # latency -20 %: no decay
    improved = bench.verdict(quieter, per_second, ARGS, 600.0)
    assert improved["latency_p50_change"] == pytest.approx(-0.2, abs=0.03) and improved["passed"], improved
    samples, per_second = _series(None)
    for row in per_second:
        row["node_rss_mb"] += row["t"] * 0.02  # +12 MB over 10 minutes
    leak = bench.verdict(samples, per_second, ARGS, 600.0)
    assert not leak["checks"]["rss_flat_in_second_half"], leak
    assert leak["rss_growth_mb_second_half"] == pytest.approx(0.02 * 270, abs=1.0)


def test_one_rss_step_to_a_high_water_mark_passes_and_a_step_past_the_bound_fails() -> None:
    """A backlog raises the heaps' high-water mark once (+8 MB at ~5 minutes in the soaks, up to +32 MB
    under repeated 1 s stalls), then flat: bounded, not a leak. The same shape 40 MB high fails."""
    bench = _bench()
    for step_mb, passes in ((8.0, True), (40.0, False)):
        samples, per_second = _series(None)
        for row in per_second:
            row["node_rss_mb"] += step_mb if row["t"] >= 300 else 0.0
        verdict = bench.verdict(samples, per_second, ARGS, 600.0)
        assert verdict["checks"]["rss_flat_in_second_half"], verdict
        assert verdict["rss_rise_mb_after_warmup"] == pytest.approx(step_mb, abs=1.0)
        assert verdict["checks"]["rss_rise_within_bound"] is passes


def test_rss_swinging_with_the_heap_high_water_mark_is_not_growth() -> None:
    """The node's RSS swings ~5.6 MB peak to peak within a minute (measured in CI); no trend."""
    bench = _bench()
    samples, per_second = _series(None)
    for row in per_second:
        row["node_rss_mb"] += 2.8 * np.sin(2 * np.pi * row["t"] / 70.0)
    verdict = bench.verdict(samples, per_second, ARGS, 600.0)
    assert verdict["checks"]["rss_flat_in_second_half"], verdict["rss_growth_mb_second_half"]
    assert verdict["checks"]["rss_rise_within_bound"], verdict["rss_rise_mb_after_warmup"]
    assert abs(verdict["rss_growth_mb_after_warmup"]) < 1.0


@pytest.mark.ros
@pytest.mark.timeout(400)
def test_ci_soak_keeps_outputs_flowing_and_every_frame_accounted(model_path: Path, tmp_path: Path) -> None:
    """60 s over real DDS (900 pairs at 15 Hz) decides accounting and flow; rate, latency and
    memory trends need the 30-minute run (a 90 s RSS trend once read 6.0 MB on a flat run)."""
    bench = _bench()
    out = tmp_path / "soak.json"
    code = bench.main(["--ci", "--model", str(model_path), "--json", str(out), "--keep-logs", str(tmp_path)])
    import json

    result = json.loads(out.read_text())
    assert code == 0, (result["verdict"], result["accounting"], result["windows"])
    assert set(result["verdict"]["checks"]) == {"every_frame_accounted", "outputs_in_every_window"}
    assert all(a["unaccounted"] == 0 and a["sent"] > 800 for a in result["accounting"].values())
