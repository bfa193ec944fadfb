"""The NanoDet-g teacher as a torch module (training and evaluation side only; needs torch).

:class:`NanoDetTeacher` wraps the converted graph (:class:`.torch_graph.TfjsGraphModule`) with what
the graph leaves to its caller, so the exported ONNX file and training code need no other facts:

* input: BGR images as float 0..255, [N, 3, 416, 416] (letterboxed, :func:`.nanodet.letterbox`);
  the normalisation is applied inside;
* outputs: ``scores`` [N, 3549, 80] (sigmoid) and ``distance_logits`` [N, 3549, 44], the three
  strides concatenated in the order 8, 16, 32 (what :func:`.nanodet.decode` reads).

It is frozen (eval mode, no gradients to its weights); gradients still flow to its input, so a
fusion net can be trained against it when a training scheme wants that.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ModelFormatError
from .assets import MODEL_JSON, THIRD_PARTY_DIR, verify_sources
from .nanodet import COCO_CLASSES, INPUT_SIZE, MEAN_BGR, REG_MAX, STD_BGR, STRIDES, Letterbox
from .tfjs import GraphModel, read_graph_model
from .torch_graph import TfjsGraphModule

__all__ = ["NanoDetTeacher", "letterbox_tensor", "load_teacher_module"]


def _output_order(graph: GraphModel) -> tuple[list[int], list[int]]:
    """Indices of the score and distance outputs, each by stride 8, 16, 32, read from the signature."""
    sig = graph.meta.get("signature", {}).get("outputs", {})
    shapes = {}
    for key, spec in sig.items():
        dims = [int(d.get("size", -1)) for d in spec.get("tensorShape", {}).get("dim", [])]
        shapes[key.split(":")[0]] = dims
    cells = [(INPUT_SIZE // s) ** 2 for s in STRIDES]
    scores, dists = [], []
    for n in cells:
        for want, bucket in ((len(COCO_CLASSES), scores), (4 * (REG_MAX + 1), dists)):
            match = [i for i, name in enumerate(graph.outputs) if shapes.get(name) == [1, n, want]]
            if len(match) != 1:
                raise ModelFormatError(
                    f"the graph's signature has no single output of shape [1, {n}, {want}]: {shapes}"
                )
            bucket.append(match[0])
    return scores, dists


class NanoDetTeacher(nn.Module):
    """BGR 0..255 [N, 3, 416, 416] -> (scores [N, 3549, 80], distance_logits [N, 3549, 44])."""

    def __init__(self, graph: GraphModel) -> None:
        super().__init__()
        if list(graph.inputs.values()) != [(1, 3, INPUT_SIZE, INPUT_SIZE)]:
            raise ModelFormatError(
                f"expected one input [1, 3, {INPUT_SIZE}, {INPUT_SIZE}], got {graph.inputs}"
            )
        self.graph = TfjsGraphModule(graph)
        self._scores, self._dists = _output_order(graph)
        self.register_buffer("mean", torch.tensor(MEAN_BGR).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(STD_BGR).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> NanoDetTeacher:
        """Always eval: the teacher is fixed (it has no batch norm or dropout, but stay explicit)."""
        return super().train(False)

    def forward(self, bgr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.jit.is_tracing() and (
            bgr.ndim != 4 or tuple(bgr.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE)
        ):
            raise ValueError(
                f"teacher input must be [N, 3, {INPUT_SIZE}, {INPUT_SIZE}] BGR, got {tuple(bgr.shape)}"
            )
        outs = self.graph((bgr - self.mean) * self.inv_std)
        scores = torch.cat([outs[i] for i in self._scores], dim=1)
        dists = torch.cat([outs[i] for i in self._dists], dim=1)
        return scores, dists


def letterbox_tensor(bgr: torch.Tensor, size: int = INPUT_SIZE) -> tuple[torch.Tensor, Letterbox]:
    """Differentiable letterbox of a batch for the teacher: [N, 3, H, W] BGR 0..255 ->
    [N, 3, size, size] (bilinear with antialiasing, black border) and the box mapping, the torch
    counterpart of :func:`.nanodet.letterbox` (which uses OpenCV's area resize; the two differ by
    interpolation only). Training code uses it to run the teacher on fused batches."""
    n, c, h, w = bgr.shape
    scale = min(size / w, size / h)
    new_w, new_h = round(w * scale), round(h * scale)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    resized = torch.nn.functional.interpolate(
        bgr, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1
    )
    out = bgr.new_zeros((n, c, size, size))
    out[:, :, pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return out, Letterbox(new_w / w, float(pad_x), float(pad_y), (w, h))


def load_teacher_module(json_path: Path | str = MODEL_JSON) -> NanoDetTeacher:
    """Read the TF.js files and build the frozen teacher (CPU, float32).

    The committed files are checked against their published SHA-256 first, so a corrupted checkout
    fails here rather than as odd detections.

    >>> teacher = load_teacher_module()
    >>> scores, dists = teacher(torch.zeros(1, 3, 416, 416))
    >>> tuple(scores.shape), tuple(dists.shape)
    ((1, 3549, 80), (1, 3549, 44))
    """
    json_path = Path(json_path)
    if json_path.parent.resolve() == THIRD_PARTY_DIR.resolve():
        verify_sources(THIRD_PARTY_DIR)
    return NanoDetTeacher(read_graph_model(json_path))
