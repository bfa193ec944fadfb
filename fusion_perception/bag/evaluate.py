"""``bag evaluate``: run the node's pipeline over a recorded bag and measure speed and quality.

The bag is read in log-time order and frames are paired by header stamp with the node's own
:class:`~fusion_perception.pairing.StampPairer`, configured from the node's own parameter table
(``fusion_perception.ros.params``, optionally overridden by the node's params file), so a pair
evaluated here is a pair the node would have processed. Each pair goes through the same
:class:`~fusion_perception.runtime.pipeline.Pipeline`; its outputs are written to an MCAP bag with
the visible frame's header, as the node publishes them.

Outputs appear only when complete: the output bag and report folder are renamed into place after
the last pair, and the JSON summary is written last of all (its presence marks a finished run).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from ..errors import BagError, DatasetError, FusionPerceptionError
from ..pairing import Pair, StampPairer
from ..ros.params import NodeSettings, settings_from_values
from ..ros.pipeline_setup import load_backend, pipeline_config, stamp_pairer
from ..runtime.pipeline import PerceptionResult, Pipeline
from ..vision_messages import label_infos
from .atomic import atomic_bag, atomic_dir, check_free, write_json_atomic
from .labels import INDEX_NAME, LabelIndex
from .messages import DETECTIONS, IMAGE, LABEL_INFO, detections_msg, image_from_msg, image_msg, typestore
from .reader import BagImages, Frame
from .report import Sample, write_report

__all__ = ["EvaluateOptions", "evaluate_bag", "load_params_file", "percentiles"]


@dataclass(frozen=True)
class EvaluateOptions:
    """Settings of ``bag evaluate``.

    Args:
        params: node parameter values (as in the node's params file); unset ones take the node's defaults.
        model: ONNX model; None = the node's ``model_file_path`` (the bundled default model). Like
            ``threads``, it is applied as that node parameter, so the backend is the node's.
        ir_topic, visible_topic: input topics in the bag; None = the node's topics made absolute.
        labels: label index; None = ``<bag>/labels.json`` when it exists.
        output_bag: where to write the outputs bag (MCAP); None = no output bag.
        report_dir: where to write the report folder; None = no report.
        metrics_every: compute fusion metrics on every n-th pair (0 = never); they cost ~0.1 s a pair.
        max_pairs: stop after this many pairs (None = the whole bag).
        threads: backend intra-op threads (0 = every core); None = the node's ``threads``.
        progress: show a tqdm progress bar on stderr.
        samples: sample frames saved in the report.
        judge: also score the fused, IR, visible, average and max images of every labelled pair
            with the fixed NanoDet-g teacher (:mod:`fusion_perception.teacher.judge`; needs labels).
    """

    params: dict[str, Any] = field(default_factory=dict)
    model: Path | None = None
    ir_topic: str | None = None
    visible_topic: str | None = None
    labels: Path | None = None
    output_bag: Path | None = None
    report_dir: Path | None = None
    metrics_every: int = 1
    max_pairs: int | None = None
    threads: int | None = None
    progress: bool = True
    samples: int = 4
    judge: bool = False

    def __post_init__(self) -> None:
        if self.metrics_every < 0:
            raise ValueError(f"metrics_every must be >= 0, got {self.metrics_every}")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1, got {self.max_pairs}")


def load_params_file(path: Path) -> dict[str, Any]:
    """Parameter values for the node from a ROS 2 params file (``/**`` or the node's own section)."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise DatasetError(f"cannot read params file {path}: {err}") from err
    sections = [
        v["ros__parameters"]
        for v in (doc or {}).values()
        if isinstance(v, dict) and isinstance(v.get("ros__parameters"), dict)
    ]
    if not sections:
        raise DatasetError(f"params file {path} has no '<node>: ros__parameters:' section")
    return dict(sections[0])


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max of ``values`` (empty -> {})."""
    if not values:
        return {}
    arr = np.asarray(values, np.float64)
    p50, p95, p99 = np.percentile(arr, (50, 95, 99))
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(arr.mean()),
        "max": float(arr.max()),
    }


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


class _Run:
    """State of one evaluation: pipeline, writers, and what is measured per pair."""

    def __init__(
        self, settings: NodeSettings, opts: EvaluateOptions, labels: LabelIndex | None, expected_pairs: int
    ) -> None:
        config = pipeline_config(settings)
        if not config.restore_colour:
            raise DatasetError("bag evaluate scores the fused image: publish_fused or publish_overlay "
                               "must be true")
        backend = load_backend(settings)
        self.pipeline = Pipeline(backend, config)
        self.model_path = Path(getattr(backend, "model_path", settings.model_path))  # int8: the sibling
        self.settings = settings
        self.opts = opts
        self.labels = labels
        self.class_map = self._class_map(labels)
        self.evaluator = None
        if labels is not None:
            from ..metrics.detection import DetectionEvaluator

            self.evaluator = DetectionEvaluator(list(self.pipeline.info.det_classes))
        self.judge = None
        if opts.judge:
            if labels is None:
                raise DatasetError("--judge scores images against labels, and this bag has no label index")
            from ..teacher.judge import TeacherJudge

            self.judge = TeacherJudge(training=self.pipeline.info.training, class_names=labels.classes)
        self.sample_at = set(
            np.linspace(0, max(expected_pairs - 1, 0), opts.samples).round().astype(int).tolist()
        )
        self.writer: Any = None
        self.conns: dict[str, Any] = {}
        self.records: list[dict[str, Any]] = []
        self.samples: list[Sample] = []
        self.labelled = 0
        self.metrics_s = 0.0

    def _class_map(self, labels: LabelIndex | None) -> np.ndarray | None:
        """Label class id -> model class id, matched by name."""
        if labels is None:
            return None
        names = self.pipeline.info.det_classes
        unknown = [c for c in labels.classes if c not in names]
        if unknown:
            raise DatasetError(
                f"label classes {unknown} are not among the model's detection classes {list(names)}"
            )
        return np.asarray([names.index(c) for c in labels.classes], np.int64)

    def open_outputs(self, writer: Any) -> None:
        from .messages import typestore

        self.writer = writer
        if writer is None:
            return
        s, store = self.settings, typestore()
        for key, topic, msgtype in (
            ("fused", s.fused_topic, IMAGE),
            ("labels", s.labels_topic, IMAGE),
            ("overlay", s.overlay_topic, IMAGE),
            ("detections", s.detections_topic, DETECTIONS),
            ("det_labels", s.detection_labels_topic, LABEL_INFO),
            ("seg_labels", s.segmentation_labels_topic, LABEL_INFO),
        ):
            self.conns[key] = writer.add_connection(_absolute(topic), msgtype, typestore=store)

    def _write(self, key: str, stamp: int, msg: Any, msgtype: str) -> None:
        from .messages import typestore

        self.writer.write(self.conns[key], stamp, typestore().serialize_cdr(msg, msgtype))

    def process(self, pair: Pair[Frame]) -> None:
        vis_msg = pair.visible.msg
        ir, vis = (
            self._decode(pair.ir, self.opts.ir_topic),
            self._decode(pair.visible, self.opts.visible_topic),
        )
        result = self.pipeline(ir, vis)
        stamp, header, index = pair.visible_stamp_ns, vis_msg.header, len(self.records)
        record: dict[str, Any] = {
            "stamp_ns": stamp,
            "skew_ms": pair.skew_ns / 1e6,
            "latency_ms": dict(result.timings_ms),
            "detections": len(result.detections.boxes),
        }
        overlay = self.pipeline.segmentation_overlay(result)
        if self.writer is not None:
            if index == 0:  # the node latches them; a bag holds them once, at its first output
                tables = label_infos(typestore().types.__getitem__, self.pipeline.info, header,
                                     self.settings.score_threshold)
                self._write("det_labels", stamp, tables["detections"], LABEL_INFO)
                self._write("seg_labels", stamp, tables["segmentation"], LABEL_INFO)
            if self.settings.publish_fused:
                self._write("fused", stamp, image_msg(result.fused_bgr, header), IMAGE)
            self._write("labels", stamp, image_msg(result.labels, header, "mono8"), IMAGE)
            if self.settings.publish_overlay:
                self._write("overlay", stamp, image_msg(overlay, header), IMAGE)
            self._write("detections", stamp, detections_msg(result.detections, header), DETECTIONS)
        every = self.opts.metrics_every
        if every and index % every == 0:
            t0 = time.perf_counter()
            record["metrics"] = self._fusion_metrics(ir, vis, result)
            self.metrics_s += time.perf_counter() - t0
        self._add_detections(stamp, result)
        if self.judge is not None:
            self._add_judge(stamp, ir, vis, result)
        if index in self.sample_at:
            self.samples.append(
                Sample(stamp, self._ir8(ir, vis), vis, result.fused_bgr, overlay, result.detections)
            )
        self.records.append(record)

    @staticmethod
    def _decode(frame: Frame, topic: str | None) -> np.ndarray:
        try:
            return image_from_msg(frame.msg)
        except FusionPerceptionError as err:
            raise BagError(f"{topic} message stamped {frame.stamp_ns}: {err}") from err

    def _ir8(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """IR as the network sees it (gain control, registration), 8-bit, in the visible grid."""
        from ..evaluation import ir_as_seen

        return ir_as_seen(ir, (vis.shape[1], vis.shape[0]), self.pipeline.config.preprocess)

    def _fusion_metrics(self, ir: np.ndarray, vis: np.ndarray, result: PerceptionResult) -> dict[str, float]:
        from ..evaluation import published_fusion_metrics

        return published_fusion_metrics(ir, vis, result.fused_bgr, self.pipeline.config.preprocess)

    def _add_detections(self, stamp: int, result: PerceptionResult) -> None:
        if self.evaluator is None or self.labels is None or self.class_map is None:
            return
        entry = self.labels.entries.get(stamp)
        if entry is None:
            return
        boxes, classes = entry.load()
        classes = np.asarray(classes, np.int64)
        if classes.size and (classes.min() < 0 or classes.max() >= len(self.class_map)):
            raise DatasetError(f"label file {entry.file} has class ids outside 0..{len(self.class_map) - 1}")
        dets = result.detections
        self.evaluator.add(
            f"{stamp}:{entry.name}", boxes, self.class_map[classes], dets.boxes, dets.scores, dets.class_ids
        )
        self.labelled += 1

    def _add_judge(self, stamp: int, ir: np.ndarray, vis: np.ndarray, result: PerceptionResult) -> None:
        """Teacher scores of this pair's images; its time counts as measurement, not processing."""
        from ..teacher.judge import judge_inputs

        entry = self.labels.entries.get(stamp) if self.labels is not None else None
        if self.judge is None or entry is None:
            return
        t0 = time.perf_counter()
        boxes, classes = entry.load()
        images = judge_inputs(self._ir8(ir, vis), vis, result.fused_bgr)
        self.judge.add(f"{stamp}:{entry.name}", images, boxes, classes)
        self.metrics_s += time.perf_counter() - t0


def _load_labels(bag: Path, choice: Path | None) -> LabelIndex | None:
    path = choice if choice is not None else bag / INDEX_NAME
    if choice is None and not path.is_file():
        return None
    if not path.is_file():
        raise DatasetError(f"label index {path} does not exist")
    return LabelIndex.load(path)


def _summary(run: _Run, source: BagImages, pairer: StampPairer[Frame], wall_s: float) -> dict[str, Any]:
    stats, records = pairer.stats, run.records
    metric_rows = [r["metrics"] for r in records if "metrics" in r]
    names = list(metric_rows[0]) if metric_rows else []
    fusion = {
        "frames": len(metric_rows),
        "mean": {n: float(np.mean([m[n] for m in metric_rows])) for n in names},
        "std": {n: float(np.std([m[n] for m in metric_rows])) for n in names},
    }
    detection: dict[str, Any] | None = None
    if run.evaluator is not None:
        detection = {**run.evaluator.summarize(), "labelled_pairs": run.labelled}
    processing_s = max(wall_s - run.metrics_s, 1e-9)
    return {
        "bag": str(source.path),
        "model": str(run.model_path),
        "backend": run.pipeline.backend.name,
        "topics": {"ir": run.opts.ir_topic, "visible": run.opts.visible_topic},
        "pairing": {
            "slop_ms": pairer.slop_ns / 1e6,
            "queue_size": pairer.queue_size,
            "received": dict(stats.received),
            "paired": stats.paired,
            "unpaired": dict(stats.unpaired),
            "out_of_order": dict(stats.out_of_order),
            "overflow": dict(stats.overflow),
            "dropped": {s: stats.dropped(s) for s in stats.received},
            "max_abs_skew_ms": stats.max_abs_skew_ns / 1e6,
            "mean_abs_skew_ms": stats.mean_abs_skew_ns / 1e6,
        },
        "throughput": {
            "pairs": len(records),
            "wall_s": wall_s,
            "metrics_s": run.metrics_s,
            "pairs_per_s": len(records) / processing_s,
        },
        "latency_ms": {
            stage: percentiles([r["latency_ms"][stage] for r in records])
            for stage in ("total", "preprocess", "inference", "postprocess")
        },
        "fusion_metrics": fusion,
        "detection": detection,
        "judge": run.judge.summarize() if run.judge is not None else None,
        "frames": records,
    }


def evaluate_bag(bag: Path, json_out: Path, options: EvaluateOptions | None = None) -> dict[str, Any]:
    """Evaluate ``bag``; write the JSON summary (and output bag / report when asked); return the summary.

    Raises:
        BagError: unreadable bag, missing topic, bad encoding, or an output path that exists.
        DatasetError: unreadable labels or params file.
        ModelFormatError: the model cannot be loaded.
    """
    opts = options or EvaluateOptions()
    bag, json_out = Path(bag), Path(json_out)
    overrides = {"model_file_path": str(opts.model)} if opts.model else {}
    if opts.threads is not None:
        overrides["threads"] = opts.threads
    settings = settings_from_values({**opts.params, **overrides})
    opts = replace(
        opts,
        ir_topic=opts.ir_topic or _absolute(settings.ir_topic),
        visible_topic=opts.visible_topic or _absolute(settings.visible_topic),
    )
    for path in (json_out, opts.output_bag, opts.report_dir):
        if path is not None:
            check_free(Path(path))
    with BagImages(bag, ir_topic=opts.ir_topic, visible_topic=opts.visible_topic) as source:
        labels = _load_labels(source.path, opts.labels)
        expected = min(source.counts.values())
        if opts.max_pairs:
            expected = min(expected, opts.max_pairs)
        run = _Run(settings, opts, labels, expected)
        pairer: StampPairer[Frame] = stamp_pairer(settings)
        bag_ctx = atomic_bag(opts.output_bag, "mcap") if opts.output_bag else contextlib.nullcontext(None)
        with bag_ctx as writer:
            run.open_outputs(writer)
            t0 = time.perf_counter()
            bar = tqdm(total=source.message_count, unit="msg", desc="evaluate", disable=not opts.progress)
            with bar:
                for frame in source.frames():
                    bar.update()
                    for pair in pairer.push(frame.stream, frame.stamp_ns, frame):
                        run.process(pair)
                    if opts.max_pairs and len(run.records) >= opts.max_pairs:
                        break
            wall_s = time.perf_counter() - t0
            if not run.records:
                raise BagError(
                    f"bag {source.path}: no IR/visible pair within the {pairer.slop_ns / 1e6:g} ms slop"
                )
            summary = _summary(run, source, pairer, wall_s)
            summary["output_bag"] = str(opts.output_bag) if opts.output_bag else None
            summary["report"] = str(opts.report_dir) if opts.report_dir else None
            if opts.report_dir is not None:
                with atomic_dir(opts.report_dir) as tmp:
                    write_report(summary, run.samples, tmp, class_names=run.pipeline.info.det_classes)
    write_json_atomic(json_out, summary)
    return summary
