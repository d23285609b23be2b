"""The real Fashion-MNIST that Debian's dataset-fashion-mnist installs on this machine."""

from pathlib import Path

import pytest
import torch

import gdlab.data

SYSTEM_FOLDER = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not SYSTEM_FOLDER.is_dir(),
    reason=f"{SYSTEM_FOLDER} missing: install it with `apt-get install dataset-fashion-mnist` (make setup does)",
)
def test_full_fashion_mnist_from_the_system_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("GDLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ds = gdlab.data.load("fashion-mnist")
    assert ds.source == str(SYSTEM_FOLDER)
    assert ds.train.x.shape == (60000, 1, 28, 28) and ds.test.x.shape == (10000, 1, 28, 28)
    assert ds.train.x.dtype == torch.uint8 and ds.train.y.dtype == torch.int64
    assert ds.classes == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    # the published class balance: 6,000 / 1,000 images per class
    assert ds.train.y.bincount().tolist() == [6000] * 10
    assert ds.test.y.bincount().tolist() == [1000] * 10
    # the widely quoted training-set statistics, 0.2860 and 0.3530
    (mean,), (std,) = gdlab.data.channel_stats(ds.train.x)
    assert mean == pytest.approx(0.2860, abs=1e-4) and std == pytest.approx(0.3530, abs=1e-4)
    # real images: pixels span the full range, and a trouser's mean image differs from a bag's
    assert ds.train.x.min() == 0 and ds.train.x.max() == 255
    trousers = ds.train.x[ds.train.y == 1].double().mean(0)
    bags = ds.train.x[ds.train.y == 8].double().mean(0)
    assert (trousers - bags).abs().mean() > 20
