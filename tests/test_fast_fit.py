"""fit_fast: fit's record through the hand-written MLP gradient path.

Against ``fit`` (autograd) every figure is held to test_stacked.py's stated
tolerances (the gradients differ only in the order of floating-point sums).
Two optimizers trained with fit_fast from one start (a scratch rule and its
torch reference) must stay bit-equal, and so must an epoch replayed after a
non-finite loss and the same epoch read loss by loss.
"""

import copy
import math

import pytest
import torch

import gdlab.optim
from gdlab.data import TensorLoader
from gdlab.errors import GdlabError
from gdlab.models import ConvNet
from gdlab.train import fit, fit_fast, get_loss, supports_fast_fit
from test_stacked import assert_same_history, assert_same_parameters, loaders, make_data, new_models

CONFIGURATIONS = [
    ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("adam", {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.01}),
    ("rmsprop", {"lr": 1e-3, "alpha": 0.9, "momentum": 0.5}),
]
SCRATCH = {"sgd": gdlab.optim.SGD, "adam": gdlab.optim.Adam, "rmsprop": gdlab.optim.RMSprop}
TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}


def train(trainer, model, optimizer_class, configuration, x, y, epochs, loss="cross_entropy", schedule=None,
          wrap_loader=None):
    """``trainer`` (fit or fit_fast) on a copy of ``model``; returns the History, the trained copy, the loader."""
    model = copy.deepcopy(model)
    optimizer = optimizer_class(model.parameters(), **configuration)
    batches, val = loaders(x, y)
    batches = wrap_loader(batches) if wrap_loader else batches
    scheduler = schedule(optimizer) if schedule else None
    history = trainer(model, optimizer, batches, epochs, get_loss(loss), val_loader=val, scheduler=scheduler)
    return history, model, batches


class ListedBatches:
    """A loader without set_epoch: the batches of a TensorLoader's epochs, listed once."""

    def __init__(self, loader: TensorLoader, epochs: int = 6):
        self.epochs = []
        for _ in range(epochs):
            self.epochs.append(list(loader))
        self.next_epoch = 0

    def __iter__(self):
        batches = self.epochs[self.next_epoch]
        self.next_epoch += 1
        return iter(batches)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rule, configuration", CONFIGURATIONS)
def test_agrees_with_fit(rule, configuration, dtype):
    x, y = make_data(dtype)
    (model,) = new_models(1, dtype)
    expected, expected_model, expected_loader = train(fit, model, SCRATCH[rule], configuration, x, y, epochs=4)
    history, trained, loader = train(fit_fast, model, SCRATCH[rule], configuration, x, y, epochs=4)
    assert_same_history(history, expected, dtype, rule)
    assert history.iteration_accuracy == pytest.approx(expected.iteration_accuracy, abs=1 / 32)
    assert_same_parameters(trained, expected_model, dtype, rule)
    assert loader.epoch == expected_loader.epoch == 4


@pytest.mark.parametrize("loss", ["nll", "mse"])
def test_other_losses_agree_with_fit(loss):
    x, y = make_data(torch.float64)
    (model,) = new_models(1, torch.float64)
    configuration = {"lr": 0.05, "momentum": 0.9}
    expected, expected_model, _ = train(fit, model, gdlab.optim.SGD, configuration, x, y, epochs=2, loss=loss)
    history, trained, _ = train(fit_fast, model, gdlab.optim.SGD, configuration, x, y, epochs=2, loss=loss)
    assert_same_history(history, expected, torch.float64, loss)
    assert_same_parameters(trained, expected_model, torch.float64, loss)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rule, configuration", CONFIGURATIONS)
def test_scratch_and_torch_rules_stay_bit_equal(rule, configuration, dtype):
    """What implementation = "both" compares: one start, one batch order, one gradient path, two rules."""
    x, y = make_data(dtype)
    (model,) = new_models(1, dtype)
    scratch, scratch_model, _ = train(fit_fast, model, SCRATCH[rule], configuration, x, y, epochs=3)

    def reference(params, **hyperparameters):
        return TORCH[rule](params, **hyperparameters, foreach=False)

    torch_history, torch_model, _ = train(fit_fast, model, reference, configuration, x, y, epochs=3)
    assert scratch.iteration_loss == torch_history.iteration_loss
    assert scratch.epoch_val_loss == torch_history.epoch_val_loss
    for (name, param), other in zip(scratch_model.named_parameters(), torch_model.parameters()):
        assert torch.equal(param, other), name


def test_a_torch_scheduler_steps_as_in_fit():
    x, y = make_data(torch.float64)
    (model,) = new_models(1, torch.float64)
    configuration = {"lr": 0.1, "momentum": 0.9}

    def schedule(optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3, eta_min=0.01)

    expected, _, _ = train(fit, model, gdlab.optim.SGD, configuration, x, y, epochs=3, schedule=schedule)
    history, _, _ = train(fit_fast, model, gdlab.optim.SGD, configuration, x, y, epochs=3, schedule=schedule)
    assert history.epoch_learning_rate == expected.epoch_learning_rate
    assert_same_history(history, expected, torch.float64, "schedule")


def exploding(dtype):
    """lr 0.05 in epoch 0, then as large as the dtype takes: the loss turns non-finite early in
    epoch 1, when the momentum buffers already hold a whole epoch."""
    factor = 1e200 if dtype == torch.float64 else 1e30
    return lambda optimizer: torch.optim.lr_scheduler.MultiplicativeLR(optimizer, lambda epoch: factor)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_divergence_stops_where_fit_stops(dtype):
    x, y = make_data(dtype)
    (model,) = new_models(1, dtype)
    configuration = {"lr": 0.05, "momentum": 0.9}
    expected, expected_model, expected_loader = train(
        fit, model, gdlab.optim.SGD, configuration, x, y, epochs=4, schedule=exploding(dtype)
    )
    assert expected.diverged and expected.diverged_at_iteration >= 10  # in epoch 1, after a whole epoch
    history, trained, loader = train(
        fit_fast, model, gdlab.optim.SGD, configuration, x, y, 4, schedule=exploding(dtype)
    )
    assert_same_history(history, expected, dtype, "diverged")
    assert not math.isfinite(history.iteration_loss[-1])
    assert_same_parameters(trained, expected_model, dtype, "diverged")
    assert loader.epoch == expected_loader.epoch == 1  # the diverged epoch did not run to its end


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_replayed_epoch_is_the_epoch_read_loss_by_loss(dtype):
    """The TensorLoader's epoch is replayed after its non-finite loss; a loader without set_epoch is read
    loss by loss from the start. Same gradient path, so the same bits."""
    x, y = make_data(dtype)
    (model,) = new_models(1, dtype)
    configuration = {"lr": 0.05, "momentum": 0.9}
    replayed, replayed_model, _ = train(
        fit_fast, model, gdlab.optim.SGD, configuration, x, y, 4, schedule=exploding(dtype)
    )
    read, read_model, _ = train(
        fit_fast, model, gdlab.optim.SGD, configuration, x, y, 4, schedule=exploding(dtype), wrap_loader=ListedBatches
    )
    assert replayed.diverged and read.diverged
    # repr: every float to its last bit, and NaN equal to NaN
    assert repr(replayed.to_dict() | {"seconds": 0}) == repr(read.to_dict() | {"seconds": 0})
    for param, other in zip(replayed_model.parameters(), read_model.parameters()):
        assert torch.equal(param.isfinite(), other.isfinite())
        assert torch.equal(param[param.isfinite()], other[other.isfinite()])


def test_on_iteration_gets_every_loss_as_it_comes():
    x, y = make_data(torch.float64)
    (model,) = new_models(1, torch.float64)
    seen = []
    optimizer = gdlab.optim.SGD(model.parameters(), lr=0.05)
    train_loader, _ = loaders(x, y)
    history = fit_fast(model, optimizer, train_loader, epochs=2, on_iteration=lambda i, loss: seen.append((i, loss)))
    assert seen == list(enumerate(history.iteration_loss))
    assert len(seen) == 2 * len(train_loader)


def test_what_it_cannot_train_is_refused_with_the_fix():
    (model,) = new_models(1, torch.float32)
    x, y = make_data(torch.float32)
    train_loader, _ = loaders(x, y)
    convnet = ConvNet(batchnorm=False, num_classes=3, in_channels=1, image_size=27, width=2)
    lbfgs = gdlab.optim.LBFGS(model.parameters())
    with pytest.raises(GdlabError, match="MLP only.*ConvNet.*gdlab.train.fit"):
        fit_fast(convnet, gdlab.optim.SGD(convnet.parameters(), lr=0.1), train_loader)
    with pytest.raises(GdlabError, match="LBFGS.*closure.*gdlab.train.fit"):
        fit_fast(model, lbfgs, train_loader)
    model.layers[0].bias.requires_grad_(False)
    with pytest.raises(GdlabError, match=r"layers\.0\.bias has requires_grad=False.*gdlab.train.fit"):
        fit_fast(model, gdlab.optim.SGD(model.parameters(), lr=0.1), train_loader)
    assert not supports_fast_fit(model, gdlab.optim.SGD(model.parameters(), lr=0.1))
    (trainable,) = new_models(1, torch.float32)
    assert supports_fast_fit(trainable, torch.optim.Adam(trainable.parameters()))


def test_a_study_with_the_fast_engine_keeps_pairs_equal_and_agrees_with_autograd(tmp_path):
    from rich.console import Console

    from study_files import write_study

    from gdlab.study import load_study, run_study

    runs = {}
    for engine in ("autograd", "fast"):
        folder = tmp_path / engine
        folder.mkdir()
        path = write_study(folder, implementation="both", lr="0.1", momentum="0.9")
        path.write_text(path.read_text().replace("batch_size = 64", f'batch_size = 64\nengine = "{engine}"'))
        summary = run_study(load_study(path), out_dir=folder / "out", console=Console(quiet=True))
        assert [pair["max_loss_difference"] for pair in summary["pairs"]] == [0.0]
        runs[engine] = summary["runs"][0]
    # Another gradient path rounds differently; the figures stay within the stacked tolerance.
    assert abs(runs["fast"]["val_accuracy"] - runs["autograd"]["val_accuracy"]) <= 0.02
    assert abs(runs["fast"]["train_loss"] - runs["autograd"]["train_loss"]) <= 1e-3 * max(1.0, runs["autograd"]["train_loss"])
