"""Detections <-> vision_msgs/Detection2DArray, and the one detection drawer shared by demo and report."""

from __future__ import annotations

import numpy as np
from std_msgs.msg import Header

from fusion_perception.ros.messages import detections_to_msg, msg_to_detections
from fusion_perception.runtime.postprocess import Detections, draw_detections


def _dets() -> Detections:
    return Detections(
        np.array([[10.0, 20.0, 50.5, 80.0], [100.0, 5.0, 140.0, 45.0]], np.float32),
        np.array([0.9, 0.4], np.float32),
        np.array([0, 2], np.int64),
    )


def test_detections_survive_the_message_round_trip() -> None:
    header = Header(frame_id="cam")
    msg = detections_to_msg(_dets(), header)
    assert msg.header.frame_id == "cam"
    assert [d.results[0].hypothesis.class_id for d in msg.detections] == ["0", "2"]
    back = msg_to_detections(msg)
    np.testing.assert_allclose(back.boxes, _dets().boxes, atol=1e-4)
    np.testing.assert_allclose(back.scores, _dets().scores, atol=1e-6)
    np.testing.assert_array_equal(back.class_ids, _dets().class_ids)
    assert len(msg_to_detections(detections_to_msg(Detections.empty(), header))) == 0


def test_drawing_marks_each_box_edge_and_leaves_the_input_untouched() -> None:
    image = np.zeros((120, 160, 3), np.uint8)
    drawn = draw_detections(image, _dets(), ("person", "bicycle", "car"))
    assert not image.any()
    for x1, y1, x2, y2 in np.rint(_dets().boxes).astype(int):
        assert drawn[(y1 + y2) // 2, x1].any() and drawn[(y1 + y2) // 2, x2].any()  # left and right edges
        assert not drawn[(y1 + y2) // 2, (x1 + x2) // 2].any()  # the inside stays as it was
