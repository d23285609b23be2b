"""What one training run leaves behind: every iteration's figures, per-epoch summaries.

Only Python floats are stored, never tensors, so a History costs a few bytes per
iteration and memory stays flat however long a run trains.
"""

from dataclasses import asdict, dataclass, field

STATUS_OK = "ok"
STATUS_DIVERGED = "diverged"


@dataclass
class History:
    iteration_loss: list[float] = field(default_factory=list)
    iteration_accuracy: list[float] = field(default_factory=list)
    # Iterations run in each epoch, the last one partial if the run diverged in it.
    epoch_iterations: list[int] = field(default_factory=list)
    epoch_train_loss: list[float] = field(default_factory=list)
    epoch_train_accuracy: list[float] = field(default_factory=list)
    epoch_val_loss: list[float] = field(default_factory=list)
    epoch_val_accuracy: list[float] = field(default_factory=list)
    epoch_learning_rate: list[float] = field(default_factory=list)
    status: str = STATUS_OK
    diverged_at_iteration: int | None = None
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        return self.status == STATUS_DIVERGED

    @property
    def epochs_completed(self) -> int:
        return len(self.epoch_train_loss)

    def iteration_epochs(self) -> list[int]:
        """The epoch of every iteration, aligned with ``iteration_loss``."""
        return [epoch for epoch, count in enumerate(self.epoch_iterations) for _ in range(count)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "History":
        return cls(**record)
