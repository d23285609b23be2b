"""Unpickling that can rebuild plain numpy arrays and nothing else, in bounded memory.

A pickle is a small program: its GLOBAL opcodes name any importable callable
and its REDUCE opcodes call them, so ``pickle.load`` on a tampered file runs
whatever the file says (``os.system``, ``builtins.eval``, ...). Every callable
a pickle can reach goes through ``Unpickler.find_class`` first (GLOBAL,
STACK_GLOBAL, INST, OBJ and the EXT opcodes alike). Ours answers only for the
exact names below -- what the official CIFAR-10 python batches contain -- and
refuses everything else before any of it is called. Dicts, lists, tuples,
strings, numbers need no callable at all.

The allowlist holds exact names, never whole modules: ``numpy.*`` would admit
gadgets such as ``numpy.load`` or attribute-walking tricks. Even numpy's own
rebuilding functions are too strong as they are: a crafted dtype state can
lay Python object pointers over the file's bytes (reading them crashes the
interpreter), and ``_reconstruct`` allocates whatever shape it is given. So
the names map to checked stand-ins that admit only what numpy itself writes
for a plain numeric array: ``_reconstruct(ndarray, (0,), b"b")``, a numeric
``dtype`` with a byte-order-only state, and an array state whose bytes are
exactly ``prod(shape) * itemsize`` long.

Memory: at most `MAX_PICKLE_BYTES` are read from the stream (one byte more
tells a larger file), and the pure-Python unpickler is used because the C one
sizes its memo table by the largest index the file names: ten bytes
(``LONG_BINPUT 100000000``) make it allocate 1.5 GB.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import IO, Any

import numpy as np

from gdlab.errors import GdlabError

# The largest pickle read: an official CIFAR-10 batch (10,000 images) is
# 31 MB; 64 MiB admits twice that and bounds what a tampered file can cost.
MAX_PICKLE_BYTES = 64 * 2**20

# The array-rebuilding function of the numpy that is installed: an ndarray
# pickles itself as ``_reconstruct(ndarray, (0,), b"b")`` plus a BUILD state,
# and a dtype as ``dtype("u1", 0, 1)`` plus a BUILD state.
_reconstruct = np.empty(0).__reduce__()[0]

# dtype kinds a data file may hold: bool, signed and unsigned ints, floats, complex
_NUMERIC_KINDS = "biufc"
_BYTE_ORDERS = ("<", ">", "|", "=")


class _Refused(pickle.UnpicklingError):
    """A pickle used an allowed name in a way numpy itself never writes."""


class _NdarrayName:
    """What ``numpy.ndarray`` unpickles to: the argument `_reconstruct_empty` expects, never a callable."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


NDARRAY_NAME = _NdarrayName()


def _reconstruct_empty(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    """numpy's ``_reconstruct``, admitting only the empty placeholder array numpy's own pickles ask for."""
    if subtype is not NDARRAY_NAME or shape != (0,) or typecode not in (b"b", "b"):
        raise _Refused(
            f"_reconstruct({subtype!r}, {shape!r:.40}, {typecode!r:.40}), "
            "where numpy writes only _reconstruct(numpy.ndarray, (0,), b'b')"
        )
    return _reconstruct(np.ndarray, (0,), b"b")


def _is_plain(dtype: Any) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind in _NUMERIC_KINDS and dtype.fields is None and dtype.subdtype is None


def _plain_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """``numpy.dtype(spec)`` for a numeric type named by a short string.

    Always a fresh copy, as numpy's own pickles ask (``copy=True``): BUILD
    then gives that copy its byte order.
    """
    if not isinstance(spec, str) or len(spec) > 8:
        raise _Refused(f"numpy.dtype({spec!r:.40}), where a data file names a short type code such as 'u1'")
    dtype = np.dtype(spec, align=bool(align), copy=True)
    if not _is_plain(dtype):
        raise _Refused(f"numpy.dtype({spec!r}) ({dtype}), where a data file holds plain numbers (bool, int, float, complex)")
    return dtype


def _set_dtype_state(dtype: np.dtype, state: Any) -> None:
    # numpy writes (3, byte_order, None, None, None, -1, -1, 0) for a numeric
    # type; anything else (fields, a subarray, flags) could make plain bytes
    # read as object pointers
    if not (
        isinstance(state, tuple)
        and len(state) == 8
        and state[0] == 3
        and state[1] in _BYTE_ORDERS
        and state[2:] == (None, None, None, -1, -1, 0)
    ):
        raise _Refused(f"the dtype state {state!r:.80}, where numpy writes (3, '<', None, None, None, -1, -1, 0) for numbers")
    dtype.__setstate__(state)


def _set_array_state(array: np.ndarray, state: Any) -> None:
    if not (isinstance(state, tuple) and len(state) == 5):
        raise _Refused(f"the array state {state!r:.80}, where numpy writes (1, shape, dtype, is_fortran, data)")
    version, shape, dtype, _is_fortran, data = state
    shape_ok = isinstance(shape, tuple) and all(type(size) is int and size >= 0 for size in shape)
    if version != 1 or not shape_ok or not _is_plain(dtype) or not isinstance(data, (bytes, str)):
        raise _Refused(f"an array state with shape {shape!r:.40}, dtype {dtype!r:.40} and data of type {type(data).__name__}, "
            "where numpy writes a tuple of sizes, a numeric dtype and bytes")
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(data) != expected:
        raise _Refused(f"an array of shape {shape} and dtype {dtype} with {len(data)} bytes of data, where it needs {expected}")
    array.__setstate__(state)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    # written by numpy < 2, which is what the official CIFAR-10 files contain
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_empty,
    # written by numpy >= 2
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_empty,
    ("numpy", "ndarray"): NDARRAY_NAME,
    ("numpy", "dtype"): _plain_dtype,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a callable outside ALLOWED_GLOBALS."""

    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module = module
        self.name = name


class _NumpyOnlyUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its memo is a dict (see above)
    dispatch = pickle._Unpickler.dispatch.copy()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def load_build(self) -> None:
        # BUILD may only finish what the stand-ins above made; the default
        # would call any object's __setstate__ or write into its __dict__
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, np.dtype):
            _set_dtype_state(target, state)
        elif isinstance(target, np.ndarray):
            _set_array_state(target, state)
        else:
            raise _Refused(f"BUILD on a {type(target).__name__}, where only numpy arrays and dtypes are rebuilt")

    dispatch[pickle.BUILD[0]] = load_build


def load_numpy_pickle(stream: IO[bytes], where: str, max_bytes: int = MAX_PICKLE_BYTES) -> Any:
    """The object pickled in ``stream``, admitting only plain numpy arrays as callables' results.

    Python 2 byte strings are decoded as latin-1 (numpy's documented choice
    for Python 2 pickles: array buffers survive the round trip unchanged).
    ``where`` names the file in error messages. At most ``max_bytes`` are
    read; a larger file, bytes after the pickle's end, a pickle that names
    any other callable (refused before it is called) or uses numpy's in a way
    numpy never writes, and a truncated or malformed pickle all raise
    GdlabError.
    """
    try:
        payload = stream.read(max_bytes + 1)
    except (OSError, EOFError, ValueError) as error:  # a broken gzip stream underneath, a closed file
        raise GdlabError(
            f"{where}: not readable ({type(error).__name__}: {error}); the file is truncated or corrupt, download it again"
        ) from None
    if len(payload) > max_bytes:
        raise GdlabError(
            f"{where}: holds more than {max_bytes:,} bytes, the most gdlab reads from one pickle "
            "(an official CIFAR-10 batch is 31 MB); the file is not an original batch, download it again"
        )
    buffer = io.BytesIO(payload)
    try:
        obj = _NumpyOnlyUnpickler(buffer, encoding="latin1").load()
    except RefusedGlobal as refused:
        allowed = ", ".join(f"{module}.{name}" for module, name in ALLOWED_GLOBALS)
        raise GdlabError(
            f"{where}: refused to unpickle: the file names the callable {refused.module}.{refused.name}, "
            f"which a CIFAR batch never needs (allowed: {allowed}); nothing from the file was run. "
            "The file is not an original CIFAR-10 batch: download it again from the official source."
        ) from None
    except _Refused as refused:
        raise GdlabError(
            f"{where}: refused to unpickle: the file uses {refused}; no code from the file was run. "
            "The file is not an original CIFAR-10 batch: download it again from the official source."
        ) from None
    except Exception as error:  # a malformed pickle can fail in any allowed constructor
        raise GdlabError(
            f"{where}: not a readable pickle ({type(error).__name__}: {error}); "
            "the file is truncated or corrupt, download it again"
        ) from None
    trailing = len(payload) - buffer.tell()
    if trailing:
        raise GdlabError(
            f"{where}: {trailing} bytes follow the end of the pickle ({buffer.tell()} bytes); "
            "the file is corrupt or not a CIFAR-10 batch, download it again"
        )
    return obj
