"""TensorLoader: orders reproducible from (seed, epoch), DataLoader's batch semantics, resumable."""

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from gdlab.data import TensorLoader, random_horizontal_flip
from gdlab.data.loader import stream_seed
from gdlab.errors import GdlabError


def _indexed(n, features=3):
    """x row i is [i, i, i] and y_i = i, so every batch shows which samples it holds."""
    index = torch.arange(n)
    return index[:, None].repeat(1, features).float(), index


def _epoch_indices(loader):
    return [y_batch for _, y_batch in loader]


def test_every_sample_exactly_once_per_epoch_and_x_matches_y():
    x, y = _indexed(1000)
    loader = TensorLoader(x, y, batch_size=64, seed=3)
    for _ in range(3):
        batches = list(loader)
        assert [len(yb) for _, yb in batches] == [64] * 15 + [40]
        assert torch.equal(torch.cat([yb for _, yb in batches]).sort().values, torch.arange(1000))
        assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in batches)


def test_batches_follow_epoch_order():
    x, y = _indexed(300)
    loader = TensorLoader(x, y, batch_size=32, seed=11)
    for epoch in range(3):
        assert torch.equal(torch.cat(_epoch_indices(loader)), loader.epoch_order(epoch))


def test_order_is_randperm_seeded_from_seed_and_epoch():
    loader = TensorLoader(*_indexed(500), seed=9)
    generator = torch.Generator().manual_seed(stream_seed(9, 4, "order"))
    assert torch.equal(loader.epoch_order(4), torch.randperm(500, generator=generator))


def test_different_epochs_and_seeds_give_different_orders():
    x, y = _indexed(500)
    loader = TensorLoader(x, y, seed=0)
    orders = [loader.epoch_order(epoch) for epoch in range(5)]
    assert all(not torch.equal(orders[i], orders[j]) for i in range(5) for j in range(i + 1, 5))
    # seed s epoch e must not collide with seed s+1 epoch e-1 (as seed + epoch would)
    assert not torch.equal(TensorLoader(x, y, seed=1).epoch_order(0), loader.epoch_order(1))
    assert len({stream_seed(seed, epoch, "order") for seed in range(20) for epoch in range(20)}) == 400


def test_two_loaders_with_the_same_seed_give_identical_batches():
    x, y = _indexed(777)
    first = TensorLoader(x, y, batch_size=50, seed=42)
    second = TensorLoader(x.clone(), y.clone(), batch_size=50, seed=42)
    for _ in range(2):
        for (x1, y1), (x2, y2) in zip(first, second, strict=True):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_epoch_counter_advances_after_a_full_pass_and_set_epoch_resumes():
    x, y = _indexed(200)
    loader = TensorLoader(x, y, batch_size=30, seed=5)
    assert loader.epoch == 0
    epoch0 = _epoch_indices(loader)
    assert loader.epoch == 1
    epoch1 = _epoch_indices(loader)
    assert loader.epoch == 2
    # an iteration broken off early does not count as an epoch
    for _ in zip(range(2), loader):
        pass
    assert loader.epoch == 2
    resumed = TensorLoader(x, y, batch_size=30, seed=5)
    resumed.set_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(_epoch_indices(resumed), epoch1, strict=True))
    resumed.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(_epoch_indices(resumed), epoch0, strict=True))


@pytest.mark.parametrize(("n", "batch_size"), [(100, 32), (96, 32), (5, 10), (33, 1)])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_sizes_and_len_match_dataloader(n, batch_size, drop_last, shuffle):
    x, y = _indexed(n)
    ours = TensorLoader(x, y, batch_size=batch_size, drop_last=drop_last, shuffle=shuffle)
    reference = DataLoader(TensorDataset(x, y), batch_size=batch_size, drop_last=drop_last, shuffle=shuffle)
    assert len(ours) == len(reference)
    assert [len(yb) for _, yb in ours] == [len(yb) for _, yb in reference]


@pytest.mark.parametrize("shuffle", [False, True])
def test_empty_data_gives_no_batches(shuffle):
    # an empty validation split (val_fraction=0) still makes a loader; DataLoader refuses to shuffle it
    loader = TensorLoader(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), shuffle=shuffle)
    assert len(loader) == 0 and list(loader) == [] and loader.epoch == 1


def test_unshuffled_batches_equal_dataloader_batches():
    x, y = _indexed(70)
    reference = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    for (x1, y1), (x2, y2) in zip(TensorLoader(x, y, batch_size=16, shuffle=False), reference, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_drop_last_drops_the_tail_of_the_shuffled_order():
    x, y = _indexed(100)
    loader = TensorLoader(x, y, batch_size=30, drop_last=True, seed=2)
    assert torch.equal(torch.cat(_epoch_indices(loader)), loader.epoch_order(0)[:90])


def test_transform_randomness_is_reproducible_from_seed_and_epoch():
    x = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8)
    y = torch.arange(64)

    def flip(xb, generator):
        return random_horizontal_flip(xb, generator)

    first = TensorLoader(x, y, batch_size=16, seed=1, transform=flip)
    second = TensorLoader(x, y, batch_size=16, seed=1, transform=flip)
    epoch0 = [xb for xb, _ in first]
    assert all(torch.equal(a, b) for a, b in zip(epoch0, (xb for xb, _ in second), strict=True))
    epoch1 = [xb for xb, _ in first]
    second.set_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(epoch1, (xb for xb, _ in second), strict=True))
    # the flips are the epoch's transform generator's draws, batch after batch
    generator = first.transform_generator(0)
    order = first.epoch_order(0)
    for start, batch in zip(range(0, 64, 16), epoch0, strict=True):
        assert torch.equal(batch, random_horizontal_flip(x[order[start:start + 16]], generator))
    assert not all(torch.equal(batch, x[order[s:s + 16]]) for s, batch in zip(range(0, 64, 16), epoch0, strict=True))


def test_device_move_happens_once():
    x, y = _indexed(10)
    loader = TensorLoader(x, y, device="cpu")
    assert loader.x.device.type == "cpu" and loader.device.type == "cpu"
    assert loader.num_samples == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_on_cuda_equal_cpu_batches():
    x, y = _indexed(500)
    flip = lambda xb, g: random_horizontal_flip(xb, g)  # noqa: E731
    cpu = TensorLoader(x, y, batch_size=64, seed=3, transform=flip)
    gpu = TensorLoader(x, y, batch_size=64, seed=3, transform=flip, device="cuda")
    assert gpu.x.is_cuda and gpu.y.is_cuda
    for (x1, y1), (x2, y2) in zip(cpu, gpu, strict=True):
        assert x2.is_cuda and torch.equal(x1, x2.cpu()) and torch.equal(y1, y2.cpu())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, r"batch_size must be an integer >= 1, got 2.5"),
        ({"batch_size": True}, r"batch_size must be an integer >= 1, got True"),
        ({"seed": "a"}, r"seed must be an integer, got 'a'"),
        ({"transform": 3}, r"transform must be callable\(x_batch, generator\), got 3"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(GdlabError, match=message):
        TensorLoader(*_indexed(10), **kwargs)


def test_data_errors():
    with pytest.raises(GdlabError, match=r"x has 10 samples but y has 9"):
        TensorLoader(torch.zeros(10, 2), torch.zeros(9))
    with pytest.raises(GdlabError, match=r"needs tensors x and y"):
        TensorLoader([1, 2], torch.zeros(2))
    loader = TensorLoader(*_indexed(10))
    with pytest.raises(GdlabError, match=r"epoch must be an integer >= 0, got -1"):
        loader.set_epoch(-1)


def test_len_is_number_of_batches():
    x, y = _indexed(1001)
    assert len(TensorLoader(x, y, batch_size=100)) == math.ceil(1001 / 100)
    assert len(TensorLoader(x, y, batch_size=100, drop_last=True)) == 10
