"""The teacher as judge and labeller: judge images, class mapping, the "not independent" label,
``evaluate --judge`` / ``bag evaluate --judge`` on a few real pairs, the label JSON schema, and the
rule that the runtime never imports the teacher."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_perception.assets import sample_pairs
from fusion_perception.errors import DatasetError
from fusion_perception.image_pairs import find_pairs, read_pair
from fusion_perception.metrics.detection import load_yolo_labels
from fusion_perception.teacher.judge import (
    JUDGE_INPUTS,
    NOT_INDEPENDENT,
    TeacherJudge,
    format_judge,
    judge_inputs,
    teacher_in_objective,
)
from fusion_perception.teacher.labels import label_folder, load_teacher_labels, write_teacher_labels
from fusion_perception.teacher.runner import Teacher, ensure_onnx

REPO = Path(__file__).resolve().parents[1]
LABELS_DIR = REPO / "data" / "teacher_labels"


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    ensure_onnx()  # builds the cached conversion once when torch is present
    return Teacher(threads=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three bundled MSRS pairs in MSRS layout; a split file lists two of them."""
    root = tmp_path_factory.mktemp("pairs")
    for sub in ("ir", "vi", "labels_det_fusion", "splits"):
        (root / sub).mkdir()
    pairs = sample_pairs()[:3]
    for pair in pairs:
        shutil.copy(pair.ir, root / "ir" / f"{pair.name}.png")
        shutil.copy(pair.visible, root / "vi" / f"{pair.name}.png")
        shutil.copy(pair.labels, root / "labels_det_fusion" / f"{pair.name}.txt")
    (root / "splits" / "val.txt").write_text("\n".join(p.name for p in pairs[:2]) + "\n")
    return root


def test_judge_inputs_are_uint8_fusions_at_the_visible_size() -> None:
    pair = sample_pairs()[0]
    ir, vis = read_pair(pair.ir, pair.visible)
    images = judge_inputs(ir, vis, vis)
    assert list(images) == ["fused", *JUDGE_INPUTS[1:]]
    assert images["ir"].ndim == 2 and all(im.shape[:2] == vis.shape[:2] for im in images.values())
    assert all(im.dtype == np.uint8 for im in images.values())
    grey = ir[:, :, 0] if ir.ndim == 3 else ir
    y = cv2.cvtColor(vis, cv2.COLOR_BGR2YCrCb)[:, :, 0].astype(int)
    for name, want in (("max", np.maximum(grey, y)), ("average", (grey.astype(int) + y + 1) // 2)):
        back = cv2.cvtColor(images[name], cv2.COLOR_BGR2YCrCb)[:, :, 0].astype(int)
        assert np.percentile(np.abs(back - want), 99) <= 2, name  # colour round trip, then rounding
    with pytest.raises(ValueError, match="visible size"):
        judge_inputs(ir[:10], vis, None)


def _score(teacher: Teacher, training: dict) -> dict:
    judge = TeacherJudge(teacher, training=training)
    for pair in sample_pairs()[:2]:
        ir, vis = read_pair(pair.ir, pair.visible)
        gt, cls = load_yolo_labels(pair.labels, (vis.shape[1], vis.shape[0]))
        judge.add(pair.name, judge_inputs(ir, vis, vis), gt, cls)
    return judge.summarize()


def test_judge_is_independent_unless_the_provenance_says_otherwise(teacher: Teacher) -> None:
    free = _score(teacher, {"scheme": "bilevel"})
    assert free["independent"] and free["note"] is None
    assert set(free["results"]) == {"strict", "mapped"}
    for rows in free["results"].values():
        assert list(rows) == list(JUDGE_INPUTS)
        for row in rows.values():
            assert 0.0 <= row["mAP50_95"] <= row["mAP50"] <= 1.0 and "note" not in row
    # the fused image here is the visible one: the judge must score them identically
    assert free["results"]["mapped"]["fused"]["mAP50"] == free["results"]["mapped"]["visible"]["mAP50"]
    assert not any(NOT_INDEPENDENT in line for line in format_judge(free))
    tied = _score(teacher, {"teacher_in_objective": True})
    assert not tied["independent"] and tied["note"] == NOT_INDEPENDENT
    assert all(row["note"] == NOT_INDEPENDENT for rows in tied["results"].values() for row in rows.values())
    lines = format_judge(tied)
    assert len(lines) == 10 and all(NOT_INDEPENDENT in line for line in lines)
    assert teacher_in_objective({"teacher_in_objective": 1}) and not teacher_in_objective(None)


def test_judge_rejects_label_classes_it_cannot_map(teacher: Teacher) -> None:
    with pytest.raises(ValueError, match="not judge classes"):
        TeacherJudge(teacher, class_names=["person", "dog"])


def test_evaluate_judge_labels_every_figure_when_the_teacher_was_in_the_objective(
    folder: Path, tmp_path: Path, teacher: Teacher
) -> None:
    pytest.importorskip("torch")
    from fusion_perception.models.checkpoint import default_model_config, random_deployed, save_deployed
    from fusion_perception.runtime.model_info import ModelInfo
    from fusion_perception.training.evaluate import main

    info = ModelInfo(training={"scheme": "test", "teacher_in_objective": True})
    model = random_deployed(seed=0, info=info)
    ckpt = save_deployed(model, tmp_path / "model.pt", default_model_config(info))
    out = tmp_path / "report.json"
    argv = [str(folder), "--json", str(out), "--checkpoint", str(ckpt), "--split", "val", "--judge"]
    assert main(argv) == 0
    judge = json.loads(out.read_text())["judge"]
    assert judge["note"] == NOT_INDEPENDENT and not judge["independent"]
    for rows in judge["results"].values():
        assert list(rows) == list(JUDGE_INPUTS)
        for row in rows.values():
            assert row["num_images"] == 2 and math.isfinite(row["mAP50"]) and row["note"] == NOT_INDEPENDENT
    assert judge["results"]["mapped"]["visible"]["mAP50"] > 0.1  # real pairs, real teacher


def test_bag_evaluate_judge_runs_torch_free_code_on_a_real_bag(
    tmp_path: Path, teacher: Teacher, folder: Path
) -> None:
    pytest.importorskip("torch")
    from fusion_perception.bag.cli import main
    from fusion_perception.bag.make import MakeOptions, make_bag
    from fusion_perception.export.onnx_export import export_onnx
    from fusion_perception.models.checkpoint import random_deployed

    model = export_onnx(random_deployed(seed=1), tmp_path / "model.onnx")
    names = tuple(pair.name for pair in sample_pairs()[:2])  # real MSRS val pairs with their labels
    make_bag(folder, tmp_path / "bag", MakeOptions(names=names, rate_hz=10.0))
    argv = ["evaluate", str(tmp_path / "bag"), "--json", str(tmp_path / "eval.json"), "--model", str(model)]
    assert main([*argv, "--no-output-bag", "--metrics-every", "0", "--no-progress", "--judge"]) == 0
    judge = json.loads((tmp_path / "eval.json").read_text())["judge"]
    assert judge["independent"] and judge["note"] is None
    for rows in judge["results"].values():
        assert list(rows) == list(JUDGE_INPUTS)
        assert all(row["num_images"] == 2 and math.isfinite(row["mAP50"]) for row in rows.values())


def test_label_json_schema_and_round_trip(folder: Path, tmp_path: Path, teacher: Teacher) -> None:
    doc = label_folder(folder, teacher=teacher)
    out = write_teacher_labels(doc, tmp_path / "labels.json")
    raw = json.loads(out.read_text())
    assert raw["classes"] == ["person", "bicycle", "car"] and raw["sources"] == ["visible", "ir", "max"]
    assert raw["class_map"] == {
        "person": "person", "bicycle": "bicycle", "motorcycle": "bicycle",
        "car": "car", "bus": "car", "truck": "car",
    }  # fmt: skip
    assert raw["purpose"] == "training" and raw["score_min"] == 0.05
    assert raw["row"] == ["x1", "y1", "x2", "y2", "score", "class_id"]
    labels = load_teacher_labels(out)
    assert set(labels.images) == set(raw["images"])
    for stem, entry in labels.images.items():
        w, h = raw["images"][stem]["width"], raw["images"][stem]["height"]
        for source in labels.sources:
            dets = entry[source]
            assert len(dets) == len(raw["images"][stem][source]) <= 100
            assert np.all(dets.scores >= 0.05) and np.all(np.diff(dets.scores) <= 1e-4)
            assert np.all(dets.boxes >= 0) and np.all(dets.boxes[:, 2] <= w) and np.all(dets.boxes[:, 3] <= h)
    doc["purpose"] = "evaluation_only"
    write_teacher_labels(doc, tmp_path / "val.json")
    with pytest.raises(DatasetError, match="never be used for training"):
        load_teacher_labels(tmp_path / "val.json")
    val = load_teacher_labels(tmp_path / "val.json", purpose="evaluation_only")
    assert val.meta["purpose"] == "evaluation_only" and set(val.images) == set(labels.images)


def test_committed_label_files_cover_every_pair_folder(data_root: Path, msrs_root: Path) -> None:
    expected = {
        "msrs_train.json": (msrs_root, "train", "training"),
        "msrs_val_eval_only.json": (msrs_root, "val", "evaluation_only"),
        "roadscene.json": (data_root / "roadscene", None, "training"),
        "tno.json": (data_root / "tno", None, "training"),
        "llvip_samples_train.json": (data_root / "llvip_samples" / "train", None, "training"),
        "llvip_samples_test.json": (data_root / "llvip_samples" / "test", None, "training"),
    }
    assert sorted(p.name for p in LABELS_DIR.glob("*.json")) == sorted(expected)
    val = set((msrs_root / "splits" / "val.txt").read_text().split())
    for name, (root, split, purpose) in expected.items():
        labels = load_teacher_labels(LABELS_DIR / name, purpose=purpose)
        assert labels.meta["purpose"] == purpose and labels.meta["split"] == split
        if root.is_dir():
            names = (root / "splits" / f"{split}.txt").read_text().split() if split else None
            assert sorted(labels.images) == sorted(s for s, _, _ in find_pairs(root, names))
        if purpose == "training":
            assert not val & set(labels.images), f"{name} holds MSRS val pairs"


def test_runtime_and_node_never_import_the_teacher_and_the_judge_is_torch_free() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+(\S*teacher)", re.MULTILINE)
    pkg = REPO / "fusion_perception"
    for path in [*(pkg / "runtime").rglob("*.py"), *(pkg / "ros").rglob("*.py"), pkg / "demo.py"]:
        assert not pattern.search(path.read_text()), f"{path} imports the teacher"
    code = (
        "import sys, fusion_perception.teacher.judge, fusion_perception.teacher.labels;"
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
