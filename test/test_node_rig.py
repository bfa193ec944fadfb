"""A rig whose cameras differ: a 320x256 mono16 thermal camera and a 1280x720 bgr8 visible camera,
registered by the ``homography`` parameter, into the real node over DDS.

The bundled 640x480 pair is turned into such a rig (IR down to 320x256 radiometric counts, visible
up to 1280x720); the homography is the exact IR -> visible map, so the node's outputs must be the
1280x720 versions of what the aligned pair gives.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.ros

IR_SIZE, VIS_SIZE = (320, 256), (1280, 720)
# IR pixel centres -> visible pixel centres for two cameras with the same field of view
SX, SY = VIS_SIZE[0] / IR_SIZE[0], VIS_SIZE[1] / IR_SIZE[1]
HOMOGRAPHY = (SX, 0.0, (SX - 1) / 2, 0.0, SY, (SY - 1) / 2, 0.0, 0.0, 1.0)


def _rig_pair(ir8: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ir16 = cv2.resize(ir8, IR_SIZE, interpolation=cv2.INTER_AREA).astype(np.uint16) * 40 + 7000
    return ir16, cv2.resize(visible, VIS_SIZE, interpolation=cv2.INTER_LINEAR)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_mono16_320x256_ir_and_1280x720_visible_give_registered_outputs(
    ros_context: object, tmp_path: Path, model_path: Path
) -> None:
    from conftest import NodeProcess, spinning

    from fusion_perception.assets import load_sample_pairs
    from fusion_perception.ros.client import OutputCollector, PairPublisher, spin_until
    from fusion_perception.ros.messages import image_to_array, msg_to_detections
    from fusion_perception.ros.params import settings_from_values
    from fusion_perception.ros.pipeline_setup import load_backend, pipeline_config
    from fusion_perception.runtime.pipeline import Pipeline

    name, ir8, visible = next(load_sample_pairs(1))
    reference = Pipeline(load_backend(settings_from_values({"model_file_path": str(model_path),
                                                            "threads": 1})),
                         pipeline_config(settings_from_values({})))(ir8, visible).detections
    assert len(reference) > 0, f"sample {name} has no reference detection"
    best = int(np.argmax(reference.scores))
    want_box = reference.boxes[best] * np.array([VIS_SIZE[0] / 640, VIS_SIZE[1] / 480] * 2)  # 640x480 -> rig
    ir16, vis720 = _rig_pair(ir8, visible)

    node = NodeProcess(tmp_path / "node.log", {"model_file_path": model_path, "input_qos": "reliable",
                                               "homography": list(HOMOGRAPHY), "threads": 1})
    pub, col = PairPublisher(reliable=True, context=ros_context), OutputCollector(context=ros_context)
    try:
        with spinning(ros_context, pub, col) as executor:
            assert spin_until(executor, lambda: pub.matched() and len(col.label_info) == 2, 60.0), \
                node.log()[-3000:]
            stamp = pub.publish_pair(ir16, vis720)
            assert spin_until(executor, lambda: col.complete(stamp, col.KEYS), 30.0), (
                col.latest_values(), node.log()[-2000:])
            got = col.by_stamp[stamp].messages
            values = col.latest_values()
    finally:
        node.stop()
    for key, encoding in (("fused", "bgr8"), ("labels", "mono8"), ("overlay", "bgr8")):
        msg = got[key][0]
        assert (msg.encoding, msg.width, msg.height) == (encoding, *VIS_SIZE), key
    fused = image_to_array(got["fused"][0])
    assert fused.shape == (VIS_SIZE[1], VIS_SIZE[0], 3)
    assert not any(k.startswith("dropped_") and v != "0" for k, v in values.items()), values
    dets = msg_to_detections(got["detections"][0])
    want_class = reference.class_ids[best]
    same_class = [b for b, c in zip(dets.boxes, dets.class_ids, strict=True) if c == want_class]
    assert max((_iou(b, want_box) for b in same_class), default=0.0) > 0.5, (want_box, dets)
    assert (dets.boxes[:, 2] <= VIS_SIZE[0] + 1e-3).all() and (dets.boxes[:, 3] <= VIS_SIZE[1] + 1e-3).all()


def test_a_camera_knocked_off_its_calibration_turns_the_status_warn(
    ros_context: object, tmp_path: Path, model_path: Path
) -> None:
    """Registered pairs (the homography is the identity for MSRS) keep the status free of alignment
    warnings; pairs whose IR is shifted by (12, -6) px, as after a knock on the mount, make it WARN
    with the offset, within a few checks."""
    from conftest import NodeProcess, spinning

    from fusion_perception.assets import load_sample_pairs
    from fusion_perception.ros.client import OutputCollector, PairPublisher, spin_until

    pairs = list(load_sample_pairs())
    knock = np.float32([[1, 0, 12], [0, 1, -6]])
    knocked = [(cv2.warpAffine(ir, knock, (ir.shape[1], ir.shape[0])), vi) for _, ir, vi in pairs]
    name = "rig_node"
    node = NodeProcess(tmp_path / "node.log", {
        "model_file_path": model_path, "input_qos": "reliable", "threads": 1, "diagnostics_period_s": 0.2,
        "homography": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "alignment_check_period_s": 0.3,
    }, name=name)
    pub = PairPublisher(reliable=True, context=ros_context)
    col = OutputCollector(node_name=name, keys=("detections",), context=ros_context)

    def stream(frames: list, until, most: int) -> bool:
        for i in range(most):
            ir, vi = frames[i % len(frames)]
            stamp = pub.publish_pair(ir, vi)
            assert spin_until(executor, lambda s=stamp: col.complete(s, ("detections",)), 30.0), \
                node.log()[-2000:]
            if spin_until(executor, until, 0.05):  # a little time for the next status to arrive
                return True
        return until()

    checks = lambda: int(col.latest_values().get("alignment_checks", 0))  # noqa: E731
    warned = lambda: bool(col.diagnostics) and "misregistered" in col.diagnostics[-1].message  # noqa: E731
    try:
        with spinning(ros_context, pub, col) as executor:
            assert spin_until(executor, lambda: pub.matched() and len(col.label_info) == 2, 60.0), \
                node.log()[-3000:]
            assert stream([(ir, vi) for _, ir, vi in pairs], lambda: checks() >= 6, 200), col.latest_values()
            spin_until(executor, lambda: False, 0.5)
            assert not warned(), col.diagnostics[-1].message
            aligned = col.latest_values()
            offset = (float(aligned["alignment_offset_x_px"]), float(aligned["alignment_offset_y_px"]))
            assert np.hypot(*offset) < 8, aligned
            assert stream(knocked, warned, 200), col.latest_values()
            knocked_values = col.latest_values()
    finally:
        node.stop()
    assert 6.0 < float(knocked_values["alignment_offset_x_px"]) < 18.0, knocked_values
    assert col.diagnostics[-1].level == bytes([1])  # WARN
