"""The vision_msgs the package publishes, built once for both message systems.

The node publishes rclpy messages; ``bag evaluate`` writes rosbags messages. Both come from the
builders here, given a lookup from a type name (``"vision_msgs/msg/Detection2DArray"``) to that
system's message class, so the detections and class tables a bag holds are the ones the node sends,
field for field. Every field is passed explicitly because rosbags' message classes have no defaults.

Conventions: ``class_id`` is the class *index* as a string ("0", "1", ...), matching the ids of the
latched ``vision_msgs/LabelInfo`` that maps them to names (consumers look names up there, as
vision_msgs intends, and ids stay stable when a model renames a class); boxes are centre + size in
source pixels; ``id`` is the detection's index in the frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .runtime.model_info import ModelInfo
from .runtime.postprocess import Detections

__all__ = ["TypeLookup", "detection_array", "label_info", "label_infos"]

TypeLookup = Callable[[str], Any]
"""Type name ("pkg/msg/Name") -> message class of one message system (rclpy or rosbags)."""


def detection_array(types: TypeLookup, detections: Detections, header: Any) -> Any:
    """Boxes (x1, y1, x2, y2 source pixels) -> ``vision_msgs/Detection2DArray`` carrying ``header``.

    Each detection carries one hypothesis: ``class_id`` the class index as a string, ``score`` in [0, 1].
    """
    pose = types("geometry_msgs/msg/PoseWithCovariance")(
        pose=types("geometry_msgs/msg/Pose")(
            position=types("geometry_msgs/msg/Point")(x=0.0, y=0.0, z=0.0),
            orientation=types("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=0.0, w=1.0),
        ),
        covariance=np.zeros(36, np.float64),
    )
    detection, hypothesis_with_pose = types("vision_msgs/msg/Detection2D"), types(
        "vision_msgs/msg/ObjectHypothesisWithPose")
    hypothesis, box = types("vision_msgs/msg/ObjectHypothesis"), types("vision_msgs/msg/BoundingBox2D")
    pose2d, point2d = types("vision_msgs/msg/Pose2D"), types("vision_msgs/msg/Point2D")
    items = []
    rows = zip(detections.boxes.tolist(), detections.scores.tolist(), detections.class_ids.tolist(),
               strict=True)
    for i, ((x1, y1, x2, y2), score, cls) in enumerate(rows):
        items.append(detection(
            header=header,
            results=[hypothesis_with_pose(hypothesis=hypothesis(class_id=str(int(cls)), score=float(score)),
                                          pose=pose)],
            bbox=box(center=pose2d(position=point2d(x=(x1 + x2) / 2.0, y=(y1 + y2) / 2.0), theta=0.0),
                     size_x=float(x2 - x1), size_y=float(y2 - y1)),
            id=str(i),
        ))
    return types("vision_msgs/msg/Detection2DArray")(header=header, detections=items)


def label_info(types: TypeLookup, names: tuple[str, ...], header: Any, threshold: float) -> Any:
    """Class names -> ``vision_msgs/LabelInfo`` (class_id = index); ``threshold``: the score below
    which the publisher drops results (0 where there is no score, as for segmentation labels)."""
    vision_class = types("vision_msgs/msg/VisionClass")
    return types("vision_msgs/msg/LabelInfo")(
        header=header,
        class_map=[vision_class(class_id=i, class_name=name) for i, name in enumerate(names)],
        threshold=float(threshold),
    )


def label_infos(types: TypeLookup, info: ModelInfo, header: Any, score_threshold: float) -> dict[str, Any]:
    """The two latched class tables: ``detections`` (with the score threshold) and ``segmentation``."""
    return {
        "detections": label_info(types, info.det_classes, header, score_threshold),
        "segmentation": label_info(types, info.seg_classes, header, 0.0),
    }
