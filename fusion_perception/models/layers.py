"""Small building blocks shared by the networks."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ConvBNAct", "SeparableBlock"]


class ConvBNAct(nn.Sequential):
    """k x k convolution, batch norm, ReLU (BN folds into the conv at export)."""

    def __init__(
        self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True) if act else nn.Identity(),
        )


class SeparableBlock(nn.Module):
    """Depthwise 3x3 + pointwise 1x1 (MobileNet style); residual when shapes allow.

    About 9x fewer multiply-adds than a dense 3x3 at equal width, which is what keeps the task
    network at camera rate on a CPU.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = ConvBNAct(cin, cin, 3, stride, groups=cin)
        self.pw = ConvBNAct(cin, cout, 1, act=False)
        self.act = nn.ReLU(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.pw(self.dw(x))
        return self.act(y + x if self.residual else y)
