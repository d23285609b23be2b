"""CIFAR-10 "python version": five training batches, one test batch, a meta file.

Each batch (https://www.cs.toronto.edu/~kriz/cifar.html) is a Python 2
pickle of a dict: ``data`` is a uint8 array of shape (N, 3072) whose row
holds the 1024 red, then 1024 green, then 1024 blue values of a 32x32 image
in row-major order -- so ``reshape(N, 3, 32, 32)`` is already NCHW --
and ``labels`` is a list of N ints in 0..9. ``batches.meta`` holds
``label_names``. The files come as the folder ``cifar-10-batches-py/`` or
inside the official ``cifar-10-python.tar.gz``, which is read here member by
member without extracting anything to disk. All pickles go through
`safe_pickle`, which refuses any callable but numpy's array rebuilding and
reads at most `MAX_PICKLE_BYTES` of each.

The archive is trusted for nothing: each member is checked as it is met,
before its data is read or skipped -- regular files and folders only (no
links, devices), no absolute or ``..`` paths, no file above
`MAX_PICKLE_BYTES`, no name twice, at most `MAX_ARCHIVE_MEMBERS` members --
and the decompressed stream is read no further than `MAX_ARCHIVE_BYTES`, so
neither a gzip bomb nor a tar header declaring gigabytes (which `tarfile`
would read in one go) can take more memory than that.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from gdlab.data.arrays import RawSplits
from gdlab.data.idx import open_decompressed
from gdlab.data.registry import (
    CIFAR10_FILES,
    CIFAR10_FOLDER,
    CIFAR10_META,
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
)
from gdlab.data.safe_pickle import MAX_PICKLE_BYTES, load_numpy_pickle
from gdlab.errors import GdlabError

_PIXELS = 3 * 32 * 32

# The official archive holds 9 members (the folder, readme.html, 7 files)
# and inflates to 186 MB; these caps admit that with room and bound a tampered one.
MAX_ARCHIVE_MEMBERS = 64
MAX_ARCHIVE_BYTES = 512 * 2**20


def _text_keys(mapping: Any, where: str) -> dict[str, Any]:
    """The dict with byte-string keys decoded, so files pickled by Python 2 and 3 read alike."""
    if not isinstance(mapping, dict):
        raise GdlabError(f"{where}: expected a pickled dict, found {type(mapping).__name__}")
    if not all(isinstance(key, (str, bytes)) for key in mapping):
        raise GdlabError(f"{where}: expected a pickled dict with string keys, found keys of other types")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in mapping.items()}


def parse_batch(obj: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 from one unpickled batch."""
    batch = _text_keys(obj, where)
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        found = sorted(key[:40] for key in batch)[:10]
        raise GdlabError(f"{where}: not a CIFAR-10 batch: keys {missing} missing, found keys {found}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        found = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise GdlabError(f"{where}: 'data' must be a uint8 array of shape (N, {_PIXELS}), found {found}")
    labels = batch["labels"]
    # checked before numpy sees it: nested lists sharing one inner list cost a
    # pickle a few bytes and np.asarray gigabytes
    integer_array = isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu"
    if not integer_array and not (isinstance(labels, list) and all(type(label) is int for label in labels)):
        raise GdlabError(f"{where}: 'labels' must be a list of integers")
    if len(labels) != len(data):
        raise GdlabError(f"{where}: {len(data)} images but 'labels' has shape ({len(labels)},)")
    try:
        return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)
    except OverflowError:
        raise GdlabError(f"{where}: 'labels' must be integers in 0..9, found one beyond int64") from None


def parse_meta(obj: Any, where: str) -> tuple[str, ...]:
    """The class names stored in ``batches.meta``."""
    meta = _text_keys(obj, where)
    names = meta.get("label_names")
    if not isinstance(names, list) or not all(isinstance(name, (str, bytes)) for name in names):
        raise GdlabError(f"{where}: expected 'label_names', a list of strings")
    return tuple(name.decode("latin1") if isinstance(name, bytes) else name for name in names)


def _assemble(parsed: dict[str, Any]) -> RawSplits:
    train = [parsed[name] for name in CIFAR10_TRAIN_BATCHES]
    test_x, test_y = parsed[CIFAR10_TEST_BATCH]
    return RawSplits(
        train_x=np.concatenate([x for x, _ in train]),
        train_y=np.concatenate([y for _, y in train]),
        test_x=test_x,
        test_y=test_y,
        classes=parsed[CIFAR10_META],
    )


def _parse(name: str, obj: Any, where: str) -> Any:
    return parse_meta(obj, where) if name == CIFAR10_META else parse_batch(obj, where)


def read_cifar10_folder(folder: Path) -> RawSplits:
    """CIFAR-10 from the extracted ``cifar-10-batches-py`` folder."""
    parsed = {}
    for name in CIFAR10_FILES:
        path = folder / name
        try:
            with open(path, "rb") as stream:
                parsed[name] = _parse(name, load_numpy_pickle(stream, str(path)), str(path))
        except FileNotFoundError:
            raise GdlabError(
                f"{path}: file not found; a CIFAR-10 folder needs all of {', '.join(CIFAR10_FILES)}"
            ) from None
        except OSError as error:  # a folder or unreadable file where a batch should be
            raise GdlabError(f"{path}: cannot be read ({error}); copy the file again") from None
    return _assemble(parsed)


class _BoundedArchiveStream:
    """The decompressed archive as `tarfile` reads it, refusing to go past `MAX_ARCHIVE_BYTES`.

    A single read is held to `MAX_PICKLE_BYTES` too: `tarfile` reads a pax or
    GNU long-name header in one call of the size that header declares.
    """

    def __init__(self, stream, archive: Path):
        self._stream = stream
        self._archive = archive

    def _refuse_beyond(self, position: int, what: str) -> None:
        if position > MAX_ARCHIVE_BYTES:
            raise GdlabError(
                f"{self._archive}: {what} reaches byte {position:,} of the decompressed archive, past the "
                f"{MAX_ARCHIVE_BYTES:,} bytes gdlab reads from one (the official archive inflates to 186 MB); "
                "it is not the official CIFAR-10 archive, download it again"
            )

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > MAX_PICKLE_BYTES:
            raise GdlabError(
                f"{self._archive}: a tar header declares {size:,} bytes to read at once, more than the "
                f"{MAX_PICKLE_BYTES:,} of any member gdlab reads; the archive is corrupt, download it again"
            )
        self._refuse_beyond(self._stream.tell() + size, f"a read of {size:,} bytes")
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._refuse_beyond(offset, "a member")
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"a hard link to {member.linkname!r}"
    if member.isdev():
        return "a device or FIFO"
    return f"a member of tar type {member.type!r}"


def _check_member(member: tarfile.TarInfo, archive: Path, count: int) -> None:
    """Refuse a member the official archive never has, before its data is read or skipped."""
    fix = "it is not the official CIFAR-10 archive, download it again"
    if count > MAX_ARCHIVE_MEMBERS:
        raise GdlabError(f"{archive}: more than {MAX_ARCHIVE_MEMBERS} members (the official archive has 9); {fix}")
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise GdlabError(f"{archive}: member {member.name!r} points outside the archive's folder; {fix}")
    if not (member.isfile() or member.isdir()):
        raise GdlabError(f"{archive}: member {member.name!r} is {_member_kind(member)}, not a file or folder; {fix}")
    if member.size > MAX_PICKLE_BYTES:
        raise GdlabError(
            f"{archive}: member {member.name!r} declares {member.size:,} bytes, more than the "
            f"{MAX_PICKLE_BYTES:,} gdlab reads from one file (an official batch is 31 MB); {fix}"
        )


def read_cifar10_archive(archive: Path) -> RawSplits:
    """CIFAR-10 straight from ``cifar-10-python.tar.gz``, in one pass, nothing extracted to disk.

    Only regular-file members named ``cifar-10-batches-py/<file>`` are read;
    other regular files and folders (the archive's readme.html) are skipped;
    every member is checked first (see the module docstring).
    """
    wanted = {f"{CIFAR10_FOLDER}/{name}": name for name in CIFAR10_FILES}
    parsed = {}
    try:
        with open_decompressed(archive) as stream:
            with tarfile.open(fileobj=_BoundedArchiveStream(stream, archive), mode="r:") as tar:
                for count, member in enumerate(tar, start=1):
                    _check_member(member, archive, count)
                    name = wanted.get(member.name)
                    if name is None or member.isdir():
                        continue
                    where = f"{archive}:{member.name}"
                    if name in parsed:
                        raise GdlabError(f"{where}: the archive holds this member twice; download it again")
                    with tar.extractfile(member) as member_stream:
                        parsed[name] = _parse(name, load_numpy_pickle(member_stream, where), where)
    except FileNotFoundError:
        raise GdlabError(f"{archive}: file not found") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, RecursionError) as error:
        raise GdlabError(
            f"{archive}: not a readable .tar.gz archive ({type(error).__name__}: {error}); "
            "the file is truncated or corrupt, download it again"
        ) from None
    missing = [member for member, name in wanted.items() if name not in parsed]
    if missing:
        raise GdlabError(f"{archive}: the archive lacks {', '.join(missing)}; it is not the official CIFAR-10 archive")
    return _assemble(parsed)


def read_cifar10(source: Path) -> RawSplits:
    """CIFAR-10 from a ``cifar-10-batches-py`` folder or a ``cifar-10-python.tar.gz`` file."""
    return read_cifar10_folder(source) if source.is_dir() else read_cifar10_archive(source)
