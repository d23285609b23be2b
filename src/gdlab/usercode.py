"""Loading the user's own code: ``path/to/file.py:Name`` or ``package.module:Name``.

One loader for every place that runs code gdlab did not write (a study's own
optimizer, ``gdlab check``'s targets), so they find files the same way and
record the same identity for them: the file's SHA-256, which a study keeps
in its run records so that a changed file is not taken for the old one.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdlab.errors import GdlabError


@dataclass(frozen=True)
class UserObject:
    """What a target names: the object, the file it came from (None for an installed
    module) and that file's SHA-256 (hex), so a study can tell when it changed."""

    target: str
    value: Any
    path: Path | None
    sha256: str | None


def is_target(text: str) -> bool:
    """Whether ``text`` names user code (``something:Name``) rather than a built-in rule."""
    return isinstance(text, str) and ":" in text and not text.endswith(":")


def split_target(target: str) -> tuple[str, str]:
    where, separator, name = target.rpartition(":")
    if not separator or not where or not name.isidentifier():
        raise GdlabError(
            f"{target!r} must name a file or module and an object in it, like my_rules.py:Lion "
            f"or my_package.optimizers:Lion"
        )
    return where, name


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_path(where: str, base_dir: Path | None) -> Path | None:
    """The file ``where`` names (relative to ``base_dir``, then the working folder), or None
    when ``where`` is a dotted module name."""
    if not where.endswith(".py") and "/" not in where and "\\" not in where:
        return None
    path = Path(where).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).is_file():
        path = base_dir / path
    if not path.is_file():
        places = f" (looked relative to {base_dir} and to the working folder)" if base_dir else ""
        raise GdlabError(f"no file {where!r}{places}; check the path in {where}:...")
    return path.resolve()


def import_file(path: Path):
    """Import ``path`` as a fresh module, with its folder first on ``sys.path`` meanwhile
    (so it imports its neighbours as when run as a script)."""
    module_name = f"gdlab_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise GdlabError(f"{path} cannot be imported as Python; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        sys.path.remove(str(path.parent))
    return module


def load_object(target: str, base_dir: str | Path | None = None) -> UserObject:
    """The object ``target`` names. Errors in the user's file propagate as they are (the caller
    explains them in the user's terms); a missing file, module or name is a GdlabError."""
    where, name = split_target(target)
    path = resolve_path(where, Path(base_dir) if base_dir is not None else None)
    if path is None:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as error:
            raise GdlabError(f"no module {where!r} (from {target!r}): {error}; give a file path or an importable module") from None
        origin = getattr(module, "__file__", None)
        sha256 = file_sha256(Path(origin)) if origin and Path(origin).is_file() else None
    else:
        module = import_file(path)
        origin, sha256 = str(path), file_sha256(path)
    if not hasattr(module, name):
        defined = sorted(attr for attr in vars(module) if not attr.startswith("_"))
        raise GdlabError(f"{where} has no {name!r}; names defined there: {', '.join(defined) or 'none'}")
    return UserObject(target, getattr(module, name), Path(origin) if origin else None, sha256)


def target_of(value: Any, name: str) -> str:
    """The ``module:Name`` target that loads ``value`` again (a class defined in a notebook is
    ``__main__:Lion``); a GdlabError when it cannot be found again by its own name."""
    module_name, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", "")
    module = sys.modules.get(module_name) if module_name else None
    if module is None or not qualname.isidentifier() or getattr(module, qualname, None) is not value:
        raise GdlabError(
            f"optimizers[{name!r}] = {value!r} cannot be found again by its name: define it at the top level "
            f"of a module or notebook (not inside a function), or name its file in the study, like my_rules.py:Lion"
        )
    return f"{module_name}:{qualname}"


# Folders of rule files beside gdlab's own (os.pathsep-separated), read once per process:
# a new rule is one file there binding RULE to a RuleDeclaration, and it is registered everywhere.
RULE_PATH_VARIABLE = "GDLAB_RULE_PATH"
BUILTIN_RULES_FOLDER = Path(__file__).resolve().parent / "optim" / "rules"


def rule_files() -> list[Path]:
    """Every rule module: gdlab's (``gdlab/optim/rules/*.py``) and those in ``$GDLAB_RULE_PATH``'s
    folders; files starting with ``_`` are helpers. Torch-free, so ``gdlab --help`` can list rules."""
    folders = [BUILTIN_RULES_FOLDER]
    folders += [Path(entry) for entry in os.environ.get(RULE_PATH_VARIABLE, "").split(os.pathsep) if entry]
    files = []
    for folder in folders:
        if not folder.is_dir():
            raise GdlabError(f"${RULE_PATH_VARIABLE} names {str(folder)!r}, which is not a folder of rule files")
        files += sorted(path for path in folder.glob("*.py") if not path.name.startswith("_"))
    return files
