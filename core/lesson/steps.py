"""The lesson's seven steps, each one value: its question and choices, the runs its Run button trains (or a
measurement), how its numbers are read, its reveal, the chart that shows them, and the page that goes further.
Adding a step is adding one Step to STEPS (its reader and reveal beside the others')."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from core.lesson import readings as R
from core.lesson import reveals as V
from core.lesson.runs import BATCHNORM, DEPTH, RACE, RunSet


class Chart(Enum):
    """What a step's chart draws, and so what its Reading's `shown` is; the lesson page has a drawing for each."""
    CURVES = "curves"  # the runs' epoch curves (Metrics.curves)
    BLOCK_DRIFT = "block drift"  # {block: relative weight drift}, in forward order, the head last
    DEPTH_SWEEP = "depth sweep"  # the sweep's runs (experiments.studies.sweep_runs)
    FORGETTING = "forgetting"  # {part: source-task accuracy by kept step (insight.inside.forgetting)}
    MAPS = "maps"  # readings.Maps: one image and each run's map
    COST = "cost"  # cost against depth (insight.inside.freeze_cost)


@dataclass(frozen=True)
class Deeper:
    """Where a step's "go deeper" leads: one of the app's pages, by its key (the page's address, /inside), opened
    on a set of the lesson's runs."""
    page: str  # "train", "inside", "experiments", "explain": ui resolves it to the page
    what: str  # what that page shows, in a few words (the button says it)
    runs: RunSet | None  # the runs that page opens on (None: what it had)


@dataclass(frozen=True)
class Step:
    key: str  # names the step in widget keys and in the class's tally
    title: str
    question: str
    choices: tuple[str, ...]  # the predictions offered, before the run
    why: str  # the paragraph after the reveal
    runs: RunSet | None  # what its Run button trains; None: its button measures instead (`read` does)
    read: Callable[[R.Lab], R.Reading]  # its numbers and what its chart shows, once its runs have ended
    reveal: Callable[..., V.Reveal]  # a pure function of its Reading's numbers (by name)
    chart: Chart
    deeper: Deeper

    def revealed(self, reading: R.Reading) -> V.Reveal:
        return self.reveal(**reading.numbers)

    @property
    def button(self) -> str:
        """Its Run (or Measure) button's words. A set is named after the step that trains it first: a later step
        that shows the same runs says so."""
        if self.runs is None:
            return "▶ Measure"
        again = f" ({self.runs.told}: later steps look at them again)" if self.runs.key != self.key else ""
        return f"▶ Run{again}"


STEPS: tuple[Step, ...] = (
    Step("race", "The race",
         "A network pretrained on digits 0-4 learns digits 5-9 from 20 images each, three ways: keep its backbone "
         "frozen and train only a new head; also fine-tune its top two blocks; or start the same architecture "
         "from random weights. Same images, epochs and seed. Which ends highest?", V.RACE_CHOICES,
         "Feature extraction trains only a new head on features learned for digits 0-4; fine-tuning the top "
         "blocks lets those features adapt to 5-9 as well; from scratch has to learn every feature from these 100 "
         "images. Which wins depends on how well the old features suit the new digits, and, with this few images "
         "and epochs, on the seed too: run the race again on the Train page with another seed or more epochs and "
         "see whether the order holds.",
         runs=RACE, read=R.read_race, reveal=V.race_reveal, chart=Chart.CURVES,
         deeper=Deeper("train", "the curves, step by step", RACE)),
    Step("boundary", "The freeze boundary",
         "In the run that fine-tunes the top two blocks, which blocks' weights will have moved from where they "
         "started?", V.BOUNDARY_CHOICES,
         "Freezing sets requires_grad to False: no gradient is computed for a frozen block, so the optimizer "
         "never changes it. The boundary is sharp, not gradual: below it nothing moves at all, above it "
         "everything may. The error signal still flows back through the trainable blocks, and stops at the "
         "first frozen one.",
         runs=RACE, read=R.read_boundary, reveal=V.boundary_reveal, chart=Chart.BLOCK_DRIFT,
         deeper=Deeper("inside", "drift and gradient heat maps per epoch", RACE)),
    Step("batchnorm", "BatchNorm in frozen blocks",
         "A frozen block's weights stay put, but its BatchNorm layers also keep running statistics of their "
         "inputs, and a scale and shift (γ, β). Three runs differ only in what BatchNorm does in the frozen "
         "blocks while the top block trains: nothing (frozen), statistics follow the new data (stats), or γ "
         "and β train (affine). Which ends highest?", V.BATCHNORM_CHOICES,
         "requires_grad does not freeze BatchNorm's running mean and variance: in training mode they follow "
         "each batch. Whether they should depends on how far the new data is from the old; on a small dataset "
         "the noisy statistics of 20-image batches can hurt as much as they help. Which is best is an "
         "empirical question — which is why it is a setting.",
         runs=BATCHNORM, read=R.read_batchnorm, reveal=V.batchnorm_reveal, chart=Chart.CURVES,
         deeper=Deeper("inside", "BatchNorm drift by block, and the three policies side by side", BATCHNORM)),
    Step("depth", "How deep to freeze",
         "Freeze the first k blocks and fine-tune the rest, for every k, two seeds each (dots), plus the "
         "network from scratch. How does the final accuracy change as more blocks freeze?", V.DEPTH_CHOICES,
         "Early layers tend to learn general features (edges, strokes) that transfer, later ones features more "
         "specific to the task they learned (Yosinski et al., 2014), so freezing deeper costs more the further "
         "apart the two tasks are. With two seeds of 20 images per class, a difference smaller than the seeds' "
         "spread says nothing either way: more seeds (the Experiments page) narrow it.",
         runs=DEPTH, read=R.read_depth, reveal=V.depth_reveal, chart=Chart.DEPTH_SWEEP,
         deeper=Deeper("experiments", "the sweep's table and spread", DEPTH)),
    Step("forgetting", "What the source task lost",
         "The race's networks were pretrained on digits 0-4. Put the old digits-0-4 head back on each run's "
         "backbone: which one still recognises the old digits?", V.FORGETTING_CHOICES,
         "Feature extraction never changes the backbone (its BatchNorm statistics stay frozen too), so the old "
         "head on it computes exactly what it did before. Fine-tuning moves the top blocks toward the new task, "
         "and the old head was never trained on the moved features: how much it loses is how much the shared "
         "features changed — catastrophic forgetting, in miniature.",
         runs=RACE, read=R.read_forgetting, reveal=V.forgetting_reveal, chart=Chart.FORGETTING,
         deeper=Deeper("inside", "source-task accuracy at each kept step", RACE)),
    Step("maps", "What the models look at",
         "Ask Grad-CAM where the frozen run and the fine-tuned run look on the same validation image. Will the "
         "two maps agree?", V.MAPS_CHOICES,
         "The frozen run's last block is the pretrained one, so its map shows what the digits-0-4 network "
         "attends to; fine-tuning changes those features. Two maps can also differ simply because the runs "
         "predict different classes. Check the sanity test before reading a map: a map that barely changes "
         "when the weights are randomised says little about the model.",
         runs=RACE, read=R.read_maps, reveal=V.maps_reveal, chart=Chart.MAPS,
         deeper=Deeper("explain", "every method, the difference between maps, the sanity check", RACE)),
    Step("cost", "What freezing saves",
         "Time one training step on this machine with nothing frozen and with the whole backbone frozen. How "
         "much faster is the frozen step?", V.COST_CHOICES,
         "A frozen block needs no gradients for its weights and keeps fewer activations for backward, so its "
         "share of the backward pass goes; the forward pass still runs through every block, so the saving is "
         "at most the backward's share of a step. FreezeLab goes further in training: with the backbone frozen "
         "and no augmentation it caches the frozen features, and later epochs skip the backbone entirely.",
         runs=None, read=R.read_cost, reveal=V.cost_reveal, chart=Chart.COST,
         deeper=Deeper("inside", "cost against depth, memory kept for backward", RACE)),
)
STEP_KEYS = tuple(s.key for s in STEPS)


def step(key: str) -> Step:
    return STEPS[STEP_KEYS.index(key)]
