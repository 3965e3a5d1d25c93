"""The bundled demo net's architecture: a small ResNet for 28x28 digits (stem + four residual layers, about
0.3M parameters), built without torchvision.

Why its own residual block: importing torchvision costs about a second of CPU (it loads torch._dynamo), which a
cold start of the app's demo would pay for one class. The block is ResNet's basic block (He et al., "Deep
Residual Learning for Image Recognition", CVPR 2016: two 3x3 convolutions with batch norm, added to the
input or to its 1x1 projection), and its parts carry torchvision's `BasicBlock` names (conv1, bn1, conv2, bn2,
downsample), so the bundled weights' tensor names stay as they were.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut is `downsample` when given, else x."""

    def __init__(self, cin: int, cout: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


def _down(cin: int, cout: int) -> ResidualBlock:
    """A block that halves the resolution and widens the channels, its shortcut a strided 1x1 projection."""
    shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
    return ResidualBlock(cin, cout, stride=2, downsample=shortcut)


def demo_architecture() -> nn.Module:
    """The demo backbone, as its named blocks (stem, layer1-4), untrained."""
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)),
        layer1=ResidualBlock(16, 16),
        layer2=_down(16, 32),
        layer3=_down(32, 64),
        layer4=_down(64, 128),
    ))
