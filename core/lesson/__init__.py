"""The lesson: seven steps on what freezing does, one idea each. Each step asks a question, takes the student's
prediction before anything runs, trains (or measures) something small, and then reveals what happened in words
written from that run's own numbers, saying whether the prediction held.

    step = STEPS[0]                                  # the race: one value holds all of it
    configs = step.runs.configs()                    # what its Run button trains (lesson_configs("race"))
    reading = step.read(lab)                         # its numbers, read through a Lab (ui/lesson.py's)
    reveal = step.revealed(reading)                  # step.reveal(**reading.numbers): a pure function
    reveal.text, reveal.answers, reveal.verdict(predicted)
    step.chart, step.deeper.page                     # what the page draws (reading.shown), where to go further

Modules: `steps` (the Step type and STEPS), `runs` (what each set trains, the part each run plays), `readings`
(each step's reader: numbers from the run store, checkpoints or a measurement), `reveals` (pure functions of
those numbers), `pace` (while runs train). Pages only show what these return.
"""

from core.lesson.pace import pace_words
from core.lesson.readings import (
    COST_BATCH,
    Lab,
    Maps,
    Missing,
    Reading,
    bn_policy_numbers,
    depth_numbers,
    final_accuracies,
    last_drift,
    maps_of,
)
from core.lesson.reveals import (
    BATCHNORM_CHOICES,
    BOUNDARY_CHOICES,
    COST_CHOICES,
    DEPTH_CHOICES,
    FORGETTING_CHOICES,
    MAPS_CHOICES,
    RACE_CHOICES,
    SAME_MAP,
    TOO_CLOSE,
    Reveal,
    batchnorm_reveal,
    boundary_reveal,
    cost_reveal,
    depth_reveal,
    forgetting_reveal,
    maps_reveal,
    race_reveal,
)
from core.lesson.runs import BATCHNORM, DEPTH, LESSON_EPOCHS, RACE, RUN_SETS, RunSet, lesson_configs
from core.lesson.steps import STEP_KEYS, STEPS, Chart, Deeper, Step, step

__all__ = [
    "BATCHNORM", "BATCHNORM_CHOICES", "BOUNDARY_CHOICES", "COST_BATCH", "COST_CHOICES", "DEPTH", "DEPTH_CHOICES",
    "FORGETTING_CHOICES", "LESSON_EPOCHS", "MAPS_CHOICES", "RACE", "RACE_CHOICES", "RUN_SETS", "SAME_MAP",
    "STEPS", "STEP_KEYS", "TOO_CLOSE", "Chart", "Deeper", "Lab", "Maps", "Missing", "Reading", "Reveal", "RunSet",
    "Step", "batchnorm_reveal", "bn_policy_numbers", "boundary_reveal", "cost_reveal", "depth_numbers",
    "depth_reveal", "final_accuracies", "forgetting_reveal", "last_drift", "lesson_configs", "maps_of",
    "maps_reveal", "pace_words", "race_reveal", "step",
]
