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
from fusion_perception.training.config import load_config  # noqa: E402
from fusion_perception.training.data import (  # noqa: E402
    DET_TO_SEG,
    IGNORE_INDEX,
    PairFolder,
    Sample,
    box_derived_mask,
    random_crop_flip,
)
from fusion_perception.training.train_data import TrainData  # noqa: E402


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


def test_without_box_masks_a_pair_without_a_map_trains_detection_only(msrs: Path) -> None:
    data = PairFolder(msrs, box_core=0.0)
    first, second = data[0], data[1]
    assert first.seg_source == "msrs_labels"  # the map is still read
    assert second.seg_source == "none"
    assert bool((second.seg == IGNORE_INDEX).all())
    assert len(second.boxes) > 0  # its boxes still train the detector


def test_box_core_fills_the_centre_share_of_each_box() -> None:
    """A 40x20 box at (10, 10) with core 0.5 fills the centred 20x10 rectangle (20..40, 15..25)."""
    mask = box_derived_mask(np.array([[10.0, 10.0, 50.0, 30.0]]), np.array([2]), (64, 48), core=0.5)
    filled = np.argwhere(mask != IGNORE_INDEX)
    assert filled.min(0).tolist() == [15, 20] and filled.max(0).tolist() == [24, 39]
    whole = box_derived_mask(np.array([[10.0, 10.0, 50.0, 30.0]]), np.array([2]), (64, 48))
    assert int((whole != IGNORE_INDEX).sum()) == 40 * 20


def _train_data(msrs: Path, map_share: float, batch_size: int = 400) -> TrainData:
    """TrainData over the fixture's pairs as a named train split, small crops."""
    (msrs / "splits").mkdir(exist_ok=True)
    names = sorted(p.stem for p in (msrs / "ir").glob("*.png"))
    (msrs / "splits" / "train.txt").write_text("\n".join(names) + "\n")
    data = {"msrs_root": str(msrs), "map_share": map_share, "batch_size": batch_size}
    cfg = load_config(None, {"data": {**data, "crop_width": 64, "crop_height": 64}})
    return TrainData(cfg, rank=0, device=torch.device("cpu"), hold_out=False)


@pytest.mark.parametrize("share", [0.0, 0.6])
def test_map_share_draws_the_pairs_with_a_map_that_much_more_often(msrs: Path, share: float) -> None:
    """One of the two pairs has a map: a sample is that pair with probability share + (1 - share) / 2
    (0.5 uniform, 0.8 at 0.6); 400 draws put the count within 5 binomial sigmas."""
    data = _train_data(msrs, share)
    assert data.map_indices == ([] if share == 0 else [0])
    sources = data.batch(data.train_set)["seg_source"]
    expected = share + (1 - share) / 2
    sigma = (400 * expected * (1 - expected)) ** 0.5
    assert abs(sources.count("msrs_labels") - 400 * expected) < 5 * sigma


def test_map_share_without_any_map_is_refused(msrs: Path) -> None:
    (msrs / "labels_seg" / f"{sample_pairs()[0].name}.png").unlink()
    with pytest.raises(ValueError, match=r"no pair of .* carries a map"):
        _train_data(msrs, 0.5)


def test_class_pixel_counts_read_the_maps_only(msrs: Path) -> None:
    """Rows cycle 0..8 in the one map (480 rows: 54 of each class but 6 classes with 53); the second
    pair's box-derived mask is not counted."""
    counts = PairFolder(msrs).seg_map_pixel_counts(9)
    assert counts.tolist() == [54 * 640] * 3 + [53 * 640] * 6


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


def _square_sample(size: tuple[int, int] = (160, 128)) -> Sample:
    """A bright 40x32 square at (60, 40) with its box, mask and cached fused copy."""
    w, h = size
    ir = torch.zeros(1, h, w)
    ir[0, 40:72, 60:100] = 1.0
    visible = torch.cat((ir * 0.5, torch.full((2, h, w), 0.5)))
    seg = (ir[0] > 0).long() * 2
    boxes = torch.tensor([[60.0, 40.0, 100.0, 72.0]])
    classes = torch.tensor([0])
    return Sample("square", ir, visible, boxes, classes, seg, "msrs_labels", torch.ones(1), ir.clone())


@pytest.mark.parametrize("factor", [0.7, 1.3])
def test_scale_jitter_moves_boxes_masks_and_every_image_together(factor: float) -> None:
    from fusion_perception.training.augment import rescale

    out = rescale(_square_sample(), factor, (160, 128))
    x1, y1, x2, y2 = out.boxes[0].tolist()
    assert (x1, y1, x2, y2) == pytest.approx((60 * factor, 40 * factor, 100 * factor, 72 * factor), abs=0.6)
    inside = out.ir[0, round(y1) + 1 : round(y2) - 1, round(x1) + 1 : round(x2) - 1]
    assert float(inside.min()) > 0.99  # the box still covers the square ...
    mismatch = int(((out.seg == 2) != (out.ir[0] > 0.5)).sum())  # ... and so does the mask,
    assert mismatch <= 2 * (x2 - x1 + y2 - y1)  # up to the one-pixel rim where nearest and bilinear differ
    assert torch.equal(out.fused, out.ir)
    assert out.ir.shape[1:] == (max(128, round(128 * factor)), max(160, round(160 * factor)))
    if factor < 1:  # padded up to the crop: ignored by the loss, neutral chroma
        assert int(out.seg[-1, -1]) == IGNORE_INDEX and float(out.visible[1:, -1, -1].min()) == 0.5


def test_photometric_jitter_changes_luminance_only_and_stays_in_range() -> None:
    from fusion_perception.training.augment import Augment

    sample = _square_sample()
    out = Augment(scale_jitter=0.0, photometric=0.4, min_size=(160, 128))(sample, np.random.default_rng(3))
    assert torch.equal(out.visible[1:], sample.visible[1:]) and torch.equal(out.boxes, sample.boxes)
    for image in (out.ir, out.visible[:1], out.fused):
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert not torch.equal(out.ir, sample.ir) and not torch.equal(out.ir, out.fused)  # independent gains


def test_augmentation_settings_out_of_range_raise() -> None:
    from fusion_perception.training.augment import Augment

    with pytest.raises(ValueError, match="scale_jitter"):
        Augment(scale_jitter=1.0, photometric=0.0, min_size=(64, 64))


def test_dev_and_fit_are_disjoint_fixed_and_keep_a_guard_between_them() -> None:
    from fusion_perception.image_pairs import DEV_GUARD, derived_split

    train = [f"{i:05d}{'D' if i % 3 else 'N'}" for i in range(1, 800, 3)]  # 267 names, shuffled below
    shuffled = list(np.random.default_rng(0).permutation(train))
    dev, fit = derived_split(shuffled, "dev"), derived_split(train, "fit")
    assert dev == derived_split(train, "dev")  # fixed by the names, not their order
    assert not set(dev) & set(fit) and len(set(dev)) == len(dev)
    ordered = sorted(train)
    dev_idx = sorted(ordered.index(n) for n in dev)
    fit_idx = {ordered.index(n) for n in fit}
    assert len(dev) + len(fit) == len(train) - 4 * DEV_GUARD  # two blocks, a guard on each side
    for i in dev_idx:  # no fit name within the guard of a dev name
        assert not fit_idx & set(range(i - DEV_GUARD, i + DEV_GUARD + 1))


def test_split_names_derives_dev_from_the_train_file(tmp_path: Path) -> None:
    from fusion_perception.image_pairs import derived_split, split_names

    (tmp_path / "splits").mkdir()
    names = [f"{i:05d}N" for i in range(100)]
    (tmp_path / "splits" / "train.txt").write_text("\n".join(names) + "\n")
    assert split_names(tmp_path, "dev") == derived_split(names, "dev")
    assert split_names(tmp_path, "fit") == derived_split(names, "fit")
    with pytest.raises(DatasetError, match="val"):
        split_names(tmp_path, "val")
