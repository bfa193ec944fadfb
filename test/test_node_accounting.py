"""Pure accounting of the node: diagnostics text and levels, camera liveness, the intake, losses.

The node tests over DDS check the same behaviour end to end; these pin the rules down exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from fusion_perception.pairing import StampPairer
from fusion_perception.ros.delivery import LossLedger, SequenceGaps
from fusion_perception.ros.diagnostics import ERROR, OK, WARN, NodeStats, pairing_values
from fusion_perception.ros.intake import FrameIntake, single_camera_inputs
from fusion_perception.ros.liveness import CameraWatch

MS = 1_000_000


def _active() -> NodeStats:
    stats = NodeStats()
    stats.backend("onnxruntime", "active", "m.onnx")
    return stats


# ----------------------------------------------------------------------------------- diagnostics
def test_period_text_gives_the_count_the_counters_moved_by() -> None:
    stats, seen = _active(), {}
    for total in range(1, 21):  # 20 unpaired IR frames folded one by one, as the node does
        stats.fold({("ir", "unpaired"): total}, seen)
    stats.drop("visible", "bad_layout", "step 10 is shorter")
    first = stats.status()
    assert first.level == WARN
    assert "20 ir frame(s) dropped: unpaired" in first.message
    assert "1 visible frame(s) dropped: bad_layout (step 10 is shorter)" in first.message
    assert first.value("dropped_ir_unpaired") == "20" and first.value("dropped_visible_bad_layout") == "1"
    stats.fold({("ir", "unpaired"): 20}, seen)  # folding the same total again adds nothing
    second = stats.status()
    assert second.level == OK and second.message == "ok" and second.value("dropped_ir_unpaired") == "20"
    stats.error("pipeline failed: boom")
    assert stats.status().level == ERROR


@pytest.mark.parametrize(("state", "reason", "level"), [
    ("unconfigured", "autostart is false: waiting for a configure transition", ERROR),
    ("configure failed", "ModelFormatError: /x.onnx does not exist", ERROR),
    ("inactive", "deactivated by a lifecycle transition", WARN),
    ("finalized", "shut down by a lifecycle transition", ERROR),
])
def test_level_follows_the_lifecycle_state_while_it_lasts(state: str, reason: str, level: int) -> None:
    stats = NodeStats()
    stats.backend("onnxruntime", state, reason=reason)
    for _ in range(3):  # not only in the period of the failure
        status = stats.status(health=(OK, ""))
        assert status.level == level and status.message == f"{state}: {reason}"
        assert status.value("state_reason") == reason


def test_camera_health_counts_only_while_active() -> None:
    stats = _active()
    assert stats.status(health=(WARN, "no usable ir frames")).level == WARN
    stats.backend("onnxruntime", "inactive", reason="deactivated")
    assert stats.status(health=(ERROR, "no frames")).message == "inactive: deactivated"


@pytest.mark.parametrize(("rate_hz", "ir_lag_ms"), [(5.0, 500.0), (30.0, 500.0), (10.0, -40.0)])
def test_unpaired_offset_is_the_real_stamp_offset_of_the_cameras(rate_hz: float, ir_lag_ms: float) -> None:
    """Frames arriving together but stamped ``ir_lag_ms`` apart read -``ir_lag_ms`` (visible - IR),
    also where the offset exceeds the frame period (the nearest-frame difference would read at
    most half a period: about 100 ms for 500 ms at 5 Hz)."""
    intake = FrameIntake(StampPairer(15 * MS, queue_size=5), stale_s=5.0, policy="degrade", now=0.0)
    period_s = 1.0 / rate_hz
    for i in range(int(3 * rate_hz)):  # 3 s of both cameras
        now = 1.0 + i * period_s
        arrival_ns = round(now * 1e9)
        assert intake.push("visible", arrival_ns, i, now) == []
        assert intake.push("ir", arrival_ns + round(ir_lag_ms * MS), i, now + 0.001) == []
    values = dict(intake.values())
    assert values["paired"] == "0" and values["skew_ms_max"] == "0.000"
    assert float(values["unpaired_offset_ms_last"]) == pytest.approx(-ir_lag_ms, abs=1.01)
    assert values["stamp_resets"] == "0"


def test_pairing_values_read_nan_before_any_frame_went_unpaired() -> None:
    pairer = StampPairer(15 * MS, queue_size=5)
    values = dict(pairing_values(pairer.stats, {"ir": 0, "visible": 1}))
    assert values["unpaired_offset_ms_last"] == "nan" and values["pending_visible"] == "1"


# ------------------------------------------------------------------------------------ liveness
def _stream(watch: CameraWatch, stream: str, start: float, end: float) -> None:
    for t in np.arange(start, end + 1e-9, 0.1):
        watch.heard(stream, float(t))


def test_one_silent_camera_warns_then_errors_and_both_silent_is_an_error() -> None:
    watch = CameraWatch(now=0.0, stale_s=1.0)
    _stream(watch, "ir", 0.0, 0.5)
    _stream(watch, "visible", 0.0, 0.5)
    assert watch.assess(0.5, 5.0, "degrade").level == OK
    _stream(watch, "visible", 0.6, 2.0)
    warn = watch.assess(2.0, 5.0, "degrade")
    assert (warn.level, warn.live, warn.degraded) == (WARN, ("visible",), True)
    assert warn.message == "no usable ir frames for 1.5 s: publishing visible only (degraded)"
    _stream(watch, "visible", 2.1, 6.0)
    error = watch.assess(6.0, 5.0, "drop")
    assert error.level == ERROR and error.message.endswith("publishing nothing (camera_loss_policy: drop)")
    assert not error.degraded and dict(error.values())["degraded"] == "false"
    both = watch.assess(7.5, 5.0, "degrade")
    assert (both.level, both.message, both.live) == (ERROR, "no frames from either camera for 1.5 s", ())


def test_a_camera_is_alone_only_after_streaming_for_stale_s_without_its_partner() -> None:
    watch = CameraWatch(now=10.0, stale_s=1.0)
    watch.heard("visible", 11.5)
    assert watch.assess(11.5, 5.0, "degrade").silent_s["ir"] == pytest.approx(1.5)  # since activation
    assert not watch.alone("visible", 11.5)  # both were silent: the first frame waits for its partner
    _stream(watch, "visible", 11.6, 12.5)
    assert watch.alone("visible", 12.5) and not watch.alone("ir", 12.5)
    watch.heard("ir", 12.6)  # the partner is back
    assert not watch.alone("visible", 12.6)


# -------------------------------------------------------------------------------------- intake
def _intake(policy: str) -> FrameIntake[int]:
    return FrameIntake(StampPairer(15 * MS, queue_size=5), stale_s=1.0, policy=policy, now=0.0)


def test_degrade_processes_the_live_camera_alone_and_recovers_to_pairs() -> None:
    intake = _intake("degrade")
    assert intake.wait_s == pytest.approx(0.015)  # the pairing window
    jobs = [j for i in range(10) for j in intake.push("visible", i * 100 * MS, i, 0.1 * i)]
    assert jobs == []  # streaming for less than stale_s: waiting for the IR partner as usual
    assert intake.push("visible", 20 * 100 * MS, 20, 1.05) == []  # visible alone for 1 s, IR never seen
    assert intake.holding and dict(intake.values())["pending_visible"] == "6"  # 5 queued + 1 held
    assert intake.expire(1.06) == []  # still within the pairing window
    later = intake.expire(1.07)
    assert [(j.ir, j.visible, j.sources, j.degraded) for j in later] == [(None, 20, "visible", True)]
    assert intake.single["visible"] == 1 and not intake.holding
    intake.push("ir", 21 * 100 * MS, 21, 1.1)  # the IR camera is back: pairing resumes
    (pair,) = intake.push("visible", 21 * 100 * MS, 21, 1.1)
    assert (pair.ir, pair.visible, pair.degraded, pair.sources) == (21, 21, False, "ir+visible")


@pytest.mark.parametrize("policy", ["degrade", "drop"])
def test_a_returning_camera_pairs_with_the_frame_that_waited_for_it(policy: str) -> None:
    intake = _intake(policy)

    def lone() -> int:  # IR frames that went on alone: processed (degrade) or dropped (drop)
        return intake.single["ir"] + intake.drops()[("ir", "no_partner")]

    for i in range(20):  # IR alone from t = 1.1 s (until then it waited for a partner as usual)
        intake.push("ir", i * 100 * MS, i, 0.1 * i)
        intake.expire(0.1 * i + 0.05)
    assert lone() == 9
    # The visible camera returns; its driver publishes a few ms after the IR one, so the IR frame
    # arrives while visible is still stale. It waits, and the pair is fused.
    assert intake.push("ir", 20 * 100 * MS, 20, 2.0) == [] and intake.holding
    (pair,) = intake.push("visible", 20 * 100 * MS + 2 * MS, 20, 2.004)
    assert (pair.ir, pair.visible, pair.degraded) == (20, 20, False)
    assert lone() == 9 and not intake.holding
    assert intake.drops()[("visible", "unpaired")] == 0
    assert intake.drops()[("ir", "unpaired")] + intake.drops()[("ir", "overflow")] == 11  # queued at 0-1 s
    values = dict(intake.values())
    assert values["paired"] == "1" and values["pending_ir"] == values["pending_visible"] == "0"


def test_a_lone_frame_goes_on_when_its_partner_is_out_of_the_window_or_its_successor_comes() -> None:
    intake = _intake("degrade")
    for i in range(12):  # IR streams; alone from t = 1.1 s
        intake.push("ir", i * 100 * MS, i, 0.1 * i)
    assert intake.holding and intake.single["ir"] == 0
    (lone,) = intake.push("ir", 12 * 100 * MS, 12, 1.2)  # the timer was late: the successor releases it
    assert (lone.ir, lone.visible) == (11, None) and intake.holding
    (lone,) = intake.push("visible", 12 * 100 * MS + 40 * MS, 12, 1.24)  # 40 ms off: not its partner
    assert (lone.ir, lone.visible) == (12, None) and not intake.holding
    assert intake.single["ir"] == 2 and dict(intake.values())["pending_visible"] == "1"


def test_drop_policy_counts_every_frame_it_does_not_process() -> None:
    intake = _intake("drop")
    for i in range(25):  # 2.5 s of IR alone: after 1 s, no frame waits longer than the pairing window
        assert intake.push("ir", i * 100 * MS, i, 0.1 * i) == []
    assert intake.expire(2.5) == []
    assert intake.drops()[("ir", "no_partner")] == 14  # t = 1.1 .. 2.4 s
    assert intake.pairer.pending("ir") == 5 and intake.drops()[("ir", "overflow")] == 6  # t = 0 .. 1.0 s


def test_single_camera_inputs_feed_the_live_camera_as_both_sources() -> None:
    rng = np.random.default_rng(0)
    visible = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    ir, vis = single_camera_inputs(None, visible)
    assert ir.shape == (48, 64) and ir.dtype == np.uint8 and vis is visible
    ir16 = rng.integers(20000, 21000, (48, 64), dtype=np.uint16)
    ir_out, grey = single_camera_inputs(ir16, None)
    assert ir_out is ir16 and grey.dtype == np.uint8 and grey.shape == (48, 64)
    assert grey.max() == 255 and grey.min() == 0  # gain control spread the 16-bit window
    with pytest.raises(ValueError, match="exactly one"):
        single_camera_inputs(None, None)


# ---------------------------------------------------------------------------------- delivery
def test_sequence_gaps_count_missing_numbers_and_survive_a_publisher_restart() -> None:
    gaps = SequenceGaps()
    for seq in (1, 2, 5, 6, 10):
        gaps.update(seq)
    assert gaps.missing == 5  # 3, 4, 7, 8, 9
    gaps.update(1)  # a new publisher (restarted driver, replayed bag) starts again at 1
    gaps.update(3)
    assert (gaps.missing, gaps.restarts) == (6, 1)
    assert gaps.update(0) == 0  # RMWs without sequence numbers report 0


def test_loss_ledger_never_counts_a_transport_loss_twice() -> None:
    ledger = LossLedger()
    for seq in (1, 2, 4, 5):  # seq 3 lost in transport; its event arrives after the frame
        ledger.message(seq)
    ledger.settle()
    ledger.transport_lost(1)
    for seq in (6, 9):  # 7 and 8 overwritten in the queue (no event)
        ledger.message(seq)
    ledger.settle()
    ledger.settle()
    assert (ledger.transport, ledger.queue) == (1, 2)
    ledger.message(20, single_publisher=False)  # a second publisher: numbers interleave, no count
    ledger.message(21)
    ledger.settle()
    ledger.settle()
    assert ledger.queue == 2
