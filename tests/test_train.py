"""fit() and evaluate(): what is recorded, divergence, flat memory."""

import math

import pytest
import torch
import torch.nn.functional as F

from gdlab.models import MLP
from gdlab.train import History, evaluate, fit, get_loss


def batches(n=96, batch_size=32, seed=0, features=6, classes=3):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    return [(x[i : i + batch_size], y[i : i + batch_size] % classes) for i in range(0, n, batch_size)]


def test_fit_records_every_iteration_and_epoch():
    torch.manual_seed(0)
    model = MLP([6, 8, 3])
    loader = batches()
    history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, epochs=4, val_loader=loader)
    assert len(history.iteration_loss) == len(history.iteration_accuracy) == 4 * len(loader)
    assert history.epoch_iterations == [len(loader)] * 4
    assert history.iteration_epochs() == [e for e in range(4) for _ in loader]
    assert len(history.epoch_train_loss) == len(history.epoch_val_accuracy) == 4
    assert all(isinstance(value, float) for value in history.iteration_loss)
    assert history.status == "ok" and not history.diverged
    assert history.epoch_learning_rate == [0.1] * 4
    assert history.iteration_loss[-1] < history.iteration_loss[0]


def test_fit_losses_are_those_of_the_textbook_loop():
    torch.manual_seed(1)
    model = MLP([6, 8, 3])
    twin = MLP([6, 8, 3])
    twin.load_state_dict(model.state_dict())
    loader = batches()
    history = fit(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), loader, epochs=2)
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    expected = []
    for _ in range(2):
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(twin(x), y)
            loss.backward()
            optimizer.step()
            expected.append(loss.item())
    assert history.iteration_loss == expected
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_divergence_stops_at_once_and_keeps_what_was_recorded():
    torch.manual_seed(0)
    model = MLP([6, 8, 3])
    loader = batches()
    # An absurd step size: the loss overflows within a few iterations.
    history = fit(model, torch.optim.SGD(model.parameters(), lr=1e12), loader, epochs=50)
    assert history.diverged and history.status == "diverged"
    stop = history.diverged_at_iteration
    assert stop is not None and len(history.iteration_loss) == stop + 1
    assert not math.isfinite(history.iteration_loss[-1])
    assert all(math.isfinite(loss) for loss in history.iteration_loss[:-1])
    assert sum(history.epoch_iterations) == len(history.iteration_loss)
    assert history.epochs_completed < 50


def test_schedule_steps_once_per_epoch():
    torch.manual_seed(0)
    model = MLP([6, 3])
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    history = fit(model, optimizer, batches(), epochs=5, scheduler=scheduler)
    assert history.epoch_learning_rate == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_evaluate_weights_batches_by_size():
    torch.manual_seed(0)
    model = MLP([6, 3])
    x = torch.randn(10, 6)
    y = torch.randint(0, 3, (10,))
    uneven = [(x[:7], y[:7]), (x[7:], y[7:])]
    result = evaluate(model, uneven)
    with torch.no_grad():
        scores = model(x)
    assert result["loss"] == pytest.approx(F.cross_entropy(scores, y).item(), rel=1e-6)
    assert result["accuracy"] == pytest.approx((scores.argmax(1) == y).float().mean().item())
    assert model.training  # mode restored


def test_history_round_trips_through_a_dict():
    torch.manual_seed(0)
    model = MLP([6, 3])
    history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(), epochs=2)
    assert History.from_dict(history.to_dict()) == history


@pytest.mark.parametrize("name", ["cross_entropy", "nll", "mse"])
def test_named_losses_agree_with_their_definitions(name):
    scores = torch.randn(5, 4, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1, 1, 2])
    expected = {
        "cross_entropy": F.cross_entropy(scores, labels),
        "nll": F.cross_entropy(scores, labels),
        "mse": ((scores - F.one_hot(labels, 4).double()) ** 2).mean(),
    }[name]
    assert torch.allclose(get_loss(name)(scores, labels), expected, rtol=1e-12)


def test_unknown_loss_names_the_choices():
    with pytest.raises(Exception, match="cross_entropy, nll, mse"):
        get_loss("hinge")


def test_history_memory_is_floats_only():
    torch.manual_seed(0)
    model = MLP([6, 3])
    history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(), epochs=3, val_loader=batches())
    for value in history.to_dict().values():
        if isinstance(value, list):
            assert all(isinstance(item, (float, int)) for item in value)
