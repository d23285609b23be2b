"""IDX files (the MNIST and Fashion-MNIST format), gzipped or plain.

Layout (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 sizes, then
``prod(sizes)`` values of ``<type>``, big-endian, in row-major order, and
nothing after them. MNIST images are ``0x00000803`` (uint8, 3 dims: N, 28,
28), labels ``0x00000801`` (uint8, 1 dim: N).
"""

from __future__ import annotations

import gzip
import math
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


def _open(path: Path):
    """The file's bytes, decompressed if it is gzip (told by its first two bytes, not its name)."""
    with open(path, "rb") as probe:
        is_gzip = probe.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if is_gzip else open(path, "rb")


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """The array stored in the IDX file at ``path``, in native byte order.

    ``expected_magic`` (e.g. ``0x00000803`` for MNIST images) is checked when
    given. Any deviation from the format -- unknown magic, a file shorter or
    longer than its header promises, a broken gzip stream -- raises GdlabError
    naming the file, what was expected and what was found.
    """
    path = Path(path)
    try:
        with _open(path) as stream:
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
            shape = tuple(int(size) for size in np.frombuffer(dims_bytes, dtype=">u4"))
            dtype = IDX_TYPES[type_code]
            expected_bytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
            # read what is there rather than what the header claims: a corrupt
            # header must not make us allocate gigabytes
            payload = stream.read()
            if len(payload) < expected_bytes:
                raise GdlabError(
                    f"{path}: truncated IDX file: header promises shape {shape} ({expected_bytes} bytes "
                    f"of data), found only {len(payload)} bytes; re-download or re-copy the file"
                )
            if len(payload) > expected_bytes:
                raise GdlabError(
                    f"{path}: IDX file longer than its header says: shape {shape} needs {expected_bytes} "
                    f"bytes of data, found {len(payload)}"
                )
    except FileNotFoundError:
        raise GdlabError(f"{path}: file not found") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise GdlabError(f"{path}: broken gzip stream ({error}); the file is truncated or corrupt, re-download it") from None
    # astype copies into a writable, native-endian array that torch.from_numpy can share
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


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
