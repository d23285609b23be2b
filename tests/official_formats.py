"""Write small files in the official dataset formats, for tests.

Everything here writes bytes the way the original publishers did, written
from the format descriptions, never through gdlab's own readers:

- IDX (http://yann.lecun.com/exdb/mnist/): magic 0x0000TTDD, big-endian
  uint32 sizes, big-endian values; gzipped or plain.
- CIFAR-10 python batches (https://www.cs.toronto.edu/~kriz/cifar.html):
  Python 2 pickles, protocol 2, of a dict with byte-string keys
  ``batch_label``, ``labels`` (list of int), ``data`` (uint8 numpy array
  N x 3072, R then G then B planes, row-major) and ``filenames``; and
  ``batches.meta`` with ``label_names``. Python 2 wrote its ``str`` (bytes)
  with the SHORT_BINSTRING / BINSTRING opcodes and numpy < 2 named its
  array rebuilder ``numpy.core.multiarray._reconstruct``; Python 3's own
  protocol-2 pickler writes neither (it routes bytes through
  ``_codecs.encode``), so `python2_pickle` emits them itself.
- The official ``cifar-10-python.tar.gz``: the batch files under
  ``cifar-10-batches-py/`` plus a ``readme.html``.
- Streams for hostile files: a header (`idx_header`, `tar_header`) declares
  one size and `write_gzip` inflates to another, written piece by piece so a
  200 MB bomb costs the test a few hundred kilobytes of disk and no memory.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
                  np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

NUMPY_1_MODULE = "numpy.core.multiarray"  # what the official CIFAR files name
NUMPY_2_MODULE = "numpy._core.multiarray"


# ---------------------------------------------------------------- IDX

def idx_header(dtype, shape: tuple[int, ...]) -> bytes:
    """The IDX magic number and sizes declaring ``shape`` values of ``dtype`` (the values not included)."""
    return bytes([0, 0, IDX_TYPE_CODES[np.dtype(dtype)], len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: header then big-endian values."""
    array = np.asarray(array)
    return idx_header(array.dtype, array.shape) + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_idx_dataset(folder: Path, splits: dict[str, np.ndarray], compress: bool = True) -> list[Path]:
    """The four MNIST IDX files (images ``(N, 28, 28)`` uint8, labels uint8) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    arrays = (splits["train_x"], splits["train_y"], splits["test_x"], splits["test_y"])
    return [
        write_idx(folder / f"{stem}{suffix}", np.asarray(array, dtype=np.uint8), compress)
        for stem, array in zip(IDX_STEMS, arrays, strict=True)
    ]


def random_images(n_train: int, n_test: int, shape: tuple[int, ...], classes: int = 10, seed: int = 0):
    """Random uint8 images and labels; every class present when n >= classes."""
    rng = np.random.default_rng(seed)

    def labels(n):
        return rng.permutation(np.arange(n) % classes).astype(np.int64)

    return {
        "train_x": rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8),
        "train_y": labels(n_train),
        "test_x": rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8),
        "test_y": labels(n_test),
    }


# ---------------------------------------------------------------- Python 2 pickles

class _Python2Pickler(pickle._Pickler):
    """Protocol 2 the way Python 2's cPickle wrote it for byte strings and numpy objects."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, stream, numpy_module: str):
        super().__init__(stream, protocol=2)
        self.numpy_names = {
            id(np.empty(0).__reduce__()[0]): (numpy_module, "_reconstruct"),
            id(np.ndarray): ("numpy", "ndarray"),
            id(np.dtype): ("numpy", "dtype"),
        }

    def save_python2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str
    dispatch[str] = save_python2_str

    def save_global(self, obj, name=None):
        if id(obj) in self.numpy_names:
            module, qualified = self.numpy_names[id(obj)]
            self.write(pickle.GLOBAL + f"{module}\n{qualified}\n".encode("ascii"))
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    dispatch[type] = save_global


def python2_pickle(obj, numpy_module: str = NUMPY_1_MODULE) -> bytes:
    """``obj`` pickled as Python 2 + numpy would have (str and bytes both become Python 2 ``str``)."""
    stream = io.BytesIO()
    _Python2Pickler(stream, numpy_module).dump(obj)
    return stream.getvalue()


# ---------------------------------------------------------------- CIFAR-10

def cifar_batch_bytes(images: np.ndarray, labels, batch_label: str, numpy_module: str = NUMPY_1_MODULE) -> bytes:
    """A CIFAR batch: ``images`` uint8 (N, 3, 32, 32) stored as the official N x 3072 rows."""
    data = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), 3072)
    batch = {
        b"batch_label": batch_label.encode(),
        b"labels": [int(label) for label in labels],
        b"data": data,
        b"filenames": [f"image_{index:05d}.png".encode() for index in range(len(images))],
    }
    return python2_pickle(batch, numpy_module)


def cifar_meta_bytes(label_names=CIFAR10_LABEL_NAMES) -> bytes:
    meta = {b"num_cases_per_batch": 10000, b"label_names": [name.encode() for name in label_names], b"num_vis": 3072}
    return python2_pickle(meta)


def cifar10_files(splits: dict[str, np.ndarray], numpy_module: str = NUMPY_1_MODULE,
                  label_names=CIFAR10_LABEL_NAMES) -> dict[str, bytes]:
    """File name -> bytes for the seven CIFAR-10 files; the train split is cut into five equal batches."""
    train_x = np.array_split(splits["train_x"], 5)
    train_y = np.array_split(splits["train_y"], 5)
    files = {
        f"data_batch_{number}": cifar_batch_bytes(x, y, f"training batch {number} of 5", numpy_module)
        for number, (x, y) in enumerate(zip(train_x, train_y, strict=True), start=1)
    }
    files["test_batch"] = cifar_batch_bytes(splits["test_x"], splits["test_y"], "testing batch 1 of 1", numpy_module)
    files["batches.meta"] = cifar_meta_bytes(label_names)
    return files


def write_cifar10_folder(parent: Path, splits, **options) -> Path:
    """``parent/cifar-10-batches-py/`` with the seven files; returns that folder."""
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in cifar10_files(splits, **options).items():
        (folder / name).write_bytes(data)
    return folder


def tar_header(name: str, size: int, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> bytes:
    """One 512-byte ustar header declaring a member of ``size`` bytes, whatever data follows it."""
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, kind, linkname
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def write_tar_gz_entries(path: Path, entries: Iterable[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A .tar.gz of any members, links and odd names included, exactly as given."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def tar_entry(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, data


def write_tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_cifar10_archive(path: Path, splits, **options) -> Path:
    """The official archive layout: ``cifar-10-batches-py/<file>`` members and a readme.html."""
    members = {"cifar-10-batches-py/readme.html": b"<html>CIFAR-10</html>"}
    members.update({f"cifar-10-batches-py/{name}": data for name, data in cifar10_files(splits, **options).items()})
    return write_tar_gz(path, members)


# ---------------------------------------------------------------- gzip streams

def zeros(count: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """``count`` zero bytes, a chunk at a time."""
    block = bytes(chunk)
    for start in range(0, count, chunk):
        yield block[: min(chunk, count - start)]


def write_gzip(path: Path, pieces: Iterable[bytes], level: int = 1) -> Path:
    """One gzip member (as ``gzip`` writes it) of the pieces in order, compressed as they come."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: gzip header and trailer
    with open(path, "wb") as stream:
        for piece in pieces:
            stream.write(compressor.compress(piece))
        stream.write(compressor.flush())
    return path
