"""Training data: MSRS pairs with boxes and segmentation labels, and unlabelled pair folders.

Images go through the runtime's own ``prepare_pair`` (one preprocessing path), then augmentations
that keep IR, visible, boxes and masks consistent (crop + horizontal flip).

Segmentation supervision, in order of preference:

* ``labels_seg/``: the official MSRS 9-class label PNGs (pixel value = class id), when present;
* ``seg_bdlfusion_pred/``: maps PREDICTED by the BDLFusion model (weak labels, not ground truth);
* box-derived masks: each detection box filled with its class (person -> person, bicycle -> bike,
  car -> car), everything else "unlabelled" and ignored by the loss. These are named
  ``box_derived`` wherever they are used or reported. ``data.seg_box_core`` < 1 fills only the
  box's centre (that share of its width and height), where the object's own pixels are; 0 leaves
  such pairs unlabelled for segmentation (the maps alone teach it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import DatasetError
from ..image_pairs import find_pairs, read_pair
from ..metrics.detection import load_yolo_labels
from ..preprocessing import PreprocessConfig, prepare_pair
from ..runtime.model_info import MSRS_SEG_CLASSES

__all__ = [
    "DET_TO_SEG",
    "IGNORE_INDEX",
    "PairFolder",
    "PseudoLabels",
    "Sample",
    "box_derived_mask",
    "collate",
    "random_crop_flip",
]

IGNORE_INDEX = 255
#: detection class id (person, bicycle, car) -> MSRS segmentation class id (person 2, bike 3, car 1)
DET_TO_SEG = np.array([2, 3, 1], np.uint8)
SEG_SOURCES = (("labels_seg", "msrs_labels"), ("seg_bdlfusion_pred", "bdlfusion_pred"))


@dataclass
class Sample:
    """One pair as tensors: ``ir`` [1,H,W], ``visible`` [3,H,W] (Y, Cb, Cr), boxes Nx4 xyxy px,
    classes N, ``seg`` [H,W] int64 (IGNORE_INDEX where unknown), ``seg_source`` a label provenance,
    ``weights`` N box weights (1 for human labels, the teacher's score for pseudo labels),
    ``fused`` [1,H,W] the cached output of a fixed fusion net (None unless the folder has one)."""

    name: str
    ir: torch.Tensor
    visible: torch.Tensor
    boxes: torch.Tensor
    classes: torch.Tensor
    seg: torch.Tensor
    seg_source: str
    weights: torch.Tensor | None = None
    fused: torch.Tensor | None = None


def _read(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise DatasetError(f"cannot read image {path}")
    return image


def _upscale_to(ir: np.ndarray, vis: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Upscale a pair smaller than ``size`` (width, height) so a crop fits (unlabelled folders only)."""
    h, w = vis.shape[:2]
    factor = max(size[0] / w, size[1] / h)
    if factor <= 1.0:
        return ir, vis
    new = (int(np.ceil(w * factor)), int(np.ceil(h * factor)))
    return cv2.resize(ir, new, interpolation=cv2.INTER_LINEAR), cv2.resize(
        vis, new, interpolation=cv2.INTER_LINEAR
    )


def _seg_map(root: Path, stem: str) -> tuple[Path, str] | None:
    """(path, provenance) of the first segmentation map of ``stem`` in ``SEG_SOURCES`` order."""
    for folder, name in SEG_SOURCES:
        path = root / folder / f"{stem}.png"
        if path.is_file():
            return path, name
    return None


def box_derived_mask(
    boxes: np.ndarray, classes: np.ndarray, size: tuple[int, int], core: float = 1.0
) -> np.ndarray:
    """Segmentation mask from boxes (largest first, so small boxes stay visible); IGNORE elsewhere.

    ``core``: the share of each box's width and height filled, about its centre. A whole box calls
    the road and sky around a person "person"; its centre is mostly the object.
    """
    mask = np.full((size[1], size[0]), IGNORE_INDEX, np.uint8)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centres, halves = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * core / 2
    cores = np.concatenate([centres - halves, centres + halves], axis=1)
    for i in np.argsort(-areas):
        x1, y1, x2, y2 = np.round(cores[i]).astype(int)
        mask[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = DET_TO_SEG[classes[i]]
    return mask


class PairFolder(torch.utils.data.Dataset):
    """IR/visible pairs from one folder, cached in memory after the first read (float16).

    Args:
        root: folder with ir/ and vi/ (MSRS layout adds labels_det_fusion/ and segmentation folders).
        names: stems to use (a split), or None for every pair.
        labelled: read boxes and segmentation labels (MSRS); False for fusion-only folders.
        crop: (width, height) random crop + flip for training, or None for whole images.
        fuse: a fixed fusion function (ir [1,1,H,W], vis_y [1,1,H,W]) -> fused [1,1,H,W]; its
            output is computed once per pair on whole images and cached, so a task-only phase
            never runs the fusion net twice on the same pair.
        pseudo: teacher boxes per stem (``PseudoLabels``) for a folder without human labels: they
            become detection targets with the teacher's score as box weight (soft distillation);
            segmentation stays unlabelled there.
        augment: applied to every drawn sample before the crop (``training.augment.Augment``),
            with this folder's generator.
        box_core: a labelled pair without a segmentation map gets a box-derived mask filling
            this share of each box about its centre (``box_derived_mask``); 0 leaves its
            segmentation unlabelled (it trains detection only).
    """

    def __init__(
        self,
        root: Path | str,
        names: list[str] | None = None,
        *,
        labelled: bool = True,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
        fuse: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        pseudo: PseudoLabels | None = None,
        augment: Callable[[Sample, np.random.Generator], Sample] | None = None,
        box_core: float = 1.0,
    ) -> None:
        if not 0.0 <= box_core <= 1.0:
            raise ValueError(f"box_core must lie in [0, 1], got {box_core}")
        self.root = Path(root)
        self.box_core = box_core
        self.augment = augment
        self.fuse = fuse
        self.pseudo = pseudo
        self.pairs = find_pairs(self.root, names)
        self.labelled = labelled
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self._cache: dict[int, Sample] = {}
        if labelled and not (self.root / "labels_det_fusion").is_dir():
            raise DatasetError(f"{self.root} has no labels_det_fusion/ folder")

    def __len__(self) -> int:
        return len(self.pairs)

    def with_map(self) -> list[int]:
        """Indices of the pairs that carry a segmentation map (none for an unlabelled folder)."""
        if not self.labelled:
            return []
        return [i for i, (stem, _, _) in enumerate(self.pairs) if _seg_map(self.root, stem) is not None]

    def seg_map_pixel_counts(self, num_classes: int) -> np.ndarray:
        """Labelled pixels per class over this folder's segmentation maps (box-derived masks are not
        counted: they say nothing about the classes without boxes)."""
        counts = np.zeros(num_classes, np.int64)
        for stem, _, _ in self.pairs:
            found = _seg_map(self.root, stem)
            if found is not None:
                labels = _read(found[0], cv2.IMREAD_GRAYSCALE).ravel()
                counts += np.bincount(labels, minlength=256)[:num_classes]
        return counts

    def _load(self, index: int) -> Sample:
        stem, ir_path, vi_path = self.pairs[index]
        ir, vis = read_pair(ir_path, vi_path)
        original_width = vis.shape[1]
        if self.crop is not None and not self.labelled:
            ir, vis = _upscale_to(ir, vis, self.crop)
        h, w = vis.shape[:2]
        h32, w32 = h - h % 32, w - w % 32  # whole images must be multiples of 32
        ir, vis = ir[:h32, :w32], vis[:h32, :w32]
        prepared = prepare_pair(ir, vis, PreprocessConfig(network_size=None))
        boxes = np.zeros((0, 4), np.float32)
        classes = np.zeros(0, np.int64)
        seg = np.full((h32, w32), IGNORE_INDEX, np.uint8)
        source = "none"
        weights = np.ones(0, np.float32)
        if self.pseudo is not None:
            boxes, classes, weights = self.pseudo.get(stem, vis.shape[1] / original_width)
            boxes = np.clip(boxes, 0, [w32, h32, w32, h32]).astype(np.float32)
            keep = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
            boxes, classes, weights = boxes[keep], classes[keep], weights[keep]
        elif self.labelled:
            boxes, classes = load_yolo_labels(self.root / "labels_det_fusion" / f"{stem}.txt", (w, h))
            boxes = np.clip(boxes, 0, [w32, h32, w32, h32]).astype(np.float32)
            found = _seg_map(self.root, stem)
            if found is not None:
                path, source = found
                seg = _read(path, cv2.IMREAD_GRAYSCALE)[:h32, :w32]
                if seg.max() >= len(MSRS_SEG_CLASSES):
                    raise DatasetError(
                        f"{path}: class id {seg.max()} outside the {len(MSRS_SEG_CLASSES)} MSRS classes"
                    )
            elif self.box_core > 0:
                seg = box_derived_mask(boxes, classes, (w32, h32), self.box_core)
                source = "box_derived"
            weights = np.ones(len(classes), np.float32)
        fused = None
        if self.fuse is not None:
            with torch.no_grad():
                fused = self.fuse(torch.from_numpy(prepared.ir), torch.from_numpy(prepared.visible[:, :1]))[
                    0
                ].half()
        return Sample(
            name=stem,
            ir=torch.from_numpy(prepared.ir[0]).half(),
            visible=torch.from_numpy(prepared.visible[0]).half(),
            boxes=torch.from_numpy(boxes),
            classes=torch.as_tensor(classes, dtype=torch.int64),
            seg=torch.from_numpy(seg.astype(np.int64)),
            seg_source=source,
            weights=torch.from_numpy(weights),
            fused=fused,
        )

    def __getitem__(self, index: int) -> Sample:
        if index not in self._cache:
            self._cache[index] = self._load(index)
        sample = self._cache[index]
        if self.augment is not None:  # resizing needs float; without it the crop cuts the float16 cache
            sample = self.augment(_as_float(sample), self.rng)
        if self.crop is not None:
            sample = random_crop_flip(sample, self.crop, self.rng)
        return _as_float(sample)


def _as_float(sample: Sample) -> Sample:
    """``sample`` with float32 images (the cache keeps float16; ``.float()`` of float32 is a no-op)."""
    return replace(
        sample,
        ir=sample.ir.float(),
        visible=sample.visible.float(),
        fused=None if sample.fused is None else sample.fused.float(),
    )


@dataclass(frozen=True)
class PseudoLabels:
    """Teacher detections of one folder used as soft targets (distillation).

    Args:
        images: stem -> (boxes Nx4 in original pixels, class ids N, teacher scores N).
        min_score: boxes below it are dropped; the rest keep their score as weight.
    """

    images: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    min_score: float = 0.3

    @classmethod
    def from_teacher(cls, path: Path | str, source: str = "max", min_score: float = 0.3) -> PseudoLabels:
        """Read a ``fusion-perception teacher label`` file (training purpose only)."""
        from ..teacher.labels import load_teacher_labels

        labels = load_teacher_labels(path, purpose="training")
        if source not in labels.sources:
            raise DatasetError(f"{path}: no {source!r} detections (has {list(labels.sources)})")
        images = {}
        for stem, entry in labels.images.items():
            dets = entry[source]
            images[stem] = (dets.boxes, dets.class_ids, dets.scores)
        return cls(images, min_score)

    def get(self, stem: str, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (scaled by ``scale``, the folder's upscaling), classes and weights of one pair."""
        if stem not in self.images:
            raise DatasetError(f"no teacher labels for pair {stem!r}")
        boxes, classes, scores = self.images[stem]
        keep = scores >= self.min_score
        return (
            (boxes[keep] * scale).astype(np.float32),
            classes[keep].astype(np.int64),
            scores[keep].astype(np.float32),
        )


def random_crop_flip(
    sample: Sample, size: tuple[int, int], rng: np.random.Generator, min_visible: float = 0.4
) -> Sample:
    """Random crop to ``size`` (width, height) and a 50% horizontal flip, applied to every field.

    Boxes are clipped to the crop; a box keeping less than ``min_visible`` of its area is dropped.
    """
    _, h, w = sample.ir.shape
    cw, ch = min(size[0], w), min(size[1], h)
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    ir = sample.ir[:, y0 : y0 + ch, x0 : x0 + cw]
    vis = sample.visible[:, y0 : y0 + ch, x0 : x0 + cw]
    seg = sample.seg[y0 : y0 + ch, x0 : x0 + cw]
    fused = None if sample.fused is None else sample.fused[:, y0 : y0 + ch, x0 : x0 + cw]
    boxes, classes = sample.boxes, sample.classes
    weights = sample.weights if sample.weights is not None else torch.ones(len(classes))
    if len(boxes):
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        shifted = boxes - torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)
        clipped = torch.stack(
            (
                shifted[:, 0].clamp(0, cw),
                shifted[:, 1].clamp(0, ch),
                shifted[:, 2].clamp(0, cw),
                shifted[:, 3].clamp(0, ch),
            ),
            dim=1,
        )
        kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        keep = kept_area >= min_visible * area.clamp(min=1e-6)
        boxes, classes, weights = clipped[keep], classes[keep], weights[keep]
    if rng.random() < 0.5:
        ir, vis, seg = ir.flip(-1), vis.flip(-1), seg.flip(-1)
        fused = None if fused is None else fused.flip(-1)
        if len(boxes):
            boxes = torch.stack((cw - boxes[:, 2], boxes[:, 1], cw - boxes[:, 0], boxes[:, 3]), dim=1)
    return Sample(sample.name, ir, vis, boxes, classes, seg, sample.seg_source, weights, fused)


def collate(samples: list[Sample]) -> dict[str, object]:
    """Stack images; keep boxes as lists (variable count per image)."""
    return {
        "names": [s.name for s in samples],
        "ir": torch.stack([s.ir for s in samples]),
        "visible": torch.stack([s.visible for s in samples]),
        "boxes": [s.boxes for s in samples],
        "classes": [s.classes for s in samples],
        "seg": torch.stack([s.seg for s in samples]),
        "seg_source": [s.seg_source for s in samples],
        "weights": [s.weights if s.weights is not None else torch.ones(len(s.classes)) for s in samples],
        "fused": (
            torch.stack([s.fused for s in samples]) if all(s.fused is not None for s in samples) else None
        ),
    }
