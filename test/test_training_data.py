"""Training data: MSRS layout, official segmentation labels, box-derived masks, consistent augmentation."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fusion_perception.assets import sample_pairs  # noqa: E402
from fusion_perception.errors import DatasetError  # noqa: E402
from fusion_perception.image_pairs import find_pairs  # noqa: E402
from fusion_perception.training.data import (  # noqa: E402
    DET_TO_SEG,
    IGNORE_INDEX,
    PairFolder,
    Sample,
    box_derived_mask,
    random_crop_flip,
)


@pytest.fixture
def msrs(tmp_path: Path) -> Path:
    """Two bundled pairs in the MSRS layout; the first gets a generated 9-class label PNG."""
    for sub in ("ir", "vi", "labels_det_fusion", "labels_seg"):
        (tmp_path / sub).mkdir()
    for pair in sample_pairs()[:2]:
        shutil.copy(pair.ir, tmp_path / "ir" / f"{pair.name}.png")
        shutil.copy(pair.visible, tmp_path / "vi" / f"{pair.name}.png")
        shutil.copy(pair.labels, tmp_path / "labels_det_fusion" / f"{pair.name}.txt")
    label = (np.arange(480 * 640) // 640 % 9).astype(np.uint8).reshape(480, 640)  # rows cycle 0..8
    cv2.imwrite(str(tmp_path / "labels_seg" / f"{sample_pairs()[0].name}.png"), label)
    return tmp_path


def test_official_segmentation_labels_are_used_when_present(msrs: Path) -> None:
    data = PairFolder(msrs)
    first, second = data[0], data[1]
    assert first.seg_source == "msrs_labels"
    assert torch.equal(first.seg[:9, 0], torch.arange(9))
    assert second.seg_source == "box_derived"  # no label file: masks from boxes, named as such
    assert set(second.seg.unique().tolist()) <= {*DET_TO_SEG.tolist(), IGNORE_INDEX}


def test_label_with_a_class_outside_msrs_names_the_file(msrs: Path) -> None:
    path = msrs / "labels_seg" / f"{sample_pairs()[0].name}.png"
    cv2.imwrite(str(path), np.full((480, 640), 9, np.uint8))
    with pytest.raises(DatasetError, match=path.name):
        PairFolder(msrs)[0]


def test_unpartnered_image_is_named(msrs: Path) -> None:
    (msrs / "vi" / f"{sample_pairs()[1].name}.png").unlink()
    with pytest.raises(DatasetError, match=sample_pairs()[1].name):
        find_pairs(msrs)


def test_box_derived_mask_keeps_small_boxes_on_top() -> None:
    boxes = np.array([[0, 0, 40, 40], [10, 10, 20, 20]], np.float32)
    mask = box_derived_mask(boxes, np.array([2, 0]), (64, 48))
    assert mask[15, 15] == DET_TO_SEG[0] and mask[30, 30] == DET_TO_SEG[2] and mask[45, 45] == IGNORE_INDEX


def test_crop_and_flip_keep_images_boxes_and_masks_consistent() -> None:
    """A bright square under a box must stay under the box through every crop and flip."""
    h, w = 96, 128
    ir = torch.zeros(1, h, w)
    ir[0, 30:50, 70:90] = 1.0
    vis = ir.repeat(3, 1, 1) * 0.5
    vis[1] = torch.linspace(0, 1, w).expand(h, w)  # a horizontal ramp reveals flips
    seg = (ir[0] > 0).long() * 2
    sample = Sample("s", ir, vis, torch.tensor([[70.0, 30.0, 90.0, 50.0]]), torch.tensor([0]), seg, "test")
    rng = np.random.default_rng(0)
    flips = 0
    for _ in range(40):
        out = random_crop_flip(sample, (96, 64), rng)
        assert out.ir.shape == (1, 64, 96) and out.visible.shape == (3, 64, 96) and out.seg.shape == (64, 96)
        assert torch.equal(out.seg > 0, out.ir[0] > 0) and torch.equal(out.visible[0], out.ir[0] * 0.5)
        if len(out.boxes):
            x1, y1, x2, y2 = out.boxes[0].round().int().tolist()
            inside = out.ir[0, y1:y2, x1:x2]
            assert inside.mean() > 0.99  # the box covers the square only ...
            assert inside.sum() == out.ir[0].sum()  # ... and all of what is left of it
        flips += int(out.visible[1, 0, 0] > out.visible[1, 0, -1])
    assert 0 < flips < 40  # both orientations occurred


@pytest.mark.parametrize("folder", ["tno", "roadscene"])
def test_unlabelled_folders_give_crops_of_the_training_size(
    folder: str, dataset: Callable[[str], Path]
) -> None:
    root = dataset(folder)  # under $FUSION_PERCEPTION_DATA; skips when absent
    data = PairFolder(root, labelled=False, crop=(256, 224), seed=0)
    for i in range(0, len(data), max(1, len(data) // 5)):
        s = data[i]
        assert s.ir.shape == (1, 224, 256) and s.visible.shape == (3, 224, 256)
        assert float(s.ir.min()) >= 0.0 and float(s.ir.max()) <= 1.0 and s.seg_source == "none"
        assert len(s.boxes) == 0
