"""Losses: the fusion loss L_f, the task losses (segmentation, GFL detection with ATSS) and the
discriminator's adversarial terms.

Fusion loss (docs/DESIGN.md "Training schemes"): intensity (L1 to a target built from the sources) + gradient
(L1 between |Sobel| of the fused image and the element-wise max of the sources' |Sobel|)
+ (1 - SSIM) averaged over both sources. Weights come from ``LossConfig``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..runtime.postprocess import anchor_points
from .config import INTENSITY_TARGETS, LossConfig
from .data import IGNORE_INDEX

__all__ = [
    "atss_assign",
    "box_iou_pairs",
    "detection_loss",
    "discriminator_loss",
    "fusion_loss",
    "generator_adversarial_loss",
    "intensity_target",
    "level_layout",
    "seg_class_weights",
    "segmentation_loss",
    "sobel_magnitude",
    "ssim",
]

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_magnitude(x: Tensor) -> Tensor:
    """|Gx| + |Gy| of a [N,1,H,W] image (replicate padding, so borders carry no fake edges)."""
    k = torch.stack((_SOBEL_X, _SOBEL_X.t())).unsqueeze(1).to(x)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)
    return g.abs().sum(dim=1, keepdim=True)


def ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM of [N,1,H,W] images in [0, 1] (Gaussian window, Wang et al. 2004 constants)."""
    coords = torch.arange(window, dtype=x.dtype, device=x.device) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum()).view(1, 1, 1, -1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, g), g.transpose(-1, -2))

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean()


#: Side of the window of IR's local mean in the ``warm`` target: wider than a person at MSRS
#: distances (10-40 px), so a person's excess over it is the person's own contrast.
WARM_WINDOW = 31


def intensity_target(ir: Tensor, vis_y: Tensor, kind: str = "max") -> Tensor:
    """Pixel target of the intensity term.

    * ``max``: the element-wise max of the sources.
    * ``saliency``: a mix weighted by each source's local gradient energy plus intensity.
    * ``warm``: max plus IR's excess over its local mean (``WARM_WINDOW``), where positive. Max
      alone keeps a warm object's brightness but also the brighter of the two backgrounds around
      it, which nearly halves the object's contrast against IR's (MSRS dev small persons at night:
      0.059 against 0.097 inside-box minus surround, docs/RESULTS.md); the excess gives it back
      in the target (0.115), though the fusion loss's other terms keep a net trained on it near
      max's image (docs/RESULTS.md, "Where the fused image loses persons").
    """
    if kind == "max":
        return torch.maximum(ir, vis_y)
    if kind == "warm":
        local = F.avg_pool2d(ir, WARM_WINDOW, 1, WARM_WINDOW // 2, count_include_pad=False)
        return (torch.maximum(ir, vis_y) + F.relu(ir - local)).clamp(max=1.0)
    if kind == "saliency":
        sal_ir = F.avg_pool2d(sobel_magnitude(ir), 7, 1, 3) + ir
        sal_vis = F.avg_pool2d(sobel_magnitude(vis_y), 7, 1, 3) + vis_y
        w = sal_ir / (sal_ir + sal_vis + 1e-6)
        return w * ir + (1 - w) * vis_y
    raise ValueError(f"intensity target must be one of {INTENSITY_TARGETS}, got {kind!r}")


def fusion_loss(fused: Tensor, ir: Tensor, vis_y: Tensor, cfg: LossConfig) -> tuple[Tensor, dict[str, float]]:
    """L_f for [N,1,H,W] tensors in [0, 1]; returns (loss, per-term values for logging)."""
    l_int = F.l1_loss(fused, intensity_target(ir, vis_y, cfg.intensity_target))
    l_grad = F.l1_loss(sobel_magnitude(fused), torch.maximum(sobel_magnitude(ir), sobel_magnitude(vis_y)))
    l_ssim = 1.0 - 0.5 * (ssim(fused, ir) + ssim(fused, vis_y))
    total = cfg.intensity * l_int + cfg.gradient * l_grad + cfg.ssim * l_ssim
    return total, {"intensity": l_int.item(), "gradient": l_grad.item(), "ssim": l_ssim.item()}


def segmentation_loss(
    logits: Tensor, target: Tensor, upsampled: bool = True, class_weights: Tensor | None = None
) -> Tensor:
    """Cross-entropy of stride-s logits against full-size labels [N,H,W].

    ``upsampled``: the logits are resized bilinearly to the labels (the deployed
    ``postprocess.segmentation_labels`` takes its argmax after the same resize, so training scores
    what the node outputs); False compares them with labels downsampled by nearest neighbour.
    ``class_weights`` [C]: per-class weights (``seg_class_weights``); the mean is over weights, as
    ``F.cross_entropy`` takes it, so the loss's scale stays that of one labelled pixel.
    """
    if upsampled:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    else:
        target = F.interpolate(target[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
    if bool((target == IGNORE_INDEX).all()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE_INDEX)


def seg_class_weights(
    pixel_counts: np.ndarray, exponent: float, clip: tuple[float, float] = (0.1, 10.0)
) -> Tensor:
    """(median frequency / frequency)^exponent per class, clipped; a class without pixels gets the
    upper clip (it may appear in other splits). ``exponent`` 0 gives ones."""
    counts = np.asarray(pixel_counts, np.float64)
    if counts.ndim != 1 or counts.sum() <= 0:
        raise ValueError(f"pixel_counts must be a 1-D count per class with a positive total, got {counts}")
    freq = counts / counts.sum()
    median = float(np.median(freq[freq > 0]))
    with np.errstate(divide="ignore"):
        ratio = np.where(freq > 0, median / np.maximum(freq, 1e-300), np.inf)
    return torch.from_numpy(np.clip(ratio**exponent, *clip)).float()


def box_iou_pairs(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Element-wise IoU, union and enclosing-box area of two [M,4] xyxy box sets."""
    ix1, iy1 = torch.maximum(a[:, 0], b[:, 0]), torch.maximum(a[:, 1], b[:, 1])
    ix2, iy2 = torch.minimum(a[:, 2], b[:, 2]), torch.minimum(a[:, 3], b[:, 3])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    union = union.clamp(min=1e-6)
    ex1, ey1 = torch.minimum(a[:, 0], b[:, 0]), torch.minimum(a[:, 1], b[:, 1])
    ex2, ey2 = torch.maximum(a[:, 2], b[:, 2]), torch.maximum(a[:, 3], b[:, 3])
    return inter / union, union, ((ex2 - ex1) * (ey2 - ey1)).clamp(min=1e-6)


def _iou_matrix(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every box in a [P,4] with every box in b [G,4] -> [P,G]."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-6)


def atss_assign(
    points: Tensor,
    stride_of: Tensor,
    boxes: Tensor,
    level_sizes: list[int],
    *,
    topk: int = 9,
    anchor_scale: float = 5.0,
) -> Tensor:
    """Adaptive training sample selection (ATSS, Zhang et al., CVPR 2020), anchor-free form.

    Per box: on every level the ``topk`` points nearest to its centre are candidates; their IoU
    with the box is taken between the box and a square "anchor" of side ``anchor_scale`` x stride
    on the point; candidates with IoU >= mean + std of that set and whose point lies inside the
    box are positive. A point claimed by several boxes goes to the one it overlaps most. A box left
    without a positive (tiny objects between grid points) gets its best candidate, so every
    labelled object trains the head.

    Returns:
        box index per point [A], -1 for background.
    """
    a = points.shape[0]
    assign = torch.full((a,), -1, dtype=torch.long, device=points.device)
    if boxes.shape[0] == 0:
        return assign
    half = anchor_scale * stride_of[:, None] / 2
    anchors = torch.cat((points - half, points + half), dim=1)
    ious = _iou_matrix(anchors, boxes)  # [A, G]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    dist = torch.cdist(points, centres)  # [A, G]
    candidates, offset = [], 0
    for n in level_sizes:
        k = min(topk, n)
        candidates.append(dist[offset : offset + n].topk(k, dim=0, largest=False).indices + offset)
        offset += n
    cand = torch.cat(candidates, dim=0)  # [C, G]
    cand_iou = ious.gather(0, cand)
    threshold = cand_iou.mean(0) + cand_iou.std(0)
    g = torch.arange(boxes.shape[0], device=points.device).expand_as(cand)
    p = points[cand]  # [C, G, 2]
    inside = (
        (p[..., 0] > boxes[g, 0])
        & (p[..., 0] < boxes[g, 2])
        & (p[..., 1] > boxes[g, 1])
        & (p[..., 1] < boxes[g, 3])
    )
    positive = (cand_iou >= threshold[None]) & inside
    best = cand_iou.argmax(0)
    cols = torch.arange(boxes.shape[0], device=points.device)
    positive[best, cols] |= ~positive.any(0)
    score = torch.full_like(ious, -1.0)
    score[cand[positive], g[positive]] = ious[cand[positive], g[positive]]
    best_score, best_box = score.max(dim=1)
    assign[best_score >= 0] = best_box[best_score >= 0]
    return assign


def level_layout(
    size: tuple[int, int], strides: tuple[int, ...], device: torch.device
) -> tuple[Tensor, Tensor, list[int]]:
    """Anchor points [A,2], their stride [A] and the point count per level for an input size."""
    points = torch.from_numpy(anchor_points(size[0], size[1], tuple(strides)).copy()).to(device)
    counts = [(-(-size[1] // s)) * (-(-size[0] // s)) for s in strides]
    stride_of = torch.cat(
        [torch.full((n,), float(s), device=device) for n, s in zip(counts, strides, strict=True)]
    )
    return points, stride_of, counts


def detection_loss(
    raw: Tensor,
    boxes: list[Tensor],
    classes: list[Tensor],
    size: tuple[int, int],
    strides: tuple[int, ...],
    weights: list[Tensor] | None = None,
    *,
    box_weight: float = 2.0,
    beta: float = 2.0,
) -> Tensor:
    """Generalized Focal Loss (Li et al., 2020) over a batch: quality focal loss + GIoU.

    The class target of a positive point is the IoU of its predicted box with its ground truth
    (detached), times the box's ``weight``: 1 for human labels, the teacher's score for pseudo
    labels (soft distillation targets); background points have target 0. QFL =
    BCE(σ, y)·|y − σ|^β, normalised by the number of positives. Box regression: GIoU loss weighted
    by the same target, so well-localised and confident boxes dominate.

    Args:
        raw: [N, A, 4 + K] from :class:`~fusion_perception.models.tasks.DetectionHead`.
        boxes, classes, weights: per-image [M,4] xyxy pixels, [M] class ids, [M] weights in (0, 1].
        size: (width, height) of the network input; strides: the head's strides in those pixels.
    """
    n = raw.shape[0]
    points, stride_of, counts = level_layout(size, strides, raw.device)
    logits = raw[..., 4:]
    target = torch.zeros_like(logits)
    pred_boxes, gt_boxes, box_w = [], [], []
    for i in range(n):
        gt = boxes[i].to(raw.device)
        assign = atss_assign(points, stride_of, gt, counts)
        pos = assign >= 0
        if not bool(pos.any()):
            continue
        idx = assign[pos]
        ltrb = raw[i, pos, :4]
        p = points[pos]
        pred = torch.cat((p - ltrb[:, :2], p + ltrb[:, 2:4]), dim=1)
        iou = box_iou_pairs(pred.detach(), gt[idx])[0].clamp(min=0)
        w = weights[i].to(raw.device)[idx] if weights is not None else torch.ones_like(iou)
        pos_rows = torch.nonzero(pos).squeeze(1)
        target[i, pos_rows, classes[i].to(raw.device)[idx]] = iou * w
        pred_boxes.append(pred)
        gt_boxes.append(gt[idx])
        box_w.append(iou * w)
    num_pos = max(sum(len(b) for b in pred_boxes), 1)
    prob = torch.sigmoid(logits)
    qfl = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * (target - prob).abs().pow(
        beta
    )
    loss_cls = qfl.sum() / num_pos
    if not pred_boxes:
        return loss_cls
    pred, gt, w = torch.cat(pred_boxes), torch.cat(gt_boxes), torch.cat(box_w)
    iou, union, enclose = box_iou_pairs(pred, gt)
    giou_loss = 1.0 - (iou - (enclose - union) / enclose)
    loss_box = (giou_loss * w).sum() / w.sum().clamp(min=1e-6)
    return loss_cls + box_weight * loss_box


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The critic's own loss: target images are real (1), fused images fake (0)."""
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """The fusion net's response to the critic: fused pixels should score as real."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
