"""Task net: pretrained backbone loading, the detection assignment and loss, the output contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fusion_perception.errors import ModelFormatError  # noqa: E402
from fusion_perception.image_pairs import read_pair  # noqa: E402
from fusion_perception.models.efficientnet_lite import EfficientNetLite0  # noqa: E402
from fusion_perception.models.tasks import TaskNet, ycbcr_to_imagenet_rgb  # noqa: E402
from fusion_perception.preprocessing import PreprocessConfig, prepare_pair  # noqa: E402
from fusion_perception.runtime.postprocess import decode_detections  # noqa: E402
from fusion_perception.training.losses import atss_assign, detection_loss, level_layout  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "fusion_perception" / "assets" / "samples"


def _visible_batch() -> torch.Tensor:
    images = []
    for name in ("00404D", "01449D"):
        ir, vis = read_pair(SAMPLES / name / "ir.png", SAMPLES / name / "vi.png")
        images.append(prepare_pair(ir, vis, PreprocessConfig(network_size=None)).visible)
    return torch.from_numpy(np.concatenate(images))


def test_imagenet_weights_load_and_match_real_image_statistics() -> None:
    """The stem's BatchNorm was fitted to ImageNet inputs normalised as (255·rgb − 127)/128: on real
    daytime frames its outputs have unit-order spread; a wrong input scale collapses them."""
    net = EfficientNetLite0()
    assert net.load_imagenet() > 150
    net.eval()
    x = ycbcr_to_imagenet_rgb(_visible_batch())
    with torch.no_grad():
        good = net.stem[2](net.stem[1](net.stem[0](x))).std(dim=(0, 2, 3)).mean()
        wrong = net.stem[2](net.stem[1](net.stem[0](x / 255.0))).std(dim=(0, 2, 3)).mean()
    assert 0.3 < float(good) < 3.0
    assert float(wrong) < 0.05


def test_missing_or_foreign_weights_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="do not exist"):
        EfficientNetLite0().load_imagenet(tmp_path / "none.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"_conv_stem.weight": torch.zeros(8, 3, 3, 3)}, bad)
    with pytest.raises(ModelFormatError, match=r"_conv_stem\.weight"):
        EfficientNetLite0().load_imagenet(bad)


def test_ycbcr_conversion_matches_opencv_rgb() -> None:
    import cv2

    ir, vis = read_pair(SAMPLES / "00404D" / "ir.png", SAMPLES / "00404D" / "vi.png")
    prepared = prepare_pair(ir, vis, PreprocessConfig(network_size=None))
    ours = ycbcr_to_imagenet_rgb(torch.from_numpy(prepared.visible))[0]
    rgb = torch.from_numpy(cv2.cvtColor(vis, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float()
    assert float((ours - (rgb - 127.0) / 128.0).abs().max()) < 0.03  # uint8 YCrCb rounding


@pytest.mark.parametrize(("task_scale", "det_levels"), [(1, (8, 16)), (2, (8, 16)), (2, (4, 8, 16))])
def test_output_contract_and_strides(task_scale: int, det_levels: tuple[int, ...]) -> None:
    net = TaskNet(task_scale=task_scale, det_levels=det_levels).eval()
    assert net.det_strides == tuple(s * task_scale for s in det_levels)
    with torch.no_grad():
        seg, det = net(torch.rand(1, 3, 128, 160))
    assert seg.shape == (1, 9, 128 // net.seg_stride, 160 // net.seg_stride)
    anchors = sum((128 // s) * (160 // s) for s in net.det_strides)
    assert det.shape == (1, anchors, 4 + 3)
    assert bool((det[..., :4] > 0).all())
    decoded = decode_detections(
        det[0].numpy(), input_size=(160, 128), strides=net.det_strides, score_threshold=0.0,
        iou_threshold=0.5, max_detections=100,
    )
    assert len(decoded) > 0


@pytest.mark.parametrize("det_levels", [(), (8, 4), (8, 32), (8, 8)])
def test_detection_levels_outside_the_pyramid_are_refused(det_levels: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="det_levels"):
        TaskNet(det_levels=det_levels)


def test_atss_gives_every_box_a_positive_inside_it() -> None:
    points, strides, counts = level_layout((640, 480), (16, 32), torch.device("cpu"))
    boxes = torch.tensor(
        [[100.0, 100.0, 112.0, 130.0], [300.0, 200.0, 500.0, 400.0], [50.0, 50.0, 57.0, 61.0]]
    )
    assign = atss_assign(points, strides, boxes, counts)
    for g, box in enumerate(boxes):
        pos = points[assign == g]
        assert len(pos) >= 1
        inside = (pos[:, 0] >= box[0]) & (pos[:, 0] <= box[2]) & (pos[:, 1] >= box[1]) & (pos[:, 1] <= box[3])
        assert bool(inside.all())
    large = strides[assign == 1]
    assert len(large) > 1 and bool((large == 32).all())  # a 200 px box trains the coarse level
    assert bool((atss_assign(points, strides, torch.zeros(0, 4), counts) == -1).all())


def test_detection_loss_targets_iou_and_learns_a_box() -> None:
    """QFL + GIoU: a head that predicts the box exactly and scores it at its IoU has a lower loss
    than one with the right box but a confident wrong score; gradients reach both outputs."""
    size, strides = (64, 64), (16, 32)
    points, point_strides, counts = level_layout(size, strides, torch.device("cpu"))
    box = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    raw = torch.zeros(1, points.shape[0], 5)
    raw[0, :, :4] = torch.cat((points - box[0, :2], box[0, 2:] - points), dim=1).clamp(min=1.0)
    raw[0, :, 4] = -8.0
    calibrated = raw.clone()
    assign = atss_assign(points, point_strides, box, counts)
    calibrated[0, assign >= 0, 4] = 8.0  # sigmoid ~1 = IoU of an exact box
    loss_good = detection_loss(calibrated, [box], [torch.tensor([0])], size, strides)
    loss_bad = detection_loss(raw, [box], [torch.tensor([0])], size, strides)
    assert float(loss_good) < float(loss_bad)
    learn = raw.clone().requires_grad_(True)
    detection_loss(learn, [box], [torch.tensor([0])], size, strides).backward()
    assert float(learn.grad[..., 4].abs().sum()) > 0
    empty = detection_loss(learn, [torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)], size, strides)
    assert torch.isfinite(empty)


def test_soft_box_weights_scale_the_class_target() -> None:
    """A teacher box with score 0.5 asks for half the confidence of a human label."""
    size, strides = (64, 64), (16, 32)
    points, _, _ = level_layout(size, strides, torch.device("cpu"))
    box = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    raw = torch.zeros(1, points.shape[0], 5)
    raw[0, :, :4] = torch.cat((points - box[0, :2], box[0, 2:] - points), dim=1).clamp(min=1.0)
    raw[0, :, 4] = 0.0  # sigmoid 0.5 everywhere
    full = detection_loss(raw, [box], [torch.tensor([0])], size, strides, [torch.tensor([1.0])])
    half = detection_loss(raw, [box], [torch.tensor([0])], size, strides, [torch.tensor([0.5])])
    assert float(half) < float(full)


def test_segmentation_labels_follow_the_interpolated_logits_not_the_cells() -> None:
    """The node's argmax after a bilinear resize equals training's F.interpolate + argmax, and a
    border between two classes lands where their scores cross, not on an 8-pixel cell edge."""
    from fusion_perception.runtime.postprocess import segmentation_labels

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(9, 60, 80)).astype(np.float32)
    ours = segmentation_labels(logits, (640, 480))
    torch_up = torch.nn.functional.interpolate(
        torch.from_numpy(logits)[None], size=(480, 640), mode="bilinear", align_corners=False
    )[0]
    assert ours.shape == (480, 640) and ours.dtype == np.uint8
    assert (ours == torch_up.argmax(0).numpy()).mean() > 0.999  # float ties aside

    ramp = np.zeros((2, 60, 80), np.float32)
    ramp[1] = (np.arange(80, dtype=np.float32) - 30.3)[None, :]  # class 1 wins right of cell 30.3
    border = int(np.argmax(segmentation_labels(ramp, (640, 480))[0]))
    # source coordinate of pixel x: (x + 0.5) / 8 - 0.5 > 30.3 from x = 246; a cell edge would be 248
    assert border == 246


def test_segmentation_loss_scores_the_upsampled_logits_against_full_size_labels() -> None:
    """Labels with a border inside a cell: only the upsampled loss can reach (near) zero."""
    from fusion_perception.training.losses import segmentation_loss

    ramp = torch.zeros(1, 2, 60, 80)
    ramp[0, 1] = (torch.arange(80, dtype=torch.float32) - 30.3)[None, :] * 50.0
    label = (torch.arange(640) >= 246).long().expand(1, 480, 640)
    assert float(segmentation_loss(ramp, label)) < 0.01
    coarse_target_cells = (torch.arange(80) * 8 >= 246).long()  # what the nearest downsampling keeps
    assert float(segmentation_loss(ramp, label, upsampled=False)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(ramp, coarse_target_cells.expand(1, 60, 80))), rel=1e-5
    )


def test_class_weights_follow_median_frequency_and_weight_the_loss() -> None:
    from fusion_perception.training.losses import seg_class_weights, segmentation_loss

    counts = np.array([800, 100, 100, 0])  # frequencies 0.8, 0.1, 0.1; median of the present: 0.1
    assert seg_class_weights(counts, 0.0).tolist() == [1.0] * 4
    assert seg_class_weights(counts, 1.0).tolist() == pytest.approx([0.125, 1.0, 1.0, 10.0])  # absent: clip
    assert seg_class_weights(counts, 2.0)[0] == pytest.approx(0.1)  # 1/64 clipped to 0.1
    with pytest.raises(ValueError, match="positive total"):
        seg_class_weights(np.zeros(3), 0.5)
    # Two pixels, classes 0 and 1, weights 0.25 and 1: the loss is the weight-normalised mean.
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # [1, 2 classes, 1, 2]
    label = torch.tensor([[[0, 1]]])
    weights = torch.tensor([0.25, 1.0])
    ce = -torch.log_softmax(logits[0, :, 0], dim=0)  # [class, pixel]
    expected = (0.25 * ce[0, 0] + 1.0 * ce[1, 1]) / 1.25
    assert float(segmentation_loss(logits, label, class_weights=weights)) == pytest.approx(float(expected))


def test_warm_target_gives_a_warm_object_its_ir_contrast_back() -> None:
    """A 10x20 person at IR 0.5 on IR background 0.2, visible 0.4 everywhere (a lit street at night):
    max keeps the person at 0.5 but lifts the background to 0.4 (contrast 0.1 against IR's 0.3);
    the warm target adds the person's excess over IR's 31x31 local mean and keeps the background."""
    from fusion_perception.training.losses import WARM_WINDOW, intensity_target

    ir = torch.full((1, 1, 96, 96), 0.2)
    ir[..., 40:60, 43:53] = 0.5
    vis = torch.full_like(ir, 0.4)
    plain = intensity_target(ir, vis, "max")
    warm = intensity_target(ir, vis, "warm")
    assert float(plain[0, 0, 50, 48] - plain[0, 0, 50, 5]) == pytest.approx(0.1)
    local_mean = 0.2 + 0.3 * 200 / WARM_WINDOW**2  # the window around the centre holds the whole person
    assert float(warm[0, 0, 50, 48]) == pytest.approx(0.5 + 0.5 - local_mean, abs=1e-5)
    assert float(warm[0, 0, 50, 5]) == pytest.approx(0.4, abs=1e-5)  # far from the person: IR at its mean
    assert float(warm[0, 0, 50, 48] - warm[0, 0, 50, 5]) > float(ir[0, 0, 50, 48] - ir[0, 0, 50, 5])
    assert float(warm.max()) <= 1.0
    with pytest.raises(ValueError, match="intensity target"):
        intensity_target(ir, vis, "maximum")
