"""Finding the user's function (``FILE.py:NAME``) and explaining its failures in its own terms.

Whatever goes wrong on the user's side (no such file, a syntax error, an
exception while importing or while training) becomes a
:class:`CannotCheck` whose message quotes the exception and the user's own
line; gdlab's and torch's frames are left out because they are not where the
fix is.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from typing import Callable

from gdlab.errors import GdlabError


class CannotCheck(GdlabError):
    """The function could not be checked: it could not be found, called or run to the end."""


def load_function(target: str) -> Callable:
    """Import ``FILE.py`` and return its attribute ``NAME``, from a target written ``FILE.py:NAME``.

    The file's folder is put first on ``sys.path`` while it is imported, so
    that it can import its neighbours as it would when run as a script.
    """
    path_text, separator, name = target.rpartition(":")
    if not separator or not path_text or not name:
        raise CannotCheck(
            f"target {target!r} must name a file and a function, like my_training.py:train_manual"
        )
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise CannotCheck(f"no file {str(path)!r} (from target {target!r}); check the path")
    path = path.resolve()
    module = _import_file(path)
    if not hasattr(module, name):
        functions = sorted(
            attr for attr, value in vars(module).items()
            if inspect.isfunction(value) and value.__module__ == module.__name__
        )
        listing = ", ".join(functions) if functions else "none"
        raise CannotCheck(f"{path.name} has no function {name!r}; functions defined there: {listing}")
    function = getattr(module, name)
    if not callable(function):
        raise CannotCheck(f"{name!r} in {path.name} is a {type(function).__name__}, not a function")
    return function


def _import_file(path: Path):
    module_name = f"gdlab_user_{path.stem}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CannotCheck(f"{path} cannot be imported as Python; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        sys.modules.pop(module_name, None)
        line = (error.text or "").rstrip()
        raise CannotCheck(
            f"{path.name} does not parse: SyntaxError: {error.msg}\n"
            f"  at {path.name}, line {error.lineno}:\n    {line.strip()}"
        ) from None
    except Exception as error:
        sys.modules.pop(module_name, None)
        raise CannotCheck(f"importing {path.name} failed: " + describe_exception(error, path)) from None
    finally:
        sys.path.remove(str(path.parent))
    return module


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
        text += f"\n  at {Path(where.filename).name}, line {where.lineno}, in {where.name}:"
        if where.line:
            text += f"\n    {where.line.strip()}"
    return text


def source_file(function: Callable) -> str | None:
    """The file a function was defined in, or None for builtins and C functions."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    return code.co_filename if code is not None else None
