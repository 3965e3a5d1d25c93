"""The model every run trains: `FreezeLabNet`, a registered backbone's blocks (core.models.backbones) with the
input's resize and normalisation in front and a head for the task behind."""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from core.models.backbones import HeadConfig, ModelConfig, get_spec
from core.runtime import rng
from core.runtime.download import Progress

POOLING_LAYERS = 2  # an "avg" head starts with global average pooling and a flatten


def build_head(in_shape: tuple[int, ...], num_classes: int, cfg: HeadConfig) -> nn.Sequential:
    """Pooling or flatten, optional hidden layers (Linear, ReLU, Dropout), then the classifier."""
    if cfg.pool not in ("avg", "flatten"):
        raise ValueError(f"Head pooling is 'avg' or 'flatten', not {cfg.pool!r}.")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"Dropout must lie in [0, 1), not {cfg.dropout}.")
    if cfg.pool == "avg":
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # POOLING_LAYERS of them
        width = in_shape[0]
    else:
        layers, width = [nn.Flatten()], math.prod(in_shape)
    for h in cfg.hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        width = h
    if cfg.dropout and not cfg.hidden:
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class FreezeLabNet(nn.Module):
    """resize -> normalise -> named backbone blocks -> head. Input: float images in [0, 1], shape (N, 3, H, W),
    of any size: they are resized to `image_size` first."""

    def __init__(self, backbone: str, blocks: OrderedDict, num_classes: int, image_size: int,
                 head: HeadConfig, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.image_size = image_size
        self.head_config = head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.keep_eval: frozenset[str] = frozenset()  # module names the plan keeps in eval mode
        self.plan = None  # the FreezePlan last applied; None: everything trains (see set_plan)
        self.blocks = nn.ModuleDict(blocks)
        self.head = build_head(self.feature_shape(), num_classes, head)

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks)

    def features(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run blocks[start:stop]; from block 0 the input is first resized to the model's image size (images
        are stored at their native size, so each batch is resized here, on the model's device) and
        normalised."""
        if start == 0:
            if x.shape[-2:] != (self.image_size, self.image_size):
                x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True,
                                  align_corners=False)
            x = (x - self.mean) / self.std
        for block in list(self.blocks.values())[start:stop]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """An "avg" head's global average pooling alone: one vector per image, what a pooled cache holds."""
        return self.head[:POOLING_LAYERS](x)

    def classify(self, x: torch.Tensor, start: int = 0, pooled: bool = False) -> torch.Tensor:
        """Logits for images (`start` 0), for the output of blocks[:start], or for pooled vectors (`pooled`:
        the head goes on after its pooling)."""
        if pooled:
            return self.head[POOLING_LAYERS:](x)
        return self.head(self.features(x, start))

    def feature_shape(self, stop: int | None = None) -> tuple[int, ...]:
        """Shape of one image's features after blocks[:stop], probed without touching BN statistics."""
        was_training = self.training
        nn.Module.train(self, False)
        with torch.no_grad():
            x = torch.zeros(1, 3, self.image_size, self.image_size, device=self.mean.device)
            shape = tuple(self.features(x, 0, stop).shape[1:])
        self.train(was_training)
        return shape

    def truncate(self, after: str) -> None:
        """Drop every block after `after` and rebuild the head to fit what is left."""
        if after not in self.blocks:
            raise ValueError(f"Cannot truncate after {after!r}: blocks are {self.block_names}.")
        keep = self.block_names[: self.block_names.index(after) + 1]
        if keep == self.block_names:
            return
        self.blocks = nn.ModuleDict((n, self.blocks[n]) for n in keep)
        device = self.mean.device
        self.head = build_head(self.feature_shape(), self.num_classes, self.head_config).to(device)

    def set_plan(self, plan, keep_eval: frozenset[str]) -> None:
        """Record the plan now applied (core.freezing.apply calls this) and the modules it keeps in eval
        mode, and put them in that mode now."""
        self.plan, self.keep_eval = plan, frozenset(keep_eval)
        self.train(self.training)

    def train(self, mode: bool = True) -> FreezeLabNet:
        super().train(mode)
        if mode:
            for name, module in self.named_modules():
                if name in self.keep_eval:
                    module.eval()
        return self


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """The model in eval mode for the duration (BatchNorm statistics fixed, dropout off), then back in the
    mode it was in, even when an error interrupts."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def build_model(cfg: ModelConfig, num_classes: int, image_size: int | None = None,
                progress: Progress | None = None, seed: int = 0) -> FreezeLabNet:
    """The backbone with the weights `cfg` names and a head for `num_classes`, initialised from `seed`."""
    from core.models import weights

    spec = get_spec(cfg.backbone)
    if num_classes < 2:
        raise ValueError(f"A classifier needs at least two classes, not {num_classes}.")
    if (image_size or spec.image_size) < spec.min_size:
        raise ValueError(f"{spec.name} needs images of at least {spec.min_size} pixels a side, not "
                         f"{image_size or spec.image_size}; raise the image size on the Data page (or --image-size).")
    state, mean, std = weights.resolve(cfg.weights, spec, progress)  # may download: outside the RNG lock
    with rng.seeded(seed):
        raw = spec.build()
        net = FreezeLabNet(spec.name, spec.split(raw), num_classes, image_size or spec.image_size, cfg.head,
                           mean, std)
    if state is not None:
        weights.load_backbone(net, raw, state, source=cfg.weights)
    return net



def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
