"""Readers of user files read what the header declares and no more: bombs, lies, hostile archives.

The memory tests read each hostile file in one child process and measure its
peak resident memory (``ru_maxrss``) above the baseline of an interpreter that
has already imported gdlab and torch. Each bomb inflates to, or makes the
reader allocate, several times the bound (200 MB, 320 MB, 800 MB, 64 MiB); a
reader that trusts the stream instead of the header fails it. Files crafted
to crash numpy are read there too, so a crash fails a test, not the session.
"""

import gzip
import io
import json
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

import gdlab.data
import gdlab.data.cifar
from gdlab.data.cifar import read_cifar10_archive
from gdlab.data.idx import MAX_IDX_BYTES, MAX_IDX_ITEMS, read_idx
from gdlab.data.mnist_5k import read_mnist_5k
from gdlab.data.safe_pickle import MAX_PICKLE_BYTES, load_numpy_pickle
from gdlab.data.sources import locate
from gdlab.errors import GdlabError
from official_formats import (
    cifar10_files,
    idx_bytes,
    idx_header,
    python2_pickle,
    random_images,
    tar_entry,
    tar_header,
    write_gzip,
    write_tar_gz,
    write_idx_dataset,
    write_tar_gz_entries,
    zeros,
)

MIB = 2**20
BOMB = 200 * MIB  # what each bomb inflates to, or declares
# Peak memory a refused bomb may add: a fraction of BOMB, and room for
# mnist-5k's cap (16 MiB of text read before refusing).
BOMB_BOUND_MIB = 48
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_TRAIN_IMAGES = FASHION_MNIST / "train-images-idx3-ubyte.gz"
FASHION_TRAIN_IMAGE_BYTES = 60_000 * 28 * 28


@pytest.fixture(autouse=True)
def isolated_data_places(tmp_path, monkeypatch):
    monkeypatch.delenv("GDLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))


class _Reduce:
    """Pickles as ``func(*args)`` then BUILD ``state``: how a crafted pickle drives numpy's rebuilders."""

    def __init__(self, func, args, state):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return self.func, self.args, self.state


_RECONSTRUCT = np.empty(0).__reduce__()[0]


def _batch(labels) -> bytes:
    return python2_pickle({b"data": np.zeros((5, 3072), np.uint8), b"labels": labels, b"batch_label": b"x"})


def _tar_end(data_size: int) -> bytes:
    """Padding of a member's data to a 512-byte block, then the two zero blocks that end an archive."""
    return bytes(-data_size % 512) + bytes(1024)


# ---------------------------------------------------------------- the hostile files


def _write_bombs(folder: Path) -> list[tuple[str, str, str]]:
    """(case, reader, path) for each hostile file, in the order the child reads them."""
    cases = []

    idx_bomb = folder / "train-images-idx3-ubyte.gz"
    write_gzip(idx_bomb, [idx_header(np.uint8, (10, 28, 28)), bytes(10 * 28 * 28), *zeros(BOMB)])
    cases.append(("idx-gzip-bomb", "idx", idx_bomb))

    # a batch member whose tar header declares BOMB bytes: a BINSTRING of that length
    member_bomb = folder / "member-bomb" / "cifar-10-python.tar.gz"
    member_bomb.parent.mkdir()
    string_length = BOMB
    member_size = 3 + 4 + string_length + 1
    write_gzip(member_bomb, [
        tar_header("cifar-10-batches-py/data_batch_1", member_size),
        b"\x80\x02T" + struct.pack("<i", string_length), *zeros(string_length), b".",
        _tar_end(member_size),
    ])
    cases.append(("tar-member-bomb", "cifar", member_bomb))

    # a pax extended header declaring BOMB bytes, which tarfile reads in one call
    pax_bomb = folder / "pax-bomb" / "cifar-10-python.tar.gz"
    pax_bomb.parent.mkdir()
    write_gzip(pax_bomb, [tar_header("././@PaxHeader", BOMB, kind=tarfile.XHDTYPE), *zeros(BOMB), _tar_end(BOMB)])
    cases.append(("tar-pax-bomb", "cifar", pax_bomb))

    # ten bytes: PROTO 2, NONE, LONG_BINPUT 20,000,000, STOP. The C unpickler
    # sizes its memo table to twice that index, 8 bytes a slot: 320 MB.
    memo_bomb = folder / "pickle-memo-bomb"
    memo_bomb.write_bytes(b"\x80\x02N" + b"r" + struct.pack("<I", 20_000_000) + b".")
    cases.append(("pickle-memo-bomb", "cifar-batch", memo_bomb))

    # labels as 100 references to 1,000 references to one list of 1,000 zeros:
    # a few kB of pickle, 10**8 integers (800 MB) once numpy flattens it
    inner = [0] * 1000
    middle = [inner] * 1000
    nested = folder / "nested-labels"
    nested.write_bytes(_batch([middle] * 100))
    cases.append(("nested-labels", "cifar-batch", nested))

    # numpy's own rebuilders, driven to lay object pointers over the file's bytes:
    # a void dtype whose field is an object, filled with 0x01 bytes
    pointer_dtype = _Reduce(np.dtype, ("V8", 0, 1), (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))
    pointers = folder / "object-pointers"
    pointers.write_bytes(_batch(_Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (5,), pointer_dtype, False, b"\x01" * 40))))
    cases.append(("object-pointers", "cifar-batch", pointers))

    # an object array of a million elements whose state lists one
    object_array = folder / "object-array-short-list"
    object_array.write_bytes(_batch(_Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (10**6,), np.dtype("O"), False, [None]))))
    cases.append(("object-array-short-list", "cifar-batch", object_array))

    # a uint8 dtype whose state sets numpy's "holds objects" flags
    flagged = folder / "flagged-dtype"
    flagged_dtype = _Reduce(np.dtype, ("u1", 0, 1), (3, "|", None, None, None, -1, -1, 63))
    flagged.write_bytes(_batch(_Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (5,), flagged_dtype, False, b"\x01" * 5))))
    cases.append(("flagged-dtype", "cifar-batch", flagged))

    csv_bomb = folder / "mnist_5k.csv.gz"
    row = ("0," * 784 + "0\n").encode()
    write_gzip(csv_bomb, [row] * (64 * MIB // len(row)))
    cases.append(("csv-gzip-bomb", "mnist-5k", csv_bomb))

    return [(case, reader, str(path)) for case, reader, path in cases]


_CHILD = r"""
import gc, json, resource, sys
from pathlib import Path
import gdlab.data  # imports torch: part of the baseline
from gdlab.data.cifar import parse_batch, read_cifar10
from gdlab.data.idx import read_idx
from gdlab.data.mnist_5k import read_mnist_5k
from gdlab.data.safe_pickle import load_numpy_pickle
from gdlab.errors import GdlabError

def read_batch(path):
    with open(path, "rb") as stream:
        return parse_batch(load_numpy_pickle(stream, str(path)), str(path))

READERS = {"idx": read_idx, "cifar": read_cifar10, "cifar-batch": read_batch, "mnist-5k": read_mnist_5k}

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

baseline = peak_mib()
for case, reader, path in json.loads(sys.argv[1]):
    try:
        result = READERS[reader](Path(path))
        outcome = "loaded"
        message = repr([getattr(part, "shape", None) for part in (result if isinstance(result, tuple) else (result,))])
    except GdlabError as error:
        outcome, message = "refused", str(error)
    result = None
    gc.collect()
    print(json.dumps({"case": case, "outcome": outcome, "message": message, "growth_mib": peak_mib() - baseline}), flush=True)
"""


@pytest.fixture(scope="module")
def child_reads(tmp_path_factory):
    """Each case's outcome, message and peak memory growth, read in order by one child process.

    Peak memory only grows, so a case's growth bounds its own use from above;
    the cases come in order of what they may use, bombs first.
    """
    folder = tmp_path_factory.mktemp("bombs")
    cases = _write_bombs(folder)
    if FASHION_TRAIN_IMAGES.is_file():
        cases.append(("fashion-mnist-train-images", "idx", str(FASHION_TRAIN_IMAGES)))
    bundled = locate("mnist-5k").source
    cases.append(("mnist-5k-bundled", "mnist-5k", str(bundled)))
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(cases)], capture_output=True, text=True, timeout=300
    )
    results = {}
    for line in completed.stdout.splitlines():
        record = json.loads(line)
        results[record["case"]] = record
    return results, completed


def _result(child_reads, case):
    results, completed = child_reads
    assert case in results, (
        f"the child stopped before {case!r} (exit code {completed.returncode}; a negative one is a crash):\n"
        f"{completed.stderr[-3000:]}"
    )
    return results[case]


def _refused_within_bound(child_reads, case, *fragments):
    record = _result(child_reads, case)
    assert record["outcome"] == "refused", record
    for fragment in fragments:
        assert fragment in record["message"], (fragment, record["message"])
    assert record["growth_mib"] < BOMB_BOUND_MIB, record
    return record


def test_idx_gzip_bomb_is_refused_after_the_declared_bytes(child_reads):
    record = _refused_within_bound(
        child_reads, "idx-gzip-bomb", "train-images-idx3-ubyte.gz: IDX file longer than its header says",
        "shape (10, 28, 28) needs 7840 bytes", "re-download",
    )
    assert record["growth_mib"] < 8  # the declared 7840 bytes and a 1 MiB read chunk


def test_tar_member_declaring_200_mb_is_refused_before_its_data_is_read(child_reads):
    _refused_within_bound(
        child_reads, "tar-member-bomb",
        f"member 'cifar-10-batches-py/data_batch_1' declares {BOMB + 8:,} bytes, more than the {MAX_PICKLE_BYTES:,}",
        "download it again",
    )


def test_tar_pax_header_declaring_200_mb_is_refused_before_tarfile_reads_it(child_reads):
    _refused_within_bound(child_reads, "tar-pax-bomb", f"a tar header declares {BOMB:,} bytes to read at once")


def test_pickle_memo_index_costs_no_memory(child_reads):
    _refused_within_bound(child_reads, "pickle-memo-bomb", "pickle-memo-bomb: expected a pickled dict, found NoneType")


def test_nested_labels_are_refused_before_numpy_flattens_them(child_reads):
    _refused_within_bound(child_reads, "nested-labels", "nested-labels: 'labels' must be a list of integers")


@pytest.mark.parametrize(
    "case, refusal",
    [
        ("object-pointers", "numpy.dtype('V8') (|V8), where a data file holds plain numbers"),
        ("object-array-short-list", "numpy.dtype('O8') (object), where a data file holds plain numbers"),
        ("flagged-dtype", "the dtype state (3, '|', None, None, None, -1, -1, 63)"),
    ],
)
def test_numpy_rebuilders_cannot_make_object_pointers(child_reads, case, refusal):
    # the unchecked rebuilders crash the interpreter on these (a segfault, exit code -11)
    _refused_within_bound(child_reads, case, f"{case}: refused to unpickle: the file uses {refusal}", "no code from the file was run")


def test_csv_gzip_bomb_is_refused_at_the_cap(child_reads):
    _refused_within_bound(child_reads, "csv-gzip-bomb", "mnist_5k.csv.gz: inflates to more than 16,777,216 bytes")


@pytest.mark.skipif(not FASHION_TRAIN_IMAGES.is_file(), reason=f"{FASHION_MNIST} missing: apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_reads_in_about_its_declared_size(child_reads):
    record = _result(child_reads, "fashion-mnist-train-images")
    assert record["outcome"] == "loaded" and record["message"] == "[(60000, 28, 28)]", record
    # one buffer of the declared 47 MB (44.9 MiB), swapped and viewed in place
    assert record["growth_mib"] < 1.25 * FASHION_TRAIN_IMAGE_BYTES / MIB + 8, record


def test_bundled_mnist_5k_still_loads(child_reads):
    record = _result(child_reads, "mnist-5k-bundled")
    assert record["outcome"] == "loaded", record
    assert record["message"] == "[(4000, 1, 28, 28), (4000,), (1000, 1, 28, 28), (1000,), None]", record


# ---------------------------------------------------------------- IDX: overlong, truncated, lying


def test_overlong_idx_names_declared_and_found_sizes(tmp_path):
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8)) + b"\x00" * 5
    (tmp_path / "plain").write_bytes(data)
    with pytest.raises(GdlabError, match=r"plain: IDX file longer than its header says: shape \(10, 28, 28\) needs 7840 bytes of data, found 7845; .*re-download"):
        read_idx(tmp_path / "plain")
    (tmp_path / "packed.gz").write_bytes(gzip.compress(data))
    with pytest.raises(GdlabError, match=r"packed.gz: IDX file longer than its header says: shape \(10, 28, 28\) needs 7840 bytes of data, found more .*re-download"):
        read_idx(tmp_path / "packed.gz")


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_idx_names_declared_and_found_sizes(tmp_path, compress):
    data = idx_bytes(np.zeros(1000, np.int32))[:-10]  # 4000 bytes declared, 3990 present
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(GdlabError, match=r"labels: truncated IDX file: header promises shape \(1000,\) \(4000 bytes of data\), found only 3990 bytes; re-download"):
        read_idx(path)


def test_broken_gzip_stream_says_how_far_it_got(tmp_path):
    whole = gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)))
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(GdlabError, match=r"cut.gz: broken gzip stream after \d+ of the 39200 bytes of data its header declares for shape \(50, 28, 28\) .*re-download"):
        read_idx(tmp_path / "cut.gz")


@pytest.mark.parametrize(
    "shape, declared",
    [
        ((2**32 - 1, 28, 28), r"\(4294967295, 28, 28\) \(4,294,967,295 items"),
        ((MAX_IDX_ITEMS + 1,), r"\(1000001,\) \(1,000,001 items"),
        ((1000, 1100, 1000), r"\(1000, 1100, 1000\) \(1,000 items, 1,100,000,000 bytes of data\)"),
    ],
)
def test_absurd_idx_header_is_refused_before_allocating(tmp_path, shape, declared):
    # gzipped, so the file's own size tells nothing: only the caps stand between the header and an allocation
    path = write_gzip(tmp_path / "absurd.gz", [idx_header(np.uint8, shape), bytes(1000)])
    started = time.perf_counter()
    with pytest.raises(GdlabError, match=rf"absurd.gz: IDX header declares shape {declared}.*at most 1,000,000 items and {MAX_IDX_BYTES:,} bytes.*re-download"):
        read_idx(path)
    assert time.perf_counter() - started < 1


def test_idx_file_at_the_item_cap_loads(tmp_path):
    labels = np.arange(MAX_IDX_ITEMS, dtype=np.int64) % 10
    path = write_gzip(tmp_path / "labels.gz", [idx_bytes(labels.astype(np.uint8))])
    np.testing.assert_array_equal(read_idx(path), labels)


def test_labels_header_lying_about_the_count_is_refused(tmp_path):
    # images and labels both well formed, but the label file's count differs: named before use
    folder = tmp_path / "mnist"
    splits = random_images(20, 10, (28, 28), seed=1)
    paths = write_idx_dataset(folder, splits)
    write_gzip(paths[1], [idx_header(np.uint8, (21,)), splits["train_y"].astype(np.uint8).tobytes()])
    with pytest.raises(GdlabError, match=r"train-labels-idx1-ubyte.gz: truncated IDX file: header promises shape \(21,\) \(21 bytes of data\), found only 20 bytes"):
        gdlab.data.load("mnist", root=tmp_path)


# ---------------------------------------------------------------- CIFAR archives and pickles


def _official_members(seed=0) -> dict[str, bytes]:
    files = cifar10_files(random_images(10, 5, (3, 32, 32), seed=seed))
    return {f"cifar-10-batches-py/{name}": data for name, data in files.items()}


@pytest.mark.parametrize(
    "hostile, refusal",
    [
        (tar_entry("../evil.txt", b"x"), r"member '\.\./evil\.txt' points outside the archive's folder"),
        (tar_entry("cifar-10-batches-py/../../evil.txt", b"x"), r"member 'cifar-10-batches-py/\.\./\.\./evil\.txt' points outside"),
        (tar_entry("/tmp/evil.txt", b"x"), r"member '/tmp/evil\.txt' points outside"),
        (tar_entry("cifar-10-batches-py/data_batch_1", kind=tarfile.SYMTYPE, linkname="/etc/passwd"),
         r"member 'cifar-10-batches-py/data_batch_1' is a symbolic link to '/etc/passwd', not a file or folder"),
        (tar_entry("cifar-10-batches-py/extra", kind=tarfile.LNKTYPE, linkname="cifar-10-batches-py/test_batch"),
         r"member 'cifar-10-batches-py/extra' is a hard link to 'cifar-10-batches-py/test_batch'"),
        (tar_entry("cifar-10-batches-py/fifo", kind=tarfile.FIFOTYPE), r"member 'cifar-10-batches-py/fifo' is a device or FIFO"),
    ],
)
def test_hostile_archive_members_are_refused_and_nothing_is_written(tmp_path, hostile, refusal):
    archive = tmp_path / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    entries = [tar_entry(name, data) for name, data in _official_members().items()]
    write_tar_gz_entries(archive, [entries[0], hostile, *entries[1:]])
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(GdlabError, match=rf"cifar-10-python.tar.gz: {refusal}.*download it again"):
        gdlab.data.load("cifar10", root=archive.parent)
    assert sorted(tmp_path.rglob("*")) == before  # nothing extracted, beside the archive or anywhere under it


def test_archive_with_too_many_members_is_refused(tmp_path):
    members = {f"cifar-10-batches-py/extra_{index}": b"" for index in range(gdlab.data.cifar.MAX_ARCHIVE_MEMBERS)}
    archive = write_tar_gz(tmp_path / "cifar-10-python.tar.gz", {**_official_members(), **members})
    with pytest.raises(GdlabError, match=r"more than 64 members \(the official archive has 9\)"):
        read_cifar10_archive(archive)


def test_archive_holding_a_batch_twice_is_refused(tmp_path):
    members = _official_members()
    entries = [tar_entry(name, data) for name, data in members.items()]
    entries.append(tar_entry("cifar-10-batches-py/test_batch", members["cifar-10-batches-py/test_batch"]))
    archive = write_tar_gz_entries(tmp_path / "cifar-10-python.tar.gz", entries)
    with pytest.raises(GdlabError, match=r"cifar-10-batches-py/test_batch: the archive holds this member twice"):
        read_cifar10_archive(archive)


def test_archive_inflating_past_the_cap_is_refused(tmp_path, monkeypatch):
    # the cap is 512 MiB; lowered here so the test stays small
    monkeypatch.setattr(gdlab.data.cifar, "MAX_ARCHIVE_BYTES", 1 * MIB)
    members = {"cifar-10-batches-py/readme.html": bytes(2 * MIB), **_official_members()}
    archive = write_tar_gz(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(GdlabError, match=r"reaches byte [\d,]+ of the decompressed archive, past the 1,048,576 bytes"):
        read_cifar10_archive(archive)
    monkeypatch.setattr(gdlab.data.cifar, "MAX_ARCHIVE_BYTES", 4 * MIB)
    assert read_cifar10_archive(archive).train_x.shape == (10, 3, 32, 32)


def test_pickle_with_bytes_after_its_end_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, data in cifar10_files(random_images(10, 5, (3, 32, 32), seed=3)).items():
        (folder / name).write_bytes(data)
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes() + b"\x00" * 3)
    with pytest.raises(GdlabError, match=r"test_batch: 3 bytes follow the end of the pickle \(\d+ bytes\); .*download it again"):
        gdlab.data.load("cifar10", root=tmp_path)


def test_pickle_larger_than_the_cap_is_refused_unread(tmp_path):
    payload = python2_pickle({b"data": np.zeros((5, 3072), np.uint8)})
    path = tmp_path / "batch"
    path.write_bytes(payload)
    with open(path, "rb") as stream:
        with pytest.raises(GdlabError, match=rf"batch: holds more than {len(payload) - 1:,} bytes, the most gdlab reads from one pickle"):
            load_numpy_pickle(stream, str(path), max_bytes=len(payload) - 1)
    with open(path, "rb") as stream:
        assert load_numpy_pickle(stream, str(path), max_bytes=len(payload))["data"].shape == (5, 3072)


@pytest.mark.parametrize(
    "reconstruct_args, refusal",
    [
        ((np.ndarray, (10**9,), b"b"), r"_reconstruct\(numpy.ndarray, \(1000000000,\), 'b'\), where numpy writes only"),
        ((np.ndarray, (0,), b"O"), r"_reconstruct\(numpy.ndarray, \(0,\), 'O'\)"),
    ],
)
def test_reconstruct_admits_only_what_numpy_writes(reconstruct_args, refusal):
    payload = _batch(_Reduce(_RECONSTRUCT, reconstruct_args, None))
    with pytest.raises(GdlabError, match=rf"f: refused to unpickle: the file uses {refusal}"):
        load_numpy_pickle(io.BytesIO(payload), "f")


def test_array_state_must_match_its_bytes():
    state = (1, (5, 3072), np.dtype("u1"), False, b"\x00" * 100)
    payload = python2_pickle({b"data": _Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), state)})
    with pytest.raises(GdlabError, match=r"an array of shape \(5, 3072\) and dtype uint8 with 100 bytes of data, where it needs 15360"):
        load_numpy_pickle(io.BytesIO(payload), "f")


def test_labels_as_a_flat_integer_array_still_load(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.int64)
    path = tmp_path / "batch"
    path.write_bytes(python2_pickle({b"data": np.zeros((5, 3072), np.uint8), b"labels": labels}))
    with open(path, "rb") as stream:
        _, read_labels = gdlab.data.cifar.parse_batch(load_numpy_pickle(stream, str(path)), str(path))
    np.testing.assert_array_equal(read_labels, labels)


def test_a_folder_where_a_batch_should_be_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, data in cifar10_files(random_images(10, 5, (3, 32, 32), seed=4)).items():
        (folder / name).write_bytes(data)
    (folder / "data_batch_2").unlink()
    (folder / "data_batch_2").mkdir()
    with pytest.raises(GdlabError, match=r"data_batch_2: cannot be read \(.*Is a directory.*\); copy the file again"):
        gdlab.data.cifar.read_cifar10_folder(folder)


# ---------------------------------------------------------------- mnist-5k


def test_mnist_5k_labels_beyond_digits_are_refused_before_counting(tmp_path):
    # np.bincount would allocate 10**15 counters for this one label
    row = ",".join(["0"] * 784) + ",1000000000000000\n"
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(gzip.compress(row.encode()))
    with pytest.raises(GdlabError, match=r"mnist_5k.csv.gz: labels must be digits 0..9, found 1000000000000000..1000000000000000"):
        read_mnist_5k(path)
