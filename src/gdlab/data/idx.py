"""IDX files (the MNIST and Fashion-MNIST format), gzipped or plain.

Layout (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 sizes, then
``prod(sizes)`` values of ``<type>``, big-endian, in row-major order, and
nothing after them. MNIST images are ``0x00000803`` (uint8, 3 dims: N, 28,
28), labels ``0x00000801`` (uint8, 1 dim: N).

The header is the only thing trusted to size anything, and only within
`MAX_IDX_ITEMS` and `MAX_IDX_BYTES`: the reader allocates what the header
declares, reads exactly that much, then one byte more to tell an overlong
file. A gzip stream that inflates past its header (a "zip bomb") is refused
after that one byte, so memory stays at the declared size however large the
stream would grow.
"""

from __future__ import annotations

import gzip
import math
import os
import stat
import zlib
from pathlib import Path

import numpy as np

from gdlab.data.arrays import RawSplits
from gdlab.errors import GdlabError

# IDX type byte -> big-endian numpy dtype
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

# Caps on what an IDX header may declare. The official files hold 60,000 or
# 10,000 items (47 MB at most); the largest IDX files published anywhere,
# EMNIST ByClass, hold 697,932 images of 28 x 28 (547 MB). Both caps admit
# those and refuse a corrupt header (10**12 images) before anything is
# allocated for it.
MAX_IDX_ITEMS = 1_000_000  # the first dimension: images or labels
MAX_IDX_BYTES = 2**30  # all values together, 1 GiB

# values are read in chunks of this size: gzip inflates each into a temporary
# copy before it lands in the array, so that copy stays this small
_READ_CHUNK = 1 << 20


def open_decompressed(path: Path):
    """The file's bytes, decompressed if it is gzip (told by its first two bytes, not its name)."""
    with open(path, "rb") as probe:
        is_gzip = probe.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if is_gzip else open(path, "rb")


def _read_header(stream, path: Path, expected_magic: int | None) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and big-endian dtype an IDX header declares; the stream is left at the first value."""
    header = stream.read(4)
    if len(header) < 4:
        raise GdlabError(f"{path}: not an IDX file: it holds {len(header)} bytes, fewer than the 4-byte magic number")
    magic = int.from_bytes(header, "big")
    zeros, type_code, ndim = int.from_bytes(header[:2], "big"), header[2], header[3]
    if expected_magic is not None and magic != expected_magic:
        raise GdlabError(
            f"{path}: wrong IDX magic number: expected 0x{expected_magic:08x}, found 0x{magic:08x}"
            " (is this the right file, or a file in another format?)"
        )
    if zeros != 0 or type_code not in IDX_TYPES or ndim == 0:
        raise GdlabError(
            f"{path}: not an IDX file: magic number 0x{magic:08x} is not 0x0000TTDD with a known "
            f"type TT in {{{', '.join(f'{code:02x}' for code in IDX_TYPES)}}} and DD >= 1 dimensions"
        )
    dims_bytes = stream.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise GdlabError(
            f"{path}: truncated IDX header: expected {ndim} dimension sizes ({4 * ndim} bytes), "
            f"found {len(dims_bytes)} bytes"
        )
    return tuple(int(size) for size in np.frombuffer(dims_bytes, dtype=">u4")), IDX_TYPES[type_code]


def _check_file_size(stream, path: Path, shape: tuple[int, ...], data_bytes: int) -> None:
    """For a plain file on disk, compare its size with the header's before reading anything more."""
    status = os.fstat(stream.fileno())
    if not stat.S_ISREG(status.st_mode):
        return  # a pipe or device has no size to compare; the bounded read below still holds
    found = status.st_size - stream.tell()
    if found < data_bytes:
        raise GdlabError(
            f"{path}: truncated IDX file: header promises shape {shape} ({data_bytes} bytes "
            f"of data), found only {found} bytes; re-download or re-copy the file"
        )
    if found > data_bytes:
        raise GdlabError(
            f"{path}: IDX file longer than its header says: shape {shape} needs {data_bytes} "
            f"bytes of data, found {found}; the file is corrupt or not an IDX file, re-download it"
        )


def _check_caps(path: Path, shape: tuple[int, ...], data_bytes: int) -> None:
    if shape[0] > MAX_IDX_ITEMS or data_bytes > MAX_IDX_BYTES:
        raise GdlabError(
            f"{path}: IDX header declares shape {shape} ({shape[0]:,} items, {data_bytes:,} bytes of data), "
            f"more than gdlab reads from one IDX file (at most {MAX_IDX_ITEMS:,} items and {MAX_IDX_BYTES:,} "
            "bytes; the official files hold 60,000 or 10,000); the header is corrupt, re-download the file"
        )


def _read_values(stream, path: Path, shape: tuple[int, ...], data_bytes: int) -> np.ndarray:
    """Exactly ``data_bytes`` bytes as a uint8 array, then one byte more to refuse an overlong file."""
    values = np.empty(data_bytes, dtype=np.uint8)
    view = memoryview(values)
    filled = 0
    try:
        while filled < data_bytes:
            count = stream.readinto(view[filled : filled + _READ_CHUNK])
            if not count:
                break
            filled += count
        overlong = filled == data_bytes and stream.read(1) != b""
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise GdlabError(
            f"{path}: broken gzip stream after {filled} of the {data_bytes} bytes of data its header "
            f"declares for shape {shape} ({error}); the file is truncated or corrupt, re-download it"
        ) from None
    if filled < data_bytes:
        raise GdlabError(
            f"{path}: truncated IDX file: header promises shape {shape} ({data_bytes} bytes "
            f"of data), found only {filled} bytes; re-download or re-copy the file"
        )
    if overlong:
        raise GdlabError(
            f"{path}: IDX file longer than its header says: shape {shape} needs {data_bytes} bytes "
            f"of data, found more (reading stopped one byte past them); the file is corrupt, re-download it"
        )
    return values


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """The array stored in the IDX file at ``path``, in native byte order.

    ``expected_magic`` (e.g. ``0x00000803`` for MNIST images) is checked when
    given. Any deviation from the format -- unknown magic, a header beyond
    `MAX_IDX_ITEMS` / `MAX_IDX_BYTES`, a file shorter or longer than its
    header promises, a broken gzip stream -- raises GdlabError naming the
    file, what was expected and what was found. Memory used is the declared
    data size plus one read chunk, whatever the file holds.
    """
    path = Path(path)
    try:
        with open_decompressed(path) as stream:
            shape, dtype = _read_header(stream, path, expected_magic)
            data_bytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
            if not isinstance(stream, gzip.GzipFile):
                _check_file_size(stream, path, shape, data_bytes)
            _check_caps(path, shape, data_bytes)
            values = _read_values(stream, path, shape, data_bytes)
    except FileNotFoundError:
        raise GdlabError(f"{path}: file not found") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise GdlabError(f"{path}: broken gzip stream ({error}); the file is truncated or corrupt, re-download it") from None
    array = values.view(dtype).reshape(shape)
    if not dtype.isnative:
        array.byteswap(inplace=True)  # in place: no second copy of the data
    # a writable, native-endian view of the one buffer, which torch.from_numpy can share
    return array.view(dtype.newbyteorder("="))


IDX_UINT8_IMAGES = 0x00000803
IDX_UINT8_LABELS = 0x00000801


def read_idx_images_and_labels(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, H, W)`` uint8 and labels ``(N,)`` int64 from an MNIST-style pair of IDX files."""
    images = read_idx(images_path, expected_magic=IDX_UINT8_IMAGES)
    labels = read_idx(labels_path, expected_magic=IDX_UINT8_LABELS)
    if len(images) != len(labels):
        raise GdlabError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "the two files must come from the same release"
        )
    return images[:, None, :, :], labels.astype(np.int64)


def read_idx_dataset(train_images: Path, train_labels: Path, test_images: Path, test_labels: Path) -> RawSplits:
    """The four MNIST-style IDX files as train and test arrays."""
    train_x, train_y = read_idx_images_and_labels(train_images, train_labels)
    test_x, test_y = read_idx_images_and_labels(test_images, test_labels)
    return RawSplits(train_x, train_y, test_x, test_y)
