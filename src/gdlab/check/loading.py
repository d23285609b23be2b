"""Finding the user's function or class (``FILE.py:NAME``) and explaining its failures in its own terms.

Whatever goes wrong on the user's side (no such file, a syntax error, an
exception while importing or while training) becomes a
:class:`CannotCheck` whose message quotes the exception and the user's own
line; gdlab's and torch's frames are left out because they are not where the
fix is.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from pathlib import Path
from typing import Callable

from gdlab import usercode
from gdlab.errors import GdlabError

DTYPE_MARK = "__gdlab_default_dtype__"


class CannotCheck(GdlabError):
    """The function could not be checked: it could not be found, called or run to the end."""


def load_function(target: str) -> Callable:
    """The function or Optimizer class ``target`` names: ``FILE.py:NAME`` (or ``package.module:NAME``).

    The file is imported with `gdlab.usercode` (its folder first on
    ``sys.path`` meanwhile, so that it imports its neighbours as when run as a
    script). torch's default dtype is put back as it was after the import;
    if the file changed it (``torch.set_default_dtype(torch.double)``, as
    float64 course code does), the dtype is remembered on the module, and
    ``--dtype auto`` runs the check in it.
    """
    import torch

    where, separator, name = target.rpartition(":")
    if not separator or not where or not name:
        raise CannotCheck(
            f"target {target!r} must name a file and a function, like my_training.py:train_manual"
        )
    try:
        path = usercode.resolve_path(where, None)
    except GdlabError:
        raise CannotCheck(f"no file {where!r} (from target {target!r}); check the path") from None
    default_dtype = torch.get_default_dtype()
    try:
        if path is None:
            module = importlib.import_module(where)
            path = Path(module.__file__) if getattr(module, "__file__", None) else None
        else:
            module = usercode.import_file(path)
    except ModuleNotFoundError as error:
        raise CannotCheck(f"no module {where!r} (from target {target!r}): {error}") from None
    except SyntaxError as error:
        line = (error.text or "").rstrip()
        shown = path.name if path is not None else where
        raise CannotCheck(
            f"{shown} does not parse: SyntaxError: {error.msg}\n"
            f"  at {shown}, line {error.lineno}:\n    {line.strip()}"
        ) from None
    except Exception as error:
        shown = path.name if path is not None else where
        raise CannotCheck(f"importing {shown} failed: " + describe_exception(error, path)) from None
    finally:
        set_dtype = torch.get_default_dtype()
        torch.set_default_dtype(default_dtype)
    if set_dtype != default_dtype:
        module.__dict__[DTYPE_MARK] = set_dtype
    shown = path.name if path is not None else where
    if not hasattr(module, name):
        defined = sorted(
            attr for attr, value in vars(module).items()
            if (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == module.__name__
        )
        listing = ", ".join(defined) if defined else "none"
        raise CannotCheck(f"{shown} has no function {name!r}; functions defined there: {listing}")
    function = getattr(module, name)
    if not callable(function):
        raise CannotCheck(
            f"{name!r} in {shown} is a {type(function).__name__}, not a function or an Optimizer class"
        )
    return function


def dtype_set_by(function: Callable):
    """The default dtype the function's module set when it was imported (`load_function`), or None."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    namespace = getattr(inspect.unwrap(function), "__globals__", None) if not inspect.isclass(function) else None
    if namespace is None and module is not None:
        namespace = vars(module)
    return (namespace or {}).get(DTYPE_MARK)


def describe_exception(error: BaseException, user_file: str | Path | None) -> str:
    """``Type: message`` and the line of ``user_file`` it came from (else the innermost line)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = None
    if user_file is not None:
        user_path = Path(user_file).resolve()
        in_user_file = [frame for frame in frames if Path(frame.filename).resolve() == user_path]
        where = in_user_file[-1] if in_user_file else None
    if where is None and frames:
        where = frames[-1]
    text = f"{type(error).__name__}: {error}"
    if where is not None:
        text += "\n  at" + describe_frame(where)
    return text


def describe_frame(where: traceback.FrameSummary) -> str:
    """`` file.py, line N, in name:`` and the line itself on the next line, when its source is known."""
    text = f" {Path(where.filename).name}, line {where.lineno}, in {where.name}:"
    if where.line:
        text += f"\n    {where.line.strip()}"
    return text


def source_file(function: Callable) -> str | None:
    """The file a function was defined in, or None for builtins and C functions."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    return code.co_filename if code is not None else None
