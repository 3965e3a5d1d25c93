"""Blocks found automatically, for a model no splitter was written for: torchvision's by where the spatial
resolution falls, timm's by the stages its `feature_info` describes, anyone's own network the same way.

The rules (README, "Any model by name"):
- The model's children, in the order it declares them, up to its head: the first child that pools, flattens,
  drops out or classifies (or is named avgpool, classifier, fc, head, heads). Children named aux... are side
  heads (Inception, GoogLeNet) and go with the head. Plain containers (nn.Sequential, nn.ModuleList) are opened.
- Those parts, run one after another, must give what the model's own forward hands its head (checked on a probe
  forward): a model whose forward does more between its parts is refused, with the reason.
- A new block starts at each part whose output has fewer positions than its input (the resolution halves, or
  falls more); the parts after it join it. timm's stages are cut after each module `feature_info` names instead.
- Every parameter must sit in exactly one block or the head: a parameter of the model itself (a class token,
  a position embedding) is refused, except in a vision transformer (below).
- Vision transformers (timm's ViT, DeiT...: patch_embed, blocks, _pos_embed; torchvision's ViT) work on tokens,
  whose number never falls: their blocks are the embedding (patches, class token, position embedding), then the
  transformer blocks in TOKEN_GROUPS groups by depth; the last group ends in the model's own pooling (its class
  token, or the mean of its patch tokens) and final norm, handed on as an (N, D, 1, 1) map, so FreezeLab's head
  takes it as any other. The result is checked against what the model's own forward hands its classifier.
The probe runs on the CPU, without gradients, at the model's minimum size and at twice it: the dimensions that
grow with the input are its positions, so channels-last outputs (Swin) are read right. A model that takes one
input size only (MaxViT) is read as channels first.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

HEAD_TYPES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Linear, nn.Dropout)
HEAD_NAMES = ("avgpool", "global_pool", "classifier", "fc", "head", "heads", "pre_logits", "fc_norm")


class SplitRefused(ValueError):
    """The model cannot be split into blocks by these rules; the message says why, in one sentence."""


def _is_head(name: str, module: nn.Module) -> bool:
    return isinstance(module, HEAD_TYPES) or name in HEAD_NAMES


def _opened(named: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """Plain containers replaced by their parts (recursively), named by their path in the model."""
    out = []
    for name, module in named:
        if type(module) in (nn.Sequential, nn.ModuleList):
            out += _opened([(f"{name}.{child}", m) for child, m in module.named_children()])
        else:
            out.append((name, module))
    return out


def body_and_head(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[nn.Module]]:
    """(the body's parts in forward order, the head's modules) of a classification model."""
    children = list(model.named_children())
    start = next((i for i, (name, m) in enumerate(children) if _is_head(name, m)), None)
    if start is None:
        raise SplitRefused(f"{type(model).__name__} has no part that looks like a head (a pooling, flatten, "
                           "dropout or linear layer, or one named fc, classifier or head).")
    body = [(n, m) for n, m in children[:start] if not n.lower().startswith("aux")]
    head = [m for n, m in children[start:]] + [m for n, m in children[:start] if n.lower().startswith("aux")]
    return _opened(body), head


def _positions(shape_small: torch.Size, shape_large: torch.Size) -> int:
    """How many positions an output has: the product of the dimensions that grew with the input."""
    grown = [a for a, b in zip(shape_small[1:], shape_large[1:], strict=True) if b != a]
    return int(torch.tensor(grown).prod()) if grown else 1


def _run(parts: list[tuple[str, nn.Module]], x: torch.Tensor, model_name: str) -> list[torch.Tensor]:
    outs = []
    for name, part in parts:
        try:
            x = part(x)
        except Exception as err:  # any layer's own complaint: said with where it happened
            raise SplitRefused(f"{model_name}'s parts do not run one after another (at {name}: "
                               f"{str(err).splitlines()[0][:160]}); its forward does more between them.") from None
        if not isinstance(x, torch.Tensor):
            raise SplitRefused(f"{model_name}'s part {name} returns {type(x).__name__}, not a tensor.")
        outs.append(x)
    return outs


def _head_input(model: nn.Module, head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    hook = head.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        model(x)
    finally:
        hook.remove()
    return seen[0]


def _check_coverage(model: nn.Module, blocks: OrderedDict, head: list[nn.Module], model_name: str) -> None:
    owned: dict[int, str] = {}
    for name, block in [*blocks.items(), *(("head", h) for h in head)]:
        for p in block.parameters():
            if id(p) in owned and owned[id(p)] != name:
                raise SplitRefused(f"{model_name} shares a parameter between {owned[id(p)]} and {name}.")
            owned[id(p)] = name
    loose = [n for n, p in model.named_parameters() if id(p) not in owned]
    if loose:
        raise SplitRefused(f"{model_name} has parameters outside its parts ({', '.join(loose[:3])}): its "
                           "forward uses them between parts, which blocks cannot follow.")


def _cuts_by_resolution(parts, small: list[torch.Tensor], large: list[torch.Tensor], size: int) -> list[int]:
    """The parts a new block starts at: the first, and each whose output has fewer positions than its input."""
    before, cuts = size * size, [0]
    for i, (a, b) in enumerate(zip(small, large, strict=True)):
        now = _positions(a.shape, b.shape)
        if now < before and i:
            cuts.append(i)
        before = now
    return cuts


TOKEN_GROUPS = 4  # a transformer's blocks, grouped by depth: as many blocks to freeze as a ResNet has stages


def is_token_model(model: nn.Module) -> bool:
    """A timm vision transformer: patches in, tokens through its blocks."""
    return all(hasattr(model, a) for a in ("patch_embed", "blocks", "_pos_embed", "num_prefix_tokens"))


class TokenEmbed(nn.Module):
    """A timm vision transformer's way in, as one block: patches, its class (and register) tokens and the
    position embedding, as the model's own `_pos_embed` adds them."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.patch_embed, self.patch_drop, self.norm_pre = vit.patch_embed, vit.patch_drop, vit.norm_pre
        for name in ("cls_token", "reg_token", "pos_embed"):
            if isinstance(getattr(vit, name, None), nn.Parameter):
                self.register_parameter(name, getattr(vit, name))  # the same tensors the model's method reads
        self._vit = [vit]  # its method, without making the whole model a part of this block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_pre(self.patch_drop(self._vit[0]._pos_embed(self.patch_embed(x))))


class PooledTokens(nn.Module):
    """Tokens (N, L, D) pooled as the model pools them, then its fc_norm, as an (N, D, 1, 1) map."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.fc_norm = vit.fc_norm
        self._vit = [vit]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_norm(self._vit[0].pool(x))[:, :, None, None]


def split_tokens(model: nn.Module, size: int, model_name: str) -> OrderedDict:
    """The blocks of a timm vision transformer (see the module's rules), checked against its own forward."""
    if getattr(model, "attn_pool", None) is not None:
        raise SplitRefused(f"{model_name} pools its tokens with attention (a learned head of its own), which "
                           "FreezeLab's head would replace: pick a variant with class-token or average pooling.")
    layers = list(model.blocks)
    per = -(-len(layers) // TOKEN_GROUPS)
    blocks = OrderedDict(embed=TokenEmbed(model))
    for start in range(0, len(layers), per):
        part = layers[start:start + per]
        tail = [model.norm, PooledTokens(model)] if start + per >= len(layers) else []
        blocks[f"blocks_{start + 1}_{start + len(part)}"] = nn.Sequential(*part, *tail)
    _check_against_head(model, blocks, model.head, size, model_name)
    _check_coverage(model, blocks, [model.head], model_name)
    return blocks


def is_torchvision_vit(model: nn.Module) -> bool:
    """torchvision's VisionTransformer: conv_proj, a class token, an encoder holding the position embedding."""
    return all(hasattr(model, a) for a in ("conv_proj", "class_token", "encoder", "_process_input"))


class ClassTokenEmbed(nn.Module):
    """torchvision's ViT's way in, as one block: patches, the class token before them, the position embedding."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.conv_proj, self.dropout = vit.conv_proj, vit.encoder.dropout
        self.class_token, self.pos_embedding = vit.class_token, vit.encoder.pos_embedding
        self._vit = [vit]  # its _process_input, without making the whole model a part of this block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._vit[0]._process_input(x)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.dropout(x + self.pos_embedding)


class ClassToken(nn.Module):
    """The class token of tokens (N, L, D), as an (N, D, 1, 1) map: what torchvision's ViT hands its heads."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, :, None, None]


def split_torchvision_vit(model: nn.Module, size: int, model_name: str) -> OrderedDict:
    """torchvision's ViT as timm's are split: the embedding, then its encoder layers in TOKEN_GROUPS groups by
    depth, the last ending in the encoder's norm and the class token; checked against the model's own forward."""
    layers = list(model.encoder.layers)
    per = -(-len(layers) // TOKEN_GROUPS)
    blocks = OrderedDict(embed=ClassTokenEmbed(model))
    for start in range(0, len(layers), per):
        part = layers[start:start + per]
        tail = [model.encoder.ln, ClassToken()] if start + per >= len(layers) else []
        blocks[f"blocks_{start + 1}_{start + len(part)}"] = nn.Sequential(*part, *tail)
    _check_against_head(model, blocks, model.heads, size, model_name)
    _check_coverage(model, blocks, [model.heads], model_name)
    return blocks


def _check_against_head(model: nn.Module, blocks: OrderedDict, head: nn.Module, size: int, model_name: str) -> None:
    """The blocks, run one after another, give what the model's own forward hands `head` (flattened)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.rand(1, 3, size, size)
            want = _head_input(model, head, x)
            got = nn.Sequential(*blocks.values())(x).flatten(1)
    finally:
        model.train(was_training)
    if got.shape != want.shape or not torch.allclose(got, want, atol=1e-4):
        raise SplitRefused(f"{model_name}'s blocks, run one after another, do not give what its forward hands "
                           "its classifier.")


def split(model: nn.Module, size: int, model_name: str = "", after: list[str] | None = None) -> OrderedDict:
    """Named blocks (stem, stage1, ...) of `model`, found by the rules above from a probe at `size` pixels and
    twice it; `after`: the parts (by name, as `body_and_head` names them) after which a block ends, instead of
    reading the resolution (timm's feature_info). SplitRefused, saying why, when the rules do not hold."""
    model_name = model_name or type(model).__name__
    if is_token_model(model):
        return split_tokens(model, size, model_name)
    if is_torchvision_vit(model):
        return split_torchvision_vit(model, size, model_name)
    parts, head = body_and_head(model)
    if not parts:
        raise SplitRefused(f"{model_name} has nothing before its head to split.")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            small = _run(parts, torch.zeros(1, 3, size, size), model_name)
            try:
                large = _run(parts, torch.zeros(1, 3, 2 * size, 2 * size), model_name)
            except SplitRefused:  # a model of one input size (MaxViT): its outputs are read as channels first
                large = [torch.empty(x.shape[:2] + tuple(2 * d for d in x.shape[2:])) for x in small]
            handed = _head_input(model, head[0], torch.zeros(1, 3, size, size))
    finally:
        model.train(was_training)
    out = small[-1]
    if out.dim() != 4:
        raise SplitRefused(f"{model_name}'s body ends in a {out.dim()}-d tensor (tokens?), not an image-shaped map: "
                           "its head would need a pooling FreezeLab does not build.")
    same = handed.shape == out.shape and torch.allclose(handed, out, atol=1e-5)
    pooled = handed.dim() == 2 and handed.shape[1] == out.shape[1]  # pooled (maybe after an activation) by forward
    if not (same or pooled):
        raise SplitRefused(f"{model_name}'s parts, run one after another, give {tuple(out.shape)}, but its head is "
                           f"handed {tuple(handed.shape)}: its forward does more between them.")
    names = [n for n, _ in parts]
    if after and all(a in names for a in after):
        cuts = sorted({0, *(names.index(a) + 1 for a in after if names.index(a) + 1 < len(parts))})
    else:  # no stages named, or named deeper than the parts (timm's feature_info at times): by resolution
        cuts = _cuts_by_resolution(parts, small, large, size)
    groups = [parts[a:b] for a, b in zip(cuts, [*cuts[1:], len(parts)], strict=True)]
    blocks = OrderedDict((("stem" if i == 0 else f"stage{i}"), nn.Sequential(OrderedDict(
        (n.replace(".", "_"), m) for n, m in group))) for i, group in enumerate(groups))
    _check_coverage(model, blocks, head, model_name)
    return blocks
