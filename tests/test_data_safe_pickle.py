"""Hostile pickles are refused before any of their code runs."""

import copyreg
import io
import os
import pickle

import numpy as np
import pytest

import gdlab.data
from gdlab.data.safe_pickle import ALLOWED_GLOBALS, load_numpy_pickle
from gdlab.errors import GdlabError
from official_formats import cifar10_files, python2_pickle, random_images, write_cifar10_folder, write_tar_gz


@pytest.fixture(autouse=True)
def isolated_data_places(tmp_path, monkeypatch):
    monkeypatch.delenv("GDLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))


class _Call:
    """Pickles as a call of ``function(*args)``: what an attacker writes into a file."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _touch_command(marker):
    return f"touch {marker}"


def _write_marker_code(marker):
    return f"open({str(marker)!r}, 'w').write('ran')"


def test_positive_control_the_payload_is_live(tmp_path):
    # plain pickle.loads really runs it, so the refusals below are meaningful
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(_Call(os.system, _touch_command(marker)), protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_os_system_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_Call(os.system, _touch_command(marker)), protocol=protocol)
    with pytest.raises(GdlabError, match=r"evil.pkl: refused to unpickle: the file names the callable posix.system"):
        load_numpy_pickle(io.BytesIO(payload), "evil.pkl")
    assert not marker.exists()


def test_builtins_eval_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_Call(eval, _write_marker_code(marker)), protocol=2)
    with pytest.raises(GdlabError, match=r"names the callable (__builtin__|builtins).eval.*nothing from the file was run"):
        load_numpy_pickle(io.BytesIO(payload), "evil.pkl")
    assert not marker.exists()


def test_numpy_functions_beyond_array_rebuilding_are_refused(tmp_path):
    # the allowlist names exact callables, not the numpy module: numpy.load would read any file
    payload = pickle.dumps(_Call(np.load, str(tmp_path / "x.npy")), protocol=2)
    with pytest.raises(GdlabError, match=r"names the callable numpy.load"):
        load_numpy_pickle(io.BytesIO(payload), "evil.pkl")


class _Plain:
    pass


def test_plain_python_objects_are_refused():
    # protocols 0 and 1 rebuild objects through copyreg._reconstructor, which CIFAR never needs
    payload = pickle.dumps(_Plain(), protocol=0)
    assert b"copy_reg\n_reconstructor" in payload
    with pytest.raises(GdlabError, match=r"names the callable (copy_reg|copyreg)._reconstructor"):
        load_numpy_pickle(io.BytesIO(payload), "f")
    payload = pickle.dumps(ValueError("x"), protocol=2)
    with pytest.raises(GdlabError, match=r"names the callable (exceptions|builtins).ValueError"):
        load_numpy_pickle(io.BytesIO(payload), "f")


def test_extension_registry_opcodes_go_through_the_allowlist(tmp_path):
    marker = tmp_path / "marker"
    copyreg.add_extension("posix", "system", 0xF1)
    try:
        payload = pickle.dumps(_Call(os.system, _touch_command(marker)), protocol=2)
        assert b"\x82\xf1" in payload  # EXT1 0xF1: no GLOBAL opcode in the file at all
        with pytest.raises(GdlabError, match=r"names the callable posix.system"):
            load_numpy_pickle(io.BytesIO(payload), "f")
    finally:
        copyreg.remove_extension("posix", "system", 0xF1)
    assert not marker.exists()


def test_payload_hidden_inside_a_real_looking_cifar_batch(tmp_path):
    marker = tmp_path / "marker"
    splits = random_images(10, 5, (3, 32, 32), seed=1)
    folder = write_cifar10_folder(tmp_path / "data", splits)
    hostile = python2_pickle(
        {b"data": np.zeros((5, 3072), np.uint8), b"labels": [0] * 5, b"filenames": _Call(os.system, _touch_command(marker))}
    )
    (folder / "test_batch").write_bytes(hostile)
    with pytest.raises(GdlabError, match=r"cifar-10-batches-py/test_batch: refused to unpickle: .*posix.system"):
        gdlab.data.load("cifar10", root=tmp_path / "data")
    assert not marker.exists()


def test_payload_inside_the_official_archive_is_refused(tmp_path):
    marker = tmp_path / "marker"
    files = cifar10_files(random_images(10, 5, (3, 32, 32), seed=2))
    files["data_batch_1"] = pickle.dumps(_Call(eval, _write_marker_code(marker)), protocol=2)
    write_tar_gz(tmp_path / "cifar-10-python.tar.gz", {f"cifar-10-batches-py/{n}": d for n, d in files.items()})
    with pytest.raises(
        GdlabError, match=r"cifar-10-python.tar.gz:cifar-10-batches-py/data_batch_1: refused to unpickle.*(__builtin__|builtins).eval"
    ):
        gdlab.data.load("cifar10", root=tmp_path)
    assert not marker.exists()


def test_allowlist_is_exactly_numpy_array_rebuilding():
    assert set(ALLOWED_GLOBALS) == {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }


def test_containers_strings_numbers_need_no_callable():
    value = {"a": [1, 2.5, None, True], b"b": ("text", b"bytes"), "c": {"nested": -3}}
    assert load_numpy_pickle(io.BytesIO(pickle.dumps(value, protocol=4)), "f") == value
