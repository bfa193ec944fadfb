"""The teacher as a fixed judge: COCO mAP of NanoDet-g on fused, IR, visible, average and max images.

A fusion model's own detector is trained on its own fused images, so its mAP says little about
whether the fused image is better for detection than the inputs. A fixed detector trained elsewhere
(NanoDet-g, COCO) scores every candidate image the same way: the fused image against IR only, visible
only, and the average and max fusion baselines, all uint8 as published, at the visible frame's size.

COCO classes are reduced to (person, bicycle, car) by both class maps of :mod:`.nanodet` (``strict``
and ``mapped``); scores are COCO mAP@0.5 and @0.5:0.95 by the project's
:class:`~fusion_perception.metrics.detection.DetectionEvaluator` (pycocotools).

Independence: when the evaluated model's provenance (``ModelInfo.training``) sets
``teacher_in_objective`` to true, the teacher shaped the fused images, and every figure written or
printed carries :data:`NOT_INDEPENDENT`.

Used by ``fusion-perception evaluate --judge`` and ``fusion-perception bag evaluate --judge``; torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics.detection import DetectionEvaluator
from .images import judge_inputs
from .nanodet import CLASS_MAPS, INPUT_SIZE, IOU_THRESHOLD, PROJECT_CLASSES
from .runner import Teacher

__all__ = [
    "JUDGE_INPUTS",
    "NOT_INDEPENDENT",
    "TEACHER_IN_OBJECTIVE_KEY",
    "TeacherJudge",
    "format_judge",
    "judge_inputs",
    "teacher_in_objective",
]

JUDGE_INPUTS = ("fused", "ir", "visible", "average", "max")
#: ModelInfo.training key: true when the teacher's outputs entered the model's training objective.
TEACHER_IN_OBJECTIVE_KEY = "teacher_in_objective"
NOT_INDEPENDENT = "not independent: the teacher entered this model's training objective"


def teacher_in_objective(training: Mapping[str, Any] | None) -> bool:
    """Whether a model's provenance says the teacher entered its objective.

    >>> teacher_in_objective({"teacher_in_objective": True}), teacher_in_objective({})
    (True, False)
    """
    return bool((training or {}).get(TEACHER_IN_OBJECTIVE_KEY, False))


class TeacherJudge:
    """Accumulates the teacher's detections on each pair's judge images and scores them.

    Args:
        teacher: a loaded :class:`~.runner.Teacher` (default: the cached ONNX conversion).
        training: the evaluated model's ``ModelInfo.training`` (read for ``teacher_in_objective``).
        class_names: the ground-truth classes, in label id order; each must be a project class.
        score_min: teacher scores kept before NMS (COCO evaluation keeps low scores).
    """

    def __init__(
        self,
        teacher: Teacher | None = None,
        *,
        training: Mapping[str, Any] | None = None,
        class_names: Sequence[str] = PROJECT_CLASSES,
        score_min: float = 0.05,
    ) -> None:
        unknown = [c for c in class_names if c not in PROJECT_CLASSES]
        if unknown:
            raise ValueError(f"label classes {unknown} are not judge classes {list(PROJECT_CLASSES)}")
        self.teacher = teacher or Teacher()
        self.independent = not teacher_in_objective(training)
        self.score_min = score_min
        self._label_to_ours = np.asarray([PROJECT_CLASSES.index(c) for c in class_names], np.int64)
        self._eval = {
            (cmap, name): DetectionEvaluator(PROJECT_CLASSES) for cmap in CLASS_MAPS for name in JUDGE_INPUTS
        }
        self._seen: set[str] = set()

    def add(
        self, image_id: str, images: Mapping[str, np.ndarray], gt_boxes: np.ndarray, gt_classes: np.ndarray
    ) -> None:
        """Score one pair: ``images`` from :func:`judge_inputs`, ground truth in image pixels."""
        gt_ours = self._label_to_ours[np.asarray(gt_classes, np.int64)] if len(gt_classes) else gt_classes
        for name, image in images.items():
            if name not in JUDGE_INPUTS:
                raise ValueError(f"unknown judge input {name!r}; expected one of {JUDGE_INPUTS}")
            raw = self.teacher.raw(image)
            self._seen.add(name)
            for cmap in CLASS_MAPS:
                dets = raw.detections(cmap, score_min=self.score_min)
                self._eval[cmap, name].add(
                    image_id, gt_boxes, gt_ours, dets.boxes, dets.scores, dets.class_ids
                )

    def summarize(self) -> dict[str, Any]:
        """The judge section of a report; every figure carries the note when not independent."""
        note = None if self.independent else NOT_INDEPENDENT
        results: dict[str, dict[str, Any]] = {}
        for cmap in CLASS_MAPS:
            results[cmap] = {}
            for name in JUDGE_INPUTS:
                if name in self._seen:
                    row = self._eval[cmap, name].summarize()
                    results[cmap][name] = {**row, "note": note} if note else row
        return {
            "teacher": "nanodet-g (COCO)",
            "onnx": str(self.teacher.path),
            "input": f"letterbox {INPUT_SIZE}x{INPUT_SIZE}, uint8 images at the visible frame's size",
            "score_min": self.score_min,
            "iou_threshold": IOU_THRESHOLD,
            "class_maps": {k: [list(g) for g in v] for k, v in CLASS_MAPS.items()},
            "independent": self.independent,
            "note": note,
            "results": results,
        }


def format_judge(summary: Mapping[str, Any]) -> list[str]:
    """One printed line per class map and input; each carries the note when not independent."""
    suffix = f"  [{summary['note']}]" if summary.get("note") else ""
    lines = []
    for cmap, rows in summary["results"].items():
        for name, row in rows.items():
            lines.append(
                f"judge[{cmap}] {name:<8} mAP50 {row['mAP50']:.3f}  mAP50:95 {row['mAP50_95']:.3f}{suffix}"
            )
    return lines
