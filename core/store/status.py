"""Where a run stands, as the runs table keeps it: its status, and a problem it was stopped by, when the store
knows it by kind (what a page offers to do about a run follows its problem, never the words of its message)."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's status, as the store keeps it (the values are what is written)."""
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"


STATUSES = {  # each status in words, for the pages' legends
    RunStatus.CREATED: "not trained yet",
    RunStatus.RUNNING: "a burst is training it now",
    RunStatus.PAUSED: "its last burst ended; it can train on",
    RunStatus.FINISHED: "trained for all its epochs, or stopped early by its validation loss",
    RunStatus.STOPPED: "stopped by the user; it can train on",
    RunStatus.FAILED: "an error ended it (see its message)",
    RunStatus.DIVERGED: "its loss stopped being a finite number",
    RunStatus.INTERRUPTED: "the app ended while it trained; it resumes from its last checkpoint",
}
# Statuses a new burst can carry on from; a run that ended these ways has nothing more to give.
RESUMABLE = (RunStatus.CREATED, RunStatus.PAUSED, RunStatus.STOPPED, RunStatus.INTERRUPTED)
ENDED_BADLY = (RunStatus.FAILED, RunStatus.DIVERGED)
ENDED = (RunStatus.FINISHED, *ENDED_BADLY)


class RunProblem(StrEnum):
    """What stopped a run, where something can be done about it; kept beside its status and cleared by the
    next status it is given (the values are what is written)."""
    NONE = ""
    # It has stored steps but no readable checkpoint: starting it again from step 0 would delete them, so a
    # burst stops it instead and the user is offered that restart.
    CHECKPOINT_MISSING = "checkpoint missing"
