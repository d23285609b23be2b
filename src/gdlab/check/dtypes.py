"""Which dtype to check in: the one the user's code computes in (``--dtype auto``).

Course code often works in float64: it calls
``torch.set_default_dtype(torch.double)`` at the top of the notebook, or
converts with ``.double()``. Run in float32, such code stops with a dtype
error (``mat1 and mat2 must have the same dtype``) or turns the model's
parameters into float64. So ``auto`` starts in float64 when the code says so
(its module set the default dtype when imported, torch's default dtype is
float64 now, as after a notebook cell that set it, or its source names
``.double()`` / ``torch.float64``), else in float32; and when the run fails
with a dtype error or changes the parameters' dtype, it runs again in the
other one. The report says which dtype was used and why. An explicitly
requested dtype is not changed; a dtype error then becomes a message that
names the dtype the code wants, never a traceback.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from dataclasses import dataclass

import torch

from gdlab.check.loading import dtype_set_by
from gdlab.errors import GdlabError

DTYPES = {"float32": torch.float32, "float64": torch.float64}

_ASKS_FOR_FLOAT64 = re.compile(r"\.double\(\)|torch\.(double|float64)\b|set_default_dtype\(\s*torch\.(double|float64)")
_DTYPE_ERROR = re.compile(r"dtype|scalar type|\bDouble\b|\bFloat\b|can't be cast", re.IGNORECASE)


@dataclass(frozen=True)
class DtypeChoice:
    dtype: torch.dtype
    reason: str  # empty when the dtype was asked for


class DtypeMismatch(Exception):
    """The user's code does not compute in the dtype of this run."""

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


def name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def is_dtype_error(error: BaseException) -> bool:
    return isinstance(error, (RuntimeError, TypeError)) and bool(_DTYPE_ERROR.search(str(error)))


def plan(requested: torch.dtype | str, obj) -> list[DtypeChoice]:
    """The dtypes to try, in order, each with the reason it is tried."""
    if isinstance(requested, str) and requested != "auto":
        if requested not in DTYPES:
            raise GdlabError(f"dtype {requested!r} is not supported; choose auto, {' or '.join(DTYPES)}")
        requested = DTYPES[requested]
    if isinstance(requested, torch.dtype):
        if requested not in DTYPES.values():
            raise GdlabError(f"dtype {requested} is not supported; choose torch.float32 or torch.float64")
        return [DtypeChoice(requested, "")]
    reason = _asks_for_float64(obj)
    if reason is not None:
        return [DtypeChoice(torch.float64, f"auto: {reason}"), DtypeChoice(torch.float32, "")]
    return [DtypeChoice(torch.float32, "auto: nothing in your code asks for float64"),
            DtypeChoice(torch.float64, "")]


def _asks_for_float64(obj) -> str | None:
    if dtype_set_by(obj) == torch.float64:
        return "your module sets torch.set_default_dtype(torch.float64)"
    if torch.get_default_dtype() == torch.float64:
        return "torch's default dtype is float64 (set by torch.set_default_dtype)"
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return None
    match = _ASKS_FOR_FLOAT64.search(source)
    return f"your code uses {match.group(0)}" if match else None


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """torch's default dtype set to ``dtype`` meanwhile, so the user's new tensors are made in it."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
