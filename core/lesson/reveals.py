"""What each step's numbers say, in words: pure functions of plain numbers (what the run store or a measurement
holds, and their spread where there is one), so each is tested with fixed numbers. A reveal names the choices the
numbers support, or none when they are too close to call: then no prediction is graded."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.freezing import BN_POLICIES

# The predictions each step offers (a reveal's answers are among them).
RACE_CHOICES = ("Feature extraction", "Fine-tune the top 2 blocks", "From scratch")
BOUNDARY_CHOICES = ("Only the top two blocks and the head", "Every block, the first ones most",
                    "Every block a little, the head most")
BATCHNORM_CHOICES = tuple(BN_POLICIES)
DEPTH_CHOICES = ("Accuracy falls a little with each block frozen", "Little is lost until the last blocks freeze",
                 "No clear cost: within the seeds' spread")
FORGETTING_CHOICES = ("Fine-tuning forgets digits 0-4 more", "Feature extraction forgets more",
                      "Neither forgets")
MAPS_CHOICES = ("Much the same map", "Clearly different maps")
COST_CHOICES = ("Under 1.5× faster", "1.5× to 3× faster", "Over 3× faster")

TOO_CLOSE = "Too close to call on these numbers: no prediction is graded."


@dataclass(frozen=True)
class Reveal:
    text: str  # what happened, in the runs' numbers
    answers: tuple[str, ...]  # the choices the numbers support (several where they tie); () when too close to call
    numbers: dict = field(default_factory=dict)  # the figures the text states, by name

    @property
    def graded(self) -> bool:
        """Whether the numbers grade a prediction at all: not when they are too close to call."""
        return bool(self.answers)

    def right(self, predicted: str | None) -> bool:
        return self.graded and predicted in self.answers

    def verdict(self, predicted: str | None) -> str:
        if predicted is None:
            return ""
        if not self.graded:
            return TOO_CLOSE
        if self.right(predicted):
            return f"Your prediction — {predicted.lower()} — held."
        return f"You predicted {predicted.lower()}; the runs say {' or '.join(a.lower() for a in self.answers)}."


def _points(a: float, b: float) -> str:
    """The gap between two accuracies in points, from the values as shown (two decimals), so the words and the
    figures beside them agree."""
    gap = abs(round(a, 2) - round(b, 2)) * 100
    return f"{gap:.0f} point{'' if round(gap) == 1 else 's'}"


def race_reveal(finals: dict[str, float]) -> Reveal:
    """Which of the race's runs ended highest, and by how much, from their final validation accuracies (by the
    part each run plays: a choice)."""
    ranked = sorted(finals.items(), key=lambda kv: -kv[1])
    (best, top), rest = ranked[0], ranked[1:]
    tie = [name for name, value in rest if round(value, 2) == round(top, 2)]
    said = [f"{best} ended highest, at {top:.2f}"]
    said += [f"{name} {value:.2f} ({_points(top, value)} lower)" for name, value in rest if name not in tie]
    text = ", ".join(said) + "."
    if tie:
        said = [f"{', '.join([best, *tie[:-1]])} and {tie[-1]} ended level, at {top:.2f} to two decimals: on a few "
                "hundred validation images, a tie"]
        said += [f"{name} {value:.2f} ({_points(top, value)} lower)" for name, value in rest if name not in tie]
        text = "; ".join(said) + "."
    return Reveal(text, (best, *tie), dict(finals))


def boundary_reveal(drift: dict[str, float], trainable: tuple[str, ...]) -> Reveal:
    """Which blocks moved (relative weight drift above 0) in a run that trains `trainable` and the head, from
    each block's drift at its last epoch (in forward order, the head last)."""
    moved = [b for b, d in drift.items() if d > 0]
    still = [b for b, d in drift.items() if d == 0]
    said = ", ".join(f"{b} {drift[b]:.1%}" for b in moved)
    text = f"Moved from their starting weights: {said}."
    if still:
        text += f" {', '.join(still)} moved exactly 0: not a little, nothing."
    blocks = [b for b in drift if b != "head"]
    if set(moved) == {*trainable, "head"}:
        answer = BOUNDARY_CHOICES[0]
    elif blocks and drift[blocks[0]] > 0 and drift[blocks[0]] >= max(drift[b] for b in blocks):
        answer = BOUNDARY_CHOICES[1]
    else:
        answer = BOUNDARY_CHOICES[2]
    return Reveal(text, (answer,), dict(drift))


def batchnorm_reveal(finals: dict[str, float], frozen_bn_drift: dict[str, float]) -> Reveal:
    """Which BatchNorm policy ended highest (finals by policy) and how far the frozen blocks' running
    statistics moved under each (mean BatchNorm drift over the frozen blocks, by policy)."""
    race = race_reveal(finals)
    moved = "; ".join(f"{policy}: {d:.1%}" for policy, d in frozen_bn_drift.items())
    text = (f"{race.text} The frozen blocks' running statistics moved — {moved} — so only the policy that lets "
            "them follow the data changes what a frozen block computes.")
    return Reveal(text, race.answers, {**finals, **{f"bn_drift {p}": d for p, d in frozen_bn_drift.items()}})


def depth_reveal(mean_by_depth: dict[int, float], spread: float, scratch: float) -> Reveal:
    """How accuracy changed with the number of frozen blocks (mean over seeds, by k; `spread` the seeds' standard
    deviation, averaged over the depths) against the from-scratch control: the whole drop, and how much of it
    the last two blocks account for. A drop within twice the spread is no clear cost."""
    ks = sorted(mean_by_depth)
    first, last = mean_by_depth[ks[0]], mean_by_depth[ks[-1]]
    drop = first - last
    listed = ", ".join(f"k={k}: {mean_by_depth[k]:.2f}" for k in ks)
    text = (f"Mean final accuracy by frozen blocks — {listed}; from scratch {scratch:.2f}. Seeds of one setting "
            f"differ by {spread:.2f} (standard deviation, on average).")
    if drop <= 2 * spread:
        answer = DEPTH_CHOICES[2]
        text += (f" Freezing every block changed the mean by {_points(first, last)}, within twice that spread: "
                 "these runs cannot tell the depths apart.")
    else:
        late = mean_by_depth[ks[-3]] - last if len(ks) >= 3 else drop
        share = late / drop
        answer = DEPTH_CHOICES[1] if share >= 0.6 else DEPTH_CHOICES[0]
        text += (f" Freezing every block cost {_points(first, last)}; freezing the last two alone accounts for "
                 f"{share:.0%} of that.")
    return Reveal(text, (answer,), {"drop": drop, "spread": spread, "scratch": scratch,
                                    **{f"k={k}": v for k, v in mean_by_depth.items()}})


def forgetting_reveal(source_before: dict[str, float], source_after: dict[str, float]) -> Reveal:
    """What the race's frozen and fine-tuned runs kept of the source task (accuracy on held-out digits 0-4 with
    the source head, at their start and at their end), by the part each plays (RACE_CHOICES)."""
    lost = {name: source_before[name] - source_after[name] for name in source_after}
    said = "; ".join(f"{name} {source_before[name]:.2f} → {source_after[name]:.2f}" for name in source_after)
    text = f"Accuracy on held-out digits 0-4 with the old head, before → after: {said}."
    fe, ft = lost.get(RACE_CHOICES[0], 0.0), lost.get(RACE_CHOICES[1], 0.0)
    if max(fe, ft) <= 0.01:
        answer = FORGETTING_CHOICES[2]
    else:
        answer = FORGETTING_CHOICES[0] if ft > fe else FORGETTING_CHOICES[1]
    return Reveal(text, (answer,), {f"lost {k}": v for k, v in lost.items()})


SAME_MAP = 0.5  # two maps are "much the same" when both their rank correlation and their top-10% overlap reach it


def maps_reveal(spearman: float, overlap: float, sanity: dict[str, str]) -> Reveal:
    """Whether two runs' maps of one image and one class agree: the Spearman rank correlation of their pixels and
    the share of their top 10% pixels they have in common must both reach SAME_MAP; with each map's sanity
    verdict (by the part each run plays)."""
    answer = MAPS_CHOICES[0] if min(spearman, overlap) >= SAME_MAP else MAPS_CHOICES[1]
    text = (f"Explaining the image's true class, the two maps' rank correlation is {spearman:.2f} (1: the same "
            f"ordering of pixels) and they share {overlap:.0%} of their hottest tenth of pixels; this lesson calls "
            f"two maps much the same when both reach {SAME_MAP}. "
            + " ".join(f"{name}: {verdict}" for name, verdict in sanity.items()))
    return Reveal(text, (answer,), {"spearman": spearman, "overlap": overlap})


def cost_reveal(step_s_none_frozen: float, step_s_all_frozen: float, spread_s: float, accuracy_gap: float | None
                ) -> Reveal:
    """How much faster a step was with every block frozen than with none (medians, with the measurements'
    summed interquartile spread), beside what the race says freezing cost in accuracy (points, or None)."""
    ratio = step_s_none_frozen / step_s_all_frozen
    answer = COST_CHOICES[0] if ratio < 1.5 else COST_CHOICES[1] if ratio <= 3 else COST_CHOICES[2]
    text = (f"A step took {step_s_none_frozen * 1000:.1f} ms with nothing frozen and {step_s_all_frozen * 1000:.1f} "
            f"ms with the backbone frozen: {ratio:.1f}× faster")
    if abs(step_s_none_frozen - step_s_all_frozen) <= spread_s:
        text += f", though within the measurements' spread ({spread_s * 1000:.1f} ms): measure again to be sure"
    text += "."
    if accuracy_gap is not None:
        text += (f" In the race, feature extraction ended {_points(0, accuracy_gap)} "
                 f"{'below' if accuracy_gap > 0 else 'above'} fine-tuning the top two blocks.")
    return Reveal(text, (answer,), {"ratio": ratio})
