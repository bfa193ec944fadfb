"""Losses: the fusion loss L_f, the task losses (segmentation, FCOS-style detection) and the
discriminator's adversarial terms.

Fusion loss (DESIGN.md section 4): intensity (L1 to a target built from the sources) + gradient
(L1 between |Sobel| of the fused image and the element-wise max of the sources' |Sobel|)
+ (1 - SSIM) averaged over both sources. Weights come from ``LossConfig``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..runtime.postprocess import anchor_points
from .config import LossConfig
from .data import IGNORE_INDEX

__all__ = [
    "detection_loss",
    "discriminator_loss",
    "fusion_loss",
    "generator_adversarial_loss",
    "intensity_target",
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


def intensity_target(ir: Tensor, vis_y: Tensor, kind: str = "max") -> Tensor:
    """Pixel target of the intensity term: element-wise max, or a local-saliency weighted mix."""
    if kind == "max":
        return torch.maximum(ir, vis_y)
    sal_ir = F.avg_pool2d(sobel_magnitude(ir), 7, 1, 3) + ir
    sal_vis = F.avg_pool2d(sobel_magnitude(vis_y), 7, 1, 3) + vis_y
    w = sal_ir / (sal_ir + sal_vis + 1e-6)
    return w * ir + (1 - w) * vis_y


def fusion_loss(fused: Tensor, ir: Tensor, vis_y: Tensor, cfg: LossConfig) -> tuple[Tensor, dict[str, float]]:
    """L_f for [N,1,H,W] tensors in [0, 1]; returns (loss, per-term values for logging)."""
    l_int = F.l1_loss(fused, intensity_target(ir, vis_y, cfg.intensity_target))
    l_grad = F.l1_loss(sobel_magnitude(fused), torch.maximum(sobel_magnitude(ir), sobel_magnitude(vis_y)))
    l_ssim = 1.0 - 0.5 * (ssim(fused, ir) + ssim(fused, vis_y))
    total = cfg.intensity * l_int + cfg.gradient * l_grad + cfg.ssim * l_ssim
    return total, {"intensity": float(l_int), "gradient": float(l_grad), "ssim": float(l_ssim)}


def segmentation_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of stride-s logits against full-size labels (downsampled by nearest)."""
    small = F.interpolate(target[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
    if bool((small == IGNORE_INDEX).all()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, small, ignore_index=IGNORE_INDEX)


def _giou_loss(pred: Tensor, target: Tensor) -> Tensor:
    ix1, iy1 = torch.maximum(pred[:, 0], target[:, 0]), torch.maximum(pred[:, 1], target[:, 1])
    ix2, iy2 = torch.minimum(pred[:, 2], target[:, 2]), torch.minimum(pred[:, 3], target[:, 3])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    area_p = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = area_p + area_t - inter + 1e-6
    ex1, ey1 = torch.minimum(pred[:, 0], target[:, 0]), torch.minimum(pred[:, 1], target[:, 1])
    ex2, ey2 = torch.maximum(pred[:, 2], target[:, 2]), torch.maximum(pred[:, 3], target[:, 3])
    enclose = (ex2 - ex1) * (ey2 - ey1) + 1e-6
    return 1.0 - (inter / union - (enclose - union) / enclose)


def fcos_targets(
    boxes: Tensor, classes: Tensor, size: tuple[int, int], strides: tuple[int, ...], radius: float = 1.5
) -> tuple[Tensor, Tensor]:
    """Assign each anchor point of one image to at most one box (FCOS rules).

    A point is positive for a box when it lies inside the box and within ``radius`` strides of its
    centre, and the box's largest l/t/r/b distance falls in the level's range (stride 8 takes
    objects up to 64 px, stride 16 the rest). Ties go to the smallest box.

    Returns:
        (box index per point, -1 for background) [A], and the level stride per point [A].
    """
    points = torch.from_numpy(anchor_points(size[0], size[1], tuple(strides)).copy()).to(boxes.device)
    counts = [(-(-size[1] // s)) * (-(-size[0] // s)) for s in strides]
    stride_of = torch.cat(
        [torch.full((n,), float(s), device=boxes.device) for n, s in zip(counts, strides, strict=True)]
    )
    assign = torch.full((points.shape[0],), -1, dtype=torch.long, device=boxes.device)
    if boxes.shape[0] == 0:
        return assign, stride_of
    x, y = points[:, 0:1], points[:, 1:2]
    ltrb = torch.stack(
        (x - boxes[None, :, 0], y - boxes[None, :, 1], boxes[None, :, 2] - x, boxes[None, :, 3] - y), dim=-1
    )
    inside = ltrb.min(dim=-1).values > 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    rad = radius * stride_of[:, None]
    near = ((x - cx[None]).abs() < rad) & ((y - cy[None]).abs() < rad)
    reach = ltrb.max(dim=-1).values
    lo = torch.where(stride_of == strides[0], 0.0, 64.0)[:, None]
    hi = torch.where(stride_of == strides[-1], float("inf"), 64.0)[:, None]
    ok = inside & near & (reach >= lo) & (reach <= hi)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand_as(ok)
    area = torch.where(ok, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(dim=1)
    assign[torch.isfinite(best_area)] = best[torch.isfinite(best_area)]
    return assign, stride_of


def detection_loss(
    raw: Tensor, boxes: list[Tensor], classes: list[Tensor], size: tuple[int, int], strides: tuple[int, ...]
) -> Tensor:
    """FCOS loss over a batch: sigmoid focal (classes) + GIoU (boxes) + BCE (centerness).

    ``raw`` is [N, A, 5 + K] from DetectionHead; boxes/classes are per-image lists in pixels.
    """
    n, a, c = raw.shape
    num_classes = c - 5
    points = torch.from_numpy(anchor_points(size[0], size[1], tuple(strides)).copy()).to(raw.device)
    cls_target = torch.zeros(n, a, num_classes, device=raw.device)
    pos_pred, pos_box, pos_ctr_logit, pos_ctr = [], [], [], []
    for i in range(n):
        assign, _ = fcos_targets(boxes[i].to(raw.device), classes[i].to(raw.device), size, strides)
        pos = assign >= 0
        if not bool(pos.any()):
            continue
        gt = boxes[i].to(raw.device)[assign[pos]]
        cls_target[i, pos, classes[i].to(raw.device)[assign[pos]]] = 1.0
        p = points[pos]
        ltrb = raw[i, pos, :4]
        pos_pred.append(torch.cat((p - ltrb[:, :2], p + ltrb[:, 2:4]), dim=1))
        pos_box.append(gt)
        tl = torch.stack((p[:, 0] - gt[:, 0], p[:, 1] - gt[:, 1]), 1)
        br = torch.stack((gt[:, 2] - p[:, 0], gt[:, 3] - p[:, 1]), 1)
        ctr = torch.sqrt(
            (torch.minimum(tl[:, 0], br[:, 0]) / torch.maximum(tl[:, 0], br[:, 0]))
            * (torch.minimum(tl[:, 1], br[:, 1]) / torch.maximum(tl[:, 1], br[:, 1]))
        )
        pos_ctr.append(ctr.clamp(0, 1))
        pos_ctr_logit.append(raw[i, pos, 4])
    num_pos = max(sum(len(b) for b in pos_box), 1)
    logits = raw[..., 5:]
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, cls_target, reduction="none")
    p_t = prob * cls_target + (1 - prob) * (1 - cls_target)
    alpha_t = 0.25 * cls_target + 0.75 * (1 - cls_target)
    loss_cls = (alpha_t * (1 - p_t) ** 2 * ce).sum() / num_pos
    if not pos_box:
        return loss_cls
    ctr_t = torch.cat(pos_ctr)
    loss_box = (_giou_loss(torch.cat(pos_pred), torch.cat(pos_box)) * ctr_t).sum() / ctr_t.sum().clamp(
        min=1e-6
    )
    loss_ctr = F.binary_cross_entropy_with_logits(torch.cat(pos_ctr_logit), ctr_t)
    return loss_cls + loss_box + loss_ctr


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The critic's own loss: target images are real (1), fused images fake (0)."""
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """The fusion net's response to the critic: fused pixels should score as real."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
