"""Unpickling that can rebuild numpy arrays and nothing else.

A pickle is a small program: its GLOBAL opcodes name any importable callable
and its REDUCE opcodes call them, so ``pickle.load`` on a tampered file runs
whatever the file says (``os.system``, ``builtins.eval``, ...). Every callable
a pickle can reach goes through ``Unpickler.find_class`` first (GLOBAL,
STACK_GLOBAL, INST, OBJ and the EXT opcodes alike). Ours answers only for the
exact names below -- what the official CIFAR-10 python batches contain -- and
refuses everything else before any of it is called. Dicts, lists, tuples,
strings, numbers need no callable at all.

The allowlist holds exact names, never whole modules: ``numpy.*`` would admit
gadgets such as ``numpy.load`` or attribute-walking tricks.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

import numpy as np

from gdlab.errors import GdlabError

# The array-rebuilding function of the numpy that is installed: an ndarray
# pickles itself as ``_reconstruct(ndarray, (0,), b"b")`` plus a BUILD state,
# and a dtype as ``dtype("u1", 0, 1)`` plus a BUILD state.
_reconstruct = np.empty(0).__reduce__()[0]

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    # written by numpy < 2, which is what the official CIFAR-10 files contain
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    # written by numpy >= 2
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a callable outside ALLOWED_GLOBALS."""

    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module = module
        self.name = name


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None


def load_numpy_pickle(stream: IO[bytes], where: str) -> Any:
    """The object pickled in ``stream``, admitting only numpy's array-rebuilding callables.

    Python 2 byte strings are decoded as latin-1 (numpy's documented choice
    for Python 2 pickles: array buffers survive the round trip unchanged).
    ``where`` names the file in error messages. A pickle that names any
    other callable raises GdlabError before that callable is called; a
    truncated or malformed pickle raises GdlabError too.
    """
    try:
        return _NumpyOnlyUnpickler(stream, encoding="latin1").load()
    except RefusedGlobal as refused:
        allowed = ", ".join(f"{module}.{name}" for module, name in ALLOWED_GLOBALS)
        raise GdlabError(
            f"{where}: refused to unpickle: the file names the callable {refused.module}.{refused.name}, "
            f"which a CIFAR batch never needs (allowed: {allowed}); nothing from the file was run. "
            "The file is not an original CIFAR-10 batch: download it again from the official source."
        ) from None
    except Exception as error:  # a malformed pickle can fail in any allowed constructor
        raise GdlabError(
            f"{where}: not a readable pickle ({type(error).__name__}: {error}); "
            "the file is truncated or corrupt, download it again"
        ) from None
