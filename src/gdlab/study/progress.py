"""What a running study shows: a line per finished run, and in a terminal, bars with the time left.

When output is not a terminal (CI, a pipe, a file) only the per-run lines are printed, one as each
run finishes, so logs stay plain text. In a terminal the same lines scroll above a bar over the
study (runs done of N, time elapsed, time left) and, for runs of ``EPOCH_BAR_MIN_EPOCHS`` epochs or
more, a bar over the epochs of the run in training, fed by ``epoch_finished``.
"""

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Shorter runs finish before an epoch bar would tell anything.
EPOCH_BAR_MIN_EPOCHS = 3


class StudyProgress:
    """Progress of one study on ``console``; use as a context manager around the training."""

    def __init__(self, console: Console, runs: int, runs_done: int = 0):
        self.console = console
        self.runs = runs
        self.runs_done = runs_done
        self.bars: Progress | None = None
        self.study_task: TaskID | None = None
        self.epoch_task: TaskID | None = None
        self.epoch_runs: tuple[str, ...] = ()

    def __enter__(self) -> "StudyProgress":
        if self.console.is_terminal:
            self.bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("elapsed"),
                TimeRemainingColumn(),
                TextColumn("left"),
                console=self.console,
            )
            self.bars.start()
            self.study_task = self.bars.add_task("runs", total=self.runs, completed=self.runs_done)
        return self

    def __exit__(self, *exc) -> bool:
        if self.bars is not None:
            self._drop_epoch_bar()
            self.bars.stop()
        return False

    def run_finished(self, run_id: str, line: str) -> None:
        """Print a finished run's line (above the bars in a terminal) and count it."""
        self.console.print(line, highlight=False, soft_wrap=True)
        self.runs_done += 1
        if self.bars is None:
            return
        if run_id in self.epoch_runs:
            self._drop_epoch_bar()
        self.bars.update(self.study_task, completed=self.runs_done, refresh=True)

    def epoch_finished(self, run_ids: tuple[str, ...], epochs_done: int, epochs: int) -> None:
        """``run_ids`` (one run, or runs stacked into one model) finished epoch ``epochs_done`` of ``epochs``."""
        if self.bars is None or epochs < EPOCH_BAR_MIN_EPOCHS:
            return
        if run_ids != self.epoch_runs:
            self._drop_epoch_bar()
            self.epoch_runs = tuple(run_ids)
            label = run_ids[0] + (f" +{len(run_ids) - 1} stacked" if len(run_ids) > 1 else "")
            self.epoch_task = self.bars.add_task(f"  epochs of {label}", total=epochs, completed=epochs_done)
        self.bars.update(self.epoch_task, completed=epochs_done, refresh=True)

    def _drop_epoch_bar(self) -> None:
        if self.epoch_task is not None:
            self.bars.remove_task(self.epoch_task)
        self.epoch_task, self.epoch_runs = None, ()
