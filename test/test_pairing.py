"""StampPairer: approximate-time pairing under jitter, drops, reordering and a silent camera."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_perception.pairing import StampPairer

MS = 1_000_000
PERIOD = 33 * MS
SLOP = 15 * MS


def _feed(pairer: StampPairer, events: list[tuple[str, int]]) -> list[tuple[int, int]]:
    out = []
    for stream, stamp in events:
        out += [(p.ir_stamp_ns, p.visible_stamp_ns) for p in pairer.push(stream, stamp, stamp)]
    return out


def test_jittered_streams_pair_every_frame_with_its_own_partner() -> None:
    rng = np.random.default_rng(1)
    base = np.arange(200) * PERIOD + 10**12
    ir = base + rng.integers(-5 * MS, 5 * MS, base.size)
    vis = base + rng.integers(-5 * MS, 5 * MS, base.size)
    # arrival order also jitters: interleave by stamp plus transport noise
    events = sorted([("ir", int(t)) for t in ir] + [("visible", int(t)) for t in vis],
                    key=lambda e: e[1] + int(rng.integers(0, 8 * MS)))
    pairer = StampPairer(SLOP, queue_size=5)
    pairs = _feed(pairer, events)
    assert pairs == list(zip(ir.tolist(), vis.tolist(), strict=True))[: len(pairs)]
    assert len(pairs) >= 199  # the last frame may still wait for its partner
    assert pairer.stats.max_abs_skew_ns <= 10 * MS
    assert sum(pairer.stats.dropped(s) for s in ("ir", "visible")) == 0


def test_dropped_frames_leave_their_partner_unpaired_and_counted() -> None:
    stamps = [i * PERIOD for i in range(10)]
    events = []
    for i, t in enumerate(stamps):
        if i != 3:
            events.append(("ir", t))
        if i != 6:
            events.append(("visible", t + 2 * MS))
    pairer = StampPairer(SLOP)
    pairs = _feed(pairer, events)
    assert [ir for ir, _ in pairs] == [t for i, t in enumerate(stamps) if i not in (3, 6)]
    assert pairer.stats.unpaired == {"ir": 1, "visible": 1}


def test_late_frame_does_not_steal_its_neighbours_partner() -> None:
    # visible at 0 arrives only after IR 0 and IR 10 ms; slop 15 ms covers both, nearest wins
    pairer = StampPairer(SLOP)
    pairs = _feed(pairer, [("ir", 0), ("ir", 10 * MS), ("visible", 9 * MS)])
    assert pairs == [(10 * MS, 9 * MS)]
    assert pairer.stats.unpaired["ir"] == 1


def test_out_of_order_frames_are_rejected_and_counted() -> None:
    pairer = StampPairer(SLOP)
    assert _feed(pairer, [("ir", 100 * MS), ("visible", 100 * MS)]) == [(100 * MS, 100 * MS)]
    assert _feed(pairer, [("ir", 50 * MS), ("ir", 100 * MS)]) == []  # older, then duplicate
    assert pairer.stats.out_of_order == {"ir": 2, "visible": 0}
    assert _feed(pairer, [("ir", 133 * MS), ("visible", 134 * MS)]) == [(133 * MS, 134 * MS)]


@pytest.mark.parametrize("silent", ["ir", "visible"])
def test_silent_camera_bounds_the_other_queue_and_counts_overflow(silent: str) -> None:
    live = "visible" if silent == "ir" else "ir"
    pairer = StampPairer(SLOP, queue_size=4)
    _feed(pairer, [(live, i * PERIOD) for i in range(10)])
    assert pairer.pending(live) == 4
    assert pairer.stats.overflow[live] == 6
    # the silent camera comes back: stale frames go as unpaired, the matching one pairs
    pairs = _feed(pairer, [(silent, 9 * PERIOD + MS)])
    assert len(pairs) == 1 and pairer.stats.unpaired[live] == 3
    assert pairer.stats.dropped(live) == 9


def test_offset_beyond_slop_never_pairs() -> None:
    # 10 Hz, IR 30 ms late: 30 ms from its own partner and 70 ms from the next one, both > slop
    pairer = StampPairer(SLOP)
    events = []
    for i in range(20):
        events += [("ir", i * 100 * MS + 2 * SLOP), ("visible", i * 100 * MS)]
    assert _feed(pairer, events) == []
    assert pairer.stats.paired == 0
    assert pairer.stats.unpaired["ir"] + pairer.stats.unpaired["visible"] >= 38
    # skew of paired frames stays 0: the offset shows in the node's unpaired_offset_ms_last instead
    assert pairer.stats.max_abs_skew_ns == 0


def test_offset_of_a_whole_period_pairs_with_the_neighbour() -> None:
    # why the slop must stay below half a period: a 30 ms offset at 30 Hz pairs frame i with i+1
    pairer = StampPairer(SLOP)
    events = []
    for i in range(5):
        events += [("ir", i * PERIOD + 30 * MS), ("visible", i * PERIOD)]
    assert [v - ir for ir, v in _feed(pairer, events)] == [3 * MS] * 4


def test_reset_forgets_queues_but_keeps_counts() -> None:
    pairer = StampPairer(SLOP)
    _feed(pairer, [("ir", 10 * PERIOD), ("visible", 10 * PERIOD), ("ir", 11 * PERIOD)])
    pairer.reset()
    assert pairer.pending("ir") == 0 and pairer.stats.paired == 1
    assert _feed(pairer, [("ir", 0), ("visible", 0)]) == [(0, 0)]  # time jumped back after a replay


def test_time_jumping_back_restarts_pairing_at_once_and_counts_the_reset() -> None:
    # a bag played in a loop: the second pass repeats the first pass's stamps
    one_pass = [e for i in range(10) for e in (("ir", i * PERIOD), ("visible", i * PERIOD + MS))]
    looped = StampPairer(SLOP, queue_size=5, jump_reset_ns=PERIOD * 5)
    first = _feed(looped, one_pass)
    second = _feed(looped, one_pass)
    assert len(first) == 10 and second == first  # outputs resume with the first frame of the loop
    assert looped.stats.resets == 1 and looped.stats.reset == {"ir": 0, "visible": 0}
    # without a threshold the second pass is nothing but out-of-order drops (the bug this fixes)
    stalled = StampPairer(SLOP, queue_size=5)
    _feed(stalled, one_pass)
    assert _feed(stalled, one_pass) == [] and stalled.stats.out_of_order["ir"] == 10


@pytest.mark.parametrize("late", ["visible", "ir"])
def test_each_loop_wrap_is_one_reset_and_loses_no_pair(late: str) -> None:
    """A looped 8-pair bag, 5 passes (4 wraps), where at every wrap the ``late`` camera's last frame
    of a pass arrives 10 ms after the other camera's first frame of the next pass."""
    first = "ir" if late == "visible" else "visible"
    pairer = StampPairer(SLOP, queue_size=5, jump_reset_ns=5 * PERIOD)
    events: list[tuple[str, int]] = []
    for _ in range(5):
        one_pass = [e for i in range(8) for e in ((first, i * PERIOD), (late, i * PERIOD + MS))]
        if events:  # the late camera's last frame of the previous pass comes after this pass's first
            events.insert(len(events) - 1, one_pass.pop(0))
            events.append(one_pass.pop(0))
        events += one_pass
    pairs = _feed(pairer, events)
    assert len(pairs) == 40 and pairer.stats.paired == 40
    assert pairer.stats.resets == 4
    assert sum(pairer.stats.dropped(s) for s in ("ir", "visible")) == 0, pairer.stats


def test_a_camera_jumping_to_another_timeline_starts_an_epoch_and_stale_frames_count_as_reset() -> None:
    pairer = StampPairer(SLOP, queue_size=5, jump_reset_ns=5 * PERIOD)
    _feed(pairer, [("ir", 100 * PERIOD), ("visible", 100 * PERIOD), ("ir", 101 * PERIOD)])
    assert _feed(pairer, [("visible", 0)]) == [] and pairer.stats.resets == 1  # visible restarts alone
    # IR jumps back too, but far from visible's new timeline: a timeline of its own, another reset
    assert _feed(pairer, [("ir", 50 * PERIOD)]) == [] and pairer.stats.resets == 2
    assert pairer.stats.reset["ir"] == 1  # 101 could only have paired on the first timeline
    # the streams on one timeline again: the visible camera joins IR's
    assert _feed(pairer, [("visible", 50 * PERIOD + MS)]) == [(50 * PERIOD, 50 * PERIOD + MS)]
    assert pairer.stats.resets == 2 and pairer.stats.reset["visible"] == 1


def test_one_glitched_stamp_costs_one_reset_and_pairing_goes_on() -> None:
    """One IR frame stamped far in the future: IR's next frame jumps back (a reset), and the visible
    camera, which never jumped, joins the new epoch with its next frame."""
    pairer = StampPairer(SLOP, queue_size=5, jump_reset_ns=5 * PERIOD)
    events = [("ir", 0), ("visible", 0), ("ir", 500 * PERIOD), ("ir", PERIOD), ("visible", PERIOD),
              ("ir", 2 * PERIOD), ("visible", 2 * PERIOD)]
    assert _feed(pairer, events) == [(0, 0), (PERIOD, PERIOD), (2 * PERIOD, 2 * PERIOD)]
    assert pairer.stats.resets == 1 and pairer.stats.reset == {"ir": 1, "visible": 0}


def test_small_steps_back_stay_out_of_order_and_queued_frames_count_as_reset() -> None:
    pairer = StampPairer(SLOP, queue_size=5, jump_reset_ns=10 * PERIOD)
    _feed(pairer, [("visible", 100 * PERIOD), ("visible", 101 * PERIOD)])
    assert _feed(pairer, [("visible", 99 * PERIOD)]) == []  # 2 periods back: late, not a reset
    assert pairer.stats.out_of_order["visible"] == 1 and pairer.stats.resets == 0
    assert _feed(pairer, [("visible", 0), ("ir", 0)]) == [(0, 0)]  # 101 periods back: reset
    assert pairer.stats.resets == 1 and pairer.stats.reset["visible"] == 2
    assert pairer.stats.dropped("visible") == 3


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="slop_ns"):
        StampPairer(-1)
    with pytest.raises(ValueError, match="queue_size"):
        StampPairer(SLOP, queue_size=0)
    with pytest.raises(ValueError, match="jump_reset_ns"):
        StampPairer(SLOP, jump_reset_ns=0)
    with pytest.raises(ValueError, match="stream"):
        StampPairer(SLOP).push("depth", 0, None)  # type: ignore[arg-type]
