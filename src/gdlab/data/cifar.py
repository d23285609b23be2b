"""CIFAR-10 "python version": five training batches, one test batch, a meta file.

Each batch (https://www.cs.toronto.edu/~kriz/cifar.html) is a Python 2
pickle of a dict: ``data`` is a uint8 array of shape (N, 3072) whose row
holds the 1024 red, then 1024 green, then 1024 blue values of a 32x32 image
in row-major order -- so ``reshape(N, 3, 32, 32)`` is already NCHW --
and ``labels`` is a list of N ints in 0..9. ``batches.meta`` holds
``label_names``. The files come as the folder ``cifar-10-batches-py/`` or
inside the official ``cifar-10-python.tar.gz``, which is read here member by
member without extracting anything to disk. All pickles go through
`safe_pickle`, which refuses any callable but numpy's array rebuilding.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from gdlab.data.arrays import RawSplits
from gdlab.data.registry import (
    CIFAR10_FILES,
    CIFAR10_FOLDER,
    CIFAR10_META,
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
)
from gdlab.data.safe_pickle import load_numpy_pickle
from gdlab.errors import GdlabError

_PIXELS = 3 * 32 * 32


def _text_keys(mapping: Any, where: str) -> dict[str, Any]:
    """The dict with byte-string keys decoded, so files pickled by Python 2 and 3 read alike."""
    if not isinstance(mapping, dict):
        raise GdlabError(f"{where}: expected a pickled dict, found {type(mapping).__name__}")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in mapping.items()}


def parse_batch(obj: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 from one unpickled batch."""
    batch = _text_keys(obj, where)
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        raise GdlabError(f"{where}: not a CIFAR-10 batch: keys {missing} missing, found keys {sorted(map(str, batch))}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        found = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise GdlabError(f"{where}: 'data' must be a uint8 array of shape (N, {_PIXELS}), found {found}")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise GdlabError(f"{where}: 'labels' must be a list of integers") from None
    if labels.shape != (len(data),):
        raise GdlabError(f"{where}: {len(data)} images but 'labels' has shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


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
    return _assemble(parsed)


def read_cifar10_archive(archive: Path) -> RawSplits:
    """CIFAR-10 straight from ``cifar-10-python.tar.gz``, in one pass, nothing extracted to disk.

    Only regular-file members named ``cifar-10-batches-py/<file>`` are read;
    every other member (the archive's readme.html, anything added) is skipped.
    """
    wanted = {f"{CIFAR10_FOLDER}/{name}": name for name in CIFAR10_FILES}
    parsed = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = wanted.get(member.name)
                if name is None or not member.isfile():
                    continue
                where = f"{archive}:{member.name}"
                with tar.extractfile(member) as stream:
                    parsed[name] = _parse(name, load_numpy_pickle(stream, where), where)
    except FileNotFoundError:
        raise GdlabError(f"{archive}: file not found") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
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
