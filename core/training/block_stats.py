"""What freezing changes, block by block: how far weights moved, what BatchNorm's statistics did, and how
much gradient reached each block. The burst loop records these once per epoch (a `BlockStats` event), so
every view reads them back from the run store without a second pass over the data.

- weight drift: ‖w − w₀‖ / ‖w₀‖ over a block's parameters, w₀ the run's starting weights; exactly 0 for
  a block that never trained.
- BatchNorm drift: the same over the block's running means and variances (None for a block without
  BatchNorm); it moves only when statistics update (policy "stats", or a trainable block).
- gradient norm: ‖∂L/∂w‖ over the block's parameters, averaged over the epoch's steps; None for a block
  whose parameters have no gradient (frozen).
"""

from __future__ import annotations

import torch
from torch import nn

_BN = nn.modules.batchnorm._BatchNorm


def parts(model) -> list[tuple[str, nn.Module]]:
    """The backbone's blocks and the head, in forward order: the rows of every per-block view."""
    return [*model.blocks.items(), ("head", model.head)]


def snapshot(model) -> dict[str, torch.Tensor]:
    """A copy of every weight and buffer: the w₀ that drift is measured from."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _relative(now: list[torch.Tensor], start: list[torch.Tensor]) -> float | None:
    if not now:
        return None
    diff = torch.sqrt(sum(((a.float() - b.float()) ** 2).sum() for a, b in zip(now, start, strict=True)))
    base = torch.sqrt(sum((b.float() ** 2).sum() for b in start))
    return float(diff / base) if base > 0 else float(diff)


@torch.no_grad()
def drift(model, initial: dict[str, torch.Tensor]) -> dict[str, tuple[float | None, float | None]]:
    """Per block: (weight drift, BatchNorm running-statistics drift) from the starting weights."""
    out = {}
    for name, module in parts(model):
        prefix = "blocks." + name + "." if name != "head" else "head."
        params = [(prefix + k, p) for k, p in module.named_parameters() if prefix + k in initial]
        stats = [(prefix + f"{m_name}.{buf}" if m_name else prefix + buf, getattr(m, buf))
                 for m_name, m in module.named_modules() if isinstance(m, _BN) and m.track_running_stats
                 for buf in ("running_mean", "running_var")]
        stats = [(k, v) for k, v in stats if k in initial]
        out[name] = (_relative([p for _, p in params], [initial[k] for k, _ in params]),
                     _relative([v for _, v in stats], [initial[k] for k, _ in stats]))
    return out


class GradientMeter:
    """Sums each block's gradient norm over an epoch's steps: one stacked norm and one read per step."""

    def __init__(self, model):
        self.blocks = [name for name, _ in parts(model)]
        self._params = [list(module.parameters()) for _, module in parts(model)]
        self.sums = [0.0] * len(self.blocks)
        self.counts = [0] * len(self.blocks)

    @torch.no_grad()
    def add(self) -> None:
        """After backward: add this step's gradient norm of every block that has gradients."""
        norms, has = [], []
        for params in self._params:
            grads = [p.grad for p in params if p.grad is not None]
            has.append(bool(grads))
            if grads:
                norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float())
                                                                   for g in grads])))
        values = torch.stack(norms).tolist() if norms else []
        for i, present in enumerate(has):
            if present:
                self.sums[i] += values.pop(0)
                self.counts[i] += 1

    def means(self) -> dict[str, float | None]:
        return {b: (s / c if c else None) for b, s, c in zip(self.blocks, self.sums, self.counts, strict=True)}

    def state(self) -> dict:
        return {"blocks": self.blocks, "sums": self.sums, "counts": self.counts}

    def load(self, saved: dict) -> None:
        if saved and saved.get("blocks") == self.blocks:
            self.sums, self.counts = list(saved["sums"]), list(saved["counts"])
