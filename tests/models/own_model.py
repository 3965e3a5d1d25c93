"""An example of your own network for FreezeLab (`freezelab train --model-file tests/models/own_model.py:tiny_cnn`).

A factory returns an nn.Module (its blocks are found where the resolution halves) or (module, blocks) to name
them. IMAGE_SIZE, when given, is the size the model is probed at and its runs' default image size."""

from collections import OrderedDict

from torch import nn

IMAGE_SIZE = 28


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class TinyCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.down1, self.down2, self.down3 = _stage(8, 16), _stage(16, 32), _stage(32, 32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.down3(self.down2(self.down1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


def tiny_cnn() -> nn.Module:
    """Blocks found automatically: where the resolution halves."""
    return TinyCNN()


def tiny_cnn_named():
    """Blocks named by the factory: (model, blocks)."""
    model = TinyCNN()
    blocks = OrderedDict(early=nn.Sequential(model.stem, model.down1), late=nn.Sequential(model.down2, model.down3))
    return model, blocks


def not_a_model():
    return "a string"


def blocks_that_do_not_chain():
    model = TinyCNN()
    return model, OrderedDict(first=model.down2, second=model.stem)
