"""One vocabulary for "compared with a reference": a verdict, a kind, and a tolerance stated once.

gdlab compares code with a reference in three places, each with its own report:

- ``gdlab check``: a user's update code against a reference rule, step by step (`CheckReport`);
- ``gdlab.gradcheck``: a backward pass against autograd and finite differences (`GradReport`);
- ``gdlab verify``: gdlab's own rules and backward pass against torch (`VerifyRow`).

Each report keeps its own details, and states its result in the same words, as a `Comparison`:

    verdict    pass | fail | cannot_check
    kind       none | variant | bug      a variant is a known formulation that differs from the
                                        reference in a stated way; none: passed, no known pattern,
                                        or nothing compared
    cause      what differs, in words (None on a plain pass)
    evidence   how that was established
    criterion  the tolerance in words ("torch.equal", "relative difference <= 1e-09 ...")
    tolerance  the largest measured value that passes (0 for torch.equal)
    measured   the largest value measured (None: nothing measured, or not finite)

Every report's ``to_json()`` holds these keys with these meanings, whatever it adds; `exit_code`
maps the verdict to a command's exit status (0 pass, 1 fail, 2 cannot check).

Nothing here imports torch: ``gdlab verify`` and ``gdlab check`` register their commands
without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    CANNOT_CHECK = "cannot_check"

    @property
    def exit_code(self) -> int:
        return {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.CANNOT_CHECK: 2}[self]


class Kind(StrEnum):
    NONE = "none"
    VARIANT = "variant"
    BUG = "bug"


@dataclass(frozen=True)
class Tolerance:
    """When a measured difference still passes: ``criterion`` says it in words, ``limit`` in a number.

    ``limit`` is the largest measured value that passes, in the unit the criterion names;
    0 for an exact comparison such as ``torch.equal``.
    """

    criterion: str
    limit: float = 0.0

    def __post_init__(self):
        if not isinstance(self.criterion, str) or not self.criterion:
            raise ValueError(f"Tolerance criterion must be a sentence saying when values agree, got {self.criterion!r}")
        if not (isinstance(self.limit, (int, float)) and self.limit >= 0):
            raise ValueError(
                f"Tolerance limit must be a number >= 0 (the largest measured value that passes), got {self.limit!r} "
                f"for {self.criterion!r}"
            )

    def admits(self, measured: float) -> bool:
        """Whether ``measured`` passes; NaN never does."""
        return measured <= self.limit


@dataclass(frozen=True)
class Comparison:
    """The result of one comparison with a reference, in the words all three reports share.

    ``tolerance`` is None only when nothing was compared (``cannot_check``).
    """

    verdict: Verdict
    kind: Kind = Kind.NONE
    cause: str | None = None
    evidence: str | None = None
    tolerance: Tolerance | None = None
    measured: float | None = None

    def __post_init__(self):
        # Accept the words as strings too ("pass", "bug"), and refuse anything else by name.
        for name, words in (("verdict", Verdict), ("kind", Kind)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, words(value))
            except ValueError:
                raise ValueError(
                    f"Comparison {name} {value!r} is not one of {', '.join(member.value for member in words)}"
                ) from None

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    def to_json(self) -> dict:
        """The shared keys (see the module docstring), JSON-ready: a measured value that is not
        finite (a NaN, an infinite difference) is null."""
        return {
            "verdict": self.verdict.value,
            "kind": self.kind.value,
            "cause": self.cause,
            "evidence": self.evidence,
            "criterion": self.tolerance.criterion if self.tolerance else None,
            "tolerance": self.tolerance.limit if self.tolerance else None,
            "measured": finite_or_none(self.measured),
        }


def finite_or_none(value: float | None) -> float | None:
    """``value`` where JSON can hold it, else None (JSON has no NaN or infinity)."""
    return value if value is not None and math.isfinite(value) else None
