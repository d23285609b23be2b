"""torch.optim.swa_utils (AveragedModel, SWALR, update_bn) work on gdlab's optimizers as on torch's.

A small MLP with BatchNorm trains with a cosine schedule, then with SWALR
while AveragedModel averages its weights; update_bn then recomputes the
averaged model's BatchNorm statistics. The same run with torch's classes
(``foreach=False``) must give ``torch.equal`` averaged parameters and
buffers, and the same learning rates in every param group at every epoch:
SWALR writes its lr into gdlab's param groups, and gdlab's rules read it.
"""

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn

import gdlab.optim
from gdlab.optim.rules.adafactor import Adafactor
from gdlab.optim.rules.muon import Muon

EPOCHS = 10
SWA_START = 5
ANNEAL_EPOCHS = 3
DTYPES = [torch.float32, torch.float64]

# name: one entry per optimizer: (gdlab class, torch class, which parameters, hyperparameters, swa_lr)
SETUPS = {
    "SGD": [(gdlab.optim.SGD, torch.optim.SGD, "all",
             {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, 0.02)],
    "Adam": [(gdlab.optim.Adam, torch.optim.Adam, "all", {"lr": 0.01, "amsgrad": True}, 0.003)],
    "Adafactor": [(Adafactor, torch.optim.Adafactor, "all", {"lr": 0.02, "weight_decay": 0.01}, 0.004)],
    # Muon takes the weight matrices; AdamW the biases and BatchNorm's scale and shift.
    "Muon+AdamW": [
        (Muon, torch.optim.Muon, "matrices", {"lr": 0.02, "adjust_lr_fn": "match_rms_adamw"}, 0.006),
        (gdlab.optim.AdamW, torch.optim.AdamW, "others", {"lr": 0.01}, 0.002),
    ],
}


def make_model(dtype):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Linear(10, 3)).to(dtype)


def make_batches(dtype):
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(64, 6, dtype=dtype, generator=generator) * 2 + 1
    labels = torch.randint(0, 3, (64,), generator=generator)
    return [(inputs[start:start + 16], labels[start:start + 16]) for start in range(0, 64, 16)]


def param_groups(model, which):
    """"all": the first layer in its own group, the rest in another; or the matrices, or the others."""
    if which == "all":
        first, *rest = model
        return [{"params": list(first.parameters())},
                {"params": [param for module in rest for param in module.parameters()]}]
    matrices = which == "matrices"
    return [{"params": [param for param in model.parameters() if (param.ndim == 2) == matrices]}]


def make_optimizers(model, setup, implementation):
    optimizers = []
    for gdlab_class, torch_class, which, hyperparameters, swa_lr in setup:
        if implementation == "gdlab":
            optimizer_class = gdlab_class
        elif torch_class is torch.optim.Muon:  # single-tensor only, and no foreach argument
            optimizer_class = torch_class
        else:
            optimizer_class = functools.partial(torch_class, foreach=False)
        groups = param_groups(model, which)
        if len(groups) == 2:
            groups[0]["lr"] = hyperparameters["lr"] / 2
        optimizers.append((optimizer_class(groups, **hyperparameters), [swa_lr / 2, swa_lr][-len(groups):]))
    return optimizers


def train_with_swa(setup, implementation, dtype, average=None):
    """Cosine schedule for SWA_START epochs, then SWALR and averaging every epoch; update_bn at the end."""
    model = make_model(dtype)
    batches = make_batches(dtype)
    optimizers = make_optimizers(model, setup, implementation)
    swa_model = average(model) if average else AveragedModel(model)
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS) for opt, _ in optimizers]
    swa_schedulers = [
        SWALR(opt, swa_lr=swa_lrs, anneal_epochs=ANNEAL_EPOCHS, anneal_strategy="cos")
        for opt, swa_lrs in optimizers
    ]
    lrs, snapshots = [], []
    for epoch in range(EPOCHS):
        for inputs, labels in batches:
            for opt, _ in optimizers:
                opt.zero_grad()
            F.cross_entropy(model(inputs), labels).backward()
            for opt, _ in optimizers:
                opt.step()
        if epoch >= SWA_START:
            swa_model.update_parameters(model)
            snapshots.append([param.detach().clone() for param in model.parameters()])
            for scheduler in swa_schedulers:
                scheduler.step()
        else:
            for scheduler in schedulers:
                scheduler.step()
        lrs.append([group["lr"] for opt, _ in optimizers for group in opt.param_groups])
    statistics_before = [buffer.clone() for buffer in swa_model.module[1].buffers()]
    update_bn(batches, swa_model)
    return model, swa_model, lrs, snapshots, statistics_before


def assert_same_averages(swa_model, reference_swa):
    """Averaged parameters, buffers (BatchNorm statistics) and n_averaged, bit for bit."""
    state, reference_state = swa_model.state_dict(), reference_swa.state_dict()
    assert state.keys() == reference_state.keys()
    for key, value in state.items():
        assert torch.equal(value, reference_state[key]), key


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SETUPS)
def test_swa_with_gdlab_optimizers_equals_swa_with_torch_optimizers(name, dtype):
    setup = SETUPS[name]
    model, swa_model, lrs, snapshots, statistics_before = train_with_swa(setup, "gdlab", dtype)
    reference_model, reference_swa, reference_lrs, _, _ = train_with_swa(setup, "torch", dtype)

    # SWALR drove gdlab's param groups exactly as torch's, annealing them to swa_lr.
    assert lrs == reference_lrs
    swa_lrs = [lr for _, swa_lrs in make_optimizers(make_model(dtype), setup, "gdlab") for lr in swa_lrs]
    assert lrs[-1] == swa_lrs and lrs[SWA_START - 1] != swa_lrs
    assert lrs[SWA_START] != lrs[SWA_START - 1]  # the first SWALR step moved the lr

    # The averaged model (parameters, BatchNorm statistics, count) is torch's, bit for bit.
    assert_same_averages(swa_model, reference_swa)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference_model.parameters()))
    assert swa_model.n_averaged.item() == EPOCHS - SWA_START

    # It is the average of the weights after each SWA epoch, not the last weights.
    for index, param in enumerate(swa_model.module.parameters()):
        mean = torch.stack([snapshot[index] for snapshot in snapshots]).mean(dim=0)
        assert torch.allclose(param, mean, rtol=1e-5, atol=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(swa_model.module.parameters(), model.parameters()))

    # update_bn recomputed the averaged model's BatchNorm statistics from the data.
    statistics_after = list(swa_model.module[1].buffers())
    assert not torch.equal(statistics_after[0], statistics_before[0])
    assert not torch.equal(statistics_after[1], statistics_before[1])
    inputs = make_batches(dtype)[0][0]
    swa_model.eval()
    reference_swa.eval()
    assert torch.equal(swa_model(inputs), reference_swa(inputs))


@pytest.mark.parametrize("name", ["SGD", "Adafactor"])
def test_ema_averaged_model_with_buffers_equals_torch(name):
    """An exponential moving average (get_ema_multi_avg_fn) that averages the buffers too."""

    def ema(model):
        return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)

    _, swa_model, lrs, _, _ = train_with_swa(SETUPS[name], "gdlab", torch.float64, average=ema)
    _, reference_swa, reference_lrs, _, _ = train_with_swa(SETUPS[name], "torch", torch.float64, average=ema)
    assert lrs == reference_lrs
    assert_same_averages(swa_model, reference_swa)


def test_a_different_swa_lr_on_one_side_is_caught():
    """The comparison can fail: SWA toward another swa_lr changes the averaged weights."""
    (gdlab_class, torch_class, which, hyperparameters, swa_lr), = SETUPS["SGD"]
    other = [(gdlab_class, torch_class, which, hyperparameters, swa_lr * 1.5)]
    _, swa_model, lrs, _, _ = train_with_swa(SETUPS["SGD"], "gdlab", torch.float64)
    _, other_swa, other_lrs, _, _ = train_with_swa(other, "gdlab", torch.float64)
    assert lrs[-1] != other_lrs[-1]
    assert not torch.equal(swa_model.module[0].weight, other_swa.module[0].weight)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_swalr_keys_travel_in_gdlab_state_dicts_and_its_lr_is_the_one_gdlab_steps_with():
    """SWALR adds swa_lr to gdlab's groups and sets their lr; a state_dict carries both; the step uses that lr."""
    model = make_model(torch.float64)
    optimizer = gdlab.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    swa_scheduler = SWALR(optimizer, swa_lr=0.01, anneal_epochs=1)
    swa_scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == [0.01]
    resumed = gdlab.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert resumed.param_groups[0]["swa_lr"] == 0.01 and resumed.param_groups[0]["lr"] == 0.01
    inputs, labels = make_batches(torch.float64)[0]
    F.cross_entropy(model(inputs), labels).backward()
    expected = [param.detach().add(param.grad, alpha=-0.01) for param in model.parameters()]
    resumed.step()  # the first step: the momentum buffer is the gradient itself
    assert all(torch.equal(param, value) for param, value in zip(model.parameters(), expected))
