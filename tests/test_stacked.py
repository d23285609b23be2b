"""fit_stacked: K configurations as one stacked model, against K separate ``fit`` runs.

Every equivalence test trains each configuration alone with ``gdlab.train.fit``
and the ``gdlab.optim`` class of the rule (float hyperparameters), from the
same initialization over the same TensorLoader batches, and compares.

Stated tolerances, for every iteration's training loss and every epoch's
training and validation loss (relative difference) and for every parameter at
the end (difference relative to the largest entry, at least 1), over 40 steps:
1e-11 in float64 and 1e-5 in float32 (measured: about 3e-16 and 2e-7 for every
rule; stacking changes only the order of floating-point sums inside the
GEMMs). Validation accuracy within 0.02 (measured: equal).
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import gdlab.optim
from gdlab.backprop import MLP as BackpropMLP
from gdlab.data import TensorLoader
from gdlab.errors import GdlabError
from gdlab.models import MLP, ConvNet
from gdlab.train import fit, get_loss
from gdlab.train.stacked import (
    MemberLoaders,
    available_memory_bytes,
    fit_stacked,
    max_members_in_memory,
    member_bytes,
    normalize_hparams,
)
from gdlab.train.stacked.models import stack_parameters, stacked_model, supports_stacking



LOSS_RTOL = {torch.float64: 1e-11, torch.float32: 1e-5}
PARAM_RTOL = {torch.float64: 1e-11, torch.float32: 1e-5}
VAL_ACCURACY_ATOL = 0.02

OPTIMIZERS = {
    "sgd": gdlab.optim.SGD,
    "adam": gdlab.optim.Adam,
    "adamw": gdlab.optim.AdamW,
    "rmsprop": gdlab.optim.RMSprop,
    "adagrad": gdlab.optim.Adagrad,
}

# Per rule, configurations whose numbers differ (so the rules get tensor hyperparameters).
CONFIGURATIONS = {
    "sgd": [
        {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
        {"lr": 0.1},
        {"lr": 0.02, "momentum": 0.5, "dampening": 0.1},
        {"lr": 0.02, "dampening": 0.3},  # momentum 0: dampening must be ignored, as torch does
    ],
    "adam": [{"lr": 1e-3}, {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.01}, {"lr": 1e-2, "eps": 1e-6}],
    "adamw": [{"lr": 1e-3}, {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.1}],
    "rmsprop": [{"lr": 1e-3}, {"lr": 3e-3, "alpha": 0.9, "momentum": 0.5}, {"lr": 1e-3, "weight_decay": 0.01}],
    "adagrad": [{"lr": 1e-2}, {"lr": 3e-2, "lr_decay": 0.01, "initial_accumulator_value": 0.1}],
}


def make_data(dtype, samples=320, features=20, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=generator, dtype=dtype)
    y = torch.randint(0, classes, (samples,), generator=generator)
    return x, y


def loaders(x, y):
    return TensorLoader(x, y, batch_size=32, seed=1), TensorLoader(x, y, batch_size=100, shuffle=False)


def new_models(count, dtype, sizes=(20, 16, 8, 4), activation="relu", seed=0):
    torch.manual_seed(seed)
    return [MLP(list(sizes), activation=activation).to(dtype) for _ in range(count)]


def solo_runs(models, rule, configurations, x, y, epochs, loss_fn=F.cross_entropy, schedule=None):
    """Each configuration alone with fit(); returns (histories, trained models)."""
    histories, trained = [], []
    for model, configuration in zip(models, configurations):
        model = copy.deepcopy(model)
        optimizer = OPTIMIZERS[rule](model.parameters(), **configuration)
        scheduler = schedule(optimizer) if schedule else None
        train, val = loaders(x, y)
        histories.append(fit(model, optimizer, train, epochs, loss_fn, val_loader=val, scheduler=scheduler))
        trained.append(model)
    return histories, trained


def assert_relative_close(actual, expected, rtol, what):
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert actual.shape == expected.shape, f"{what}: {actual.shape} vs {expected.shape}"
    if actual.numel() == 0:
        return
    relative = ((actual - expected).abs() / expected.abs().clamp_min(1e-30)).max().item()
    assert relative <= rtol, f"{what}: relative difference {relative:.3e} > {rtol:.0e}"


def assert_same_history(stacked, solo, dtype, what):
    """Same record as fit's: exact counts, status and learning rates; floats within the stated tolerance."""
    assert stacked.status == solo.status, what
    assert stacked.diverged_at_iteration == solo.diverged_at_iteration, what
    assert stacked.epoch_iterations == solo.epoch_iterations, what
    assert stacked.epoch_learning_rate == pytest.approx(solo.epoch_learning_rate, rel=1e-15), what
    assert [math.isfinite(v) for v in stacked.iteration_loss] == [math.isfinite(v) for v in solo.iteration_loss], what
    assert_relative_close(
        [v for v in stacked.iteration_loss if math.isfinite(v)],
        [v for v in solo.iteration_loss if math.isfinite(v)],
        LOSS_RTOL[dtype],
        f"{what} iteration_loss",
    )
    assert_relative_close(stacked.epoch_train_loss, solo.epoch_train_loss, LOSS_RTOL[dtype], f"{what} epoch_train_loss")
    assert_relative_close(stacked.epoch_val_loss, solo.epoch_val_loss, LOSS_RTOL[dtype], f"{what} epoch_val_loss")
    assert len(stacked.epoch_val_accuracy) == len(solo.epoch_val_accuracy), what
    for a, b in zip(stacked.epoch_val_accuracy, solo.epoch_val_accuracy):
        assert abs(a - b) <= VAL_ACCURACY_ATOL, what
    assert len(stacked.iteration_accuracy) == len(solo.iteration_accuracy), what


def assert_same_parameters(model, reference, dtype, what):
    """Every entry within PARAM_RTOL of the reference, relative to its largest finite entry (at least 1);
    non-finite entries (a diverged run's) in the same places."""
    for (name, param), expected in zip(model.named_parameters(), reference.parameters()):
        finite = expected.isfinite()
        assert torch.equal(param.isfinite(), finite), f"{what} {name}: non-finite entries differ"
        param, expected = param[finite], expected[finite]
        scale = expected.abs().max().clamp_min(1.0)
        difference = ((param - expected).abs().max() / scale).item()
        assert difference <= PARAM_RTOL[dtype], f"{what} {name}: {difference:.3e}"


# The stacked forward pass


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "sizes, activation",
    [((12, 7, 5, 3), "relu"), ((12, 3), "relu"), ((12, 9, 3), "leaky_relu"), ((12, 4, 4, 4, 2), "tanh")],
)
def test_stacked_mlp_forward_equals_each_member(sizes, activation, dtype):
    models = new_models(4, dtype, sizes, activation)
    x = torch.randn(9, 3, 4, dtype=dtype)  # flattened to 12 features, as MLP.forward does
    scores = stacked_model(models[0]).scores(stack_parameters(models), x)
    expected = torch.stack([model(x) for model in models])
    # Rounding differs only in the order of each dot product's sum: relative to the scores' scale.
    scale = expected.abs().max().item()
    tolerance = (1e-6 if dtype == torch.float32 else 1e-14) * scale
    torch.testing.assert_close(scores, expected, rtol=0, atol=tolerance)


def small_convnets(count, dtype):
    torch.manual_seed(0)
    return [ConvNet(batchnorm=False, num_classes=3, in_channels=1, image_size=27, width=2).to(dtype) for _ in range(count)]


@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "tanh", "sigmoid", "identity", "convnet"])
def test_stacked_gradients_are_each_members_own(kind):
    """The hand-written backward pass of StackedMLP (and vmap's for the ConvNet) against autograd per member."""
    if kind == "convnet":
        models, x = small_convnets(3, torch.float64), torch.randn(5, 1, 27, 27, dtype=torch.float64)
    else:
        models, x = new_models(3, torch.float64, (20, 9, 7, 4), kind), torch.randn(16, 20, dtype=torch.float64)
    model = stacked_model(models[0])
    params = stack_parameters(models)
    scores, saved = model.forward(params, x)
    score_gradients = torch.randn_like(scores)  # any dL/dscores: the backward pass is linear in it
    gradients = model.gradients(params, saved, score_gradients)
    for slot, member in enumerate(models):
        member_scores = member(x)
        torch.testing.assert_close(scores[slot], member_scores.detach(), rtol=1e-13, atol=1e-14)
        expected = torch.autograd.grad(member_scores, list(member.parameters()), score_gradients[slot])
        for (name, _), gradient, own in zip(member.named_parameters(), gradients, expected):
            torch.testing.assert_close(gradient[slot], own, rtol=1e-12, atol=1e-14, msg=f"{kind} {name}")


def test_supports_stacking_kinds():
    assert supports_stacking(MLP([4, 3, 2]))
    assert supports_stacking(ConvNet(batchnorm=False, in_channels=1, image_size=27, width=2))
    assert not supports_stacking(ConvNet(batchnorm=True, in_channels=1, image_size=27, width=2))
    assert not supports_stacking(BackpropMLP([4, 3, 2]))  # its forward caches tensors
    assert not supports_stacking(torch.nn.Linear(4, 2))


# Equivalence with fit()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rule", list(CONFIGURATIONS))
def test_equals_sequential_fit_for_every_rule(rule, dtype):
    configurations = CONFIGURATIONS[rule]
    x, y = make_data(dtype)
    models = new_models(len(configurations), dtype)
    solo_histories, solo_models = solo_runs(models, rule, configurations, x, y, epochs=4)
    stacked_models = copy.deepcopy(models)
    train, val = loaders(x, y)
    histories = fit_stacked(stacked_models, rule, configurations, train, epochs=4, val_loader=val)
    assert len(histories) == len(configurations)
    for k, (history, solo) in enumerate(zip(histories, solo_histories)):
        assert_same_history(history, solo, dtype, f"{rule} member {k}")
        assert_same_parameters(stacked_models[k], solo_models[k], dtype, f"{rule} member {k}")
    assert train.epoch == 4  # the loader ends where fit leaves it


def test_identical_members_train_identically_and_members_with_equal_settings_use_the_float_path():
    x, y = make_data(torch.float64)
    model = new_models(1, torch.float64)[0]
    members = [copy.deepcopy(model) for _ in range(3)]
    configuration = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}
    train, val = loaders(x, y)
    histories = fit_stacked(members, "sgd", [configuration] * 3, train, epochs=2, val_loader=val)
    (solo,), (solo_model,) = solo_runs([model], "sgd", [configuration], x, y, epochs=2)
    for history, member in zip(histories, members):
        assert history.iteration_loss == histories[0].iteration_loss
        assert_same_history(history, solo, torch.float64, "identical member")
        assert_same_parameters(member, solo_model, torch.float64, "identical member")


@pytest.mark.parametrize("loss", ["nll", "mse"])
def test_other_losses(loss):
    loss_fn = get_loss(loss)
    configurations = CONFIGURATIONS["sgd"][:2]
    x, y = make_data(torch.float64)
    models = new_models(2, torch.float64)
    solo_histories, _ = solo_runs(models, "sgd", configurations, x, y, epochs=2, loss_fn=loss_fn)
    train, val = loaders(x, y)
    histories = fit_stacked(copy.deepcopy(models), "sgd", configurations, train, 2, loss_fn, val_loader=val)
    for history, solo in zip(histories, solo_histories):
        assert_same_history(history, solo, torch.float64, loss_fn.__name__)


def test_learning_rates_from_a_torch_scheduler_match_it():
    configurations = [{"lr": 0.1, "momentum": 0.9}, {"lr": 0.03}]
    x, y = make_data(torch.float64)
    models = new_models(2, torch.float64)

    def schedule(optimizer):
        # Not a multiple of the base rate: eta_min is absolute.
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3, eta_min=0.01)

    solo_histories, _ = solo_runs(models, "sgd", configurations, x, y, epochs=3, schedule=schedule)
    rates = [list(epoch_rates) for epoch_rates in zip(*(solo.epoch_learning_rate for solo in solo_histories))]
    train, val = loaders(x, y)
    histories = fit_stacked(copy.deepcopy(models), "sgd", configurations, train, 3, val_loader=val, learning_rates=rates)
    for history, solo in zip(histories, solo_histories):
        assert history.epoch_learning_rate == solo.epoch_learning_rate
        assert_same_history(history, solo, torch.float64, "schedule")


def test_convnet_without_batchnorm_stacks_through_vmap():
    models = small_convnets(2, torch.float64)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 27, 27, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=generator)
    configurations = [{"lr": 0.05, "momentum": 0.9}, {"lr": 0.01}]
    solo_histories, solo_models = solo_runs(models, "sgd", configurations, x, y, epochs=2)
    stacked_models = copy.deepcopy(models)
    train, val = loaders(x, y)
    histories = fit_stacked(stacked_models, "sgd", configurations, train, 2, val_loader=val)
    for k, (history, solo) in enumerate(zip(histories, solo_histories)):
        assert_same_history(history, solo, torch.float64, f"convnet member {k}")
        assert_same_parameters(stacked_models[k], solo_models[k], torch.float64, f"convnet member {k}")


# Divergence


@pytest.mark.parametrize("loss", ["cross_entropy", "nll"])  # closed-form and generic gradients
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_diverging_member_is_masked_out_and_the_others_go_on(dtype, loss):
    loss_fn = get_loss(loss)
    configurations = [{"lr": 0.05, "momentum": 0.9}, {"lr": 1e30, "momentum": 0.9}, {"lr": 0.1}]
    x, y = make_data(dtype)
    models = new_models(3, dtype)
    solo_histories, solo_models = solo_runs(models, "sgd", configurations, x, y, epochs=3, loss_fn=loss_fn)
    assert solo_histories[1].diverged and not solo_histories[0].diverged and not solo_histories[2].diverged
    stacked_models = copy.deepcopy(models)
    seen = []
    train, val = loaders(x, y)
    histories = fit_stacked(
        stacked_models, "sgd", configurations, train, 3, loss_fn, val_loader=val,
        on_iteration=lambda iteration, losses: seen.append((iteration, sorted(losses))),
    )
    diverged_at = solo_histories[1].diverged_at_iteration
    assert histories[1].status == "diverged"
    assert histories[1].diverged_at_iteration == diverged_at
    assert not math.isfinite(histories[1].iteration_loss[-1])
    assert len(histories[1].iteration_loss) == diverged_at + 1
    for k in range(3):
        assert_same_history(histories[k], solo_histories[k], dtype, f"member {k}")
    # Frozen where it diverged: the parameters that gave the non-finite loss, as fit leaves them.
    for k in range(3):
        assert_same_parameters(stacked_models[k], solo_models[k], dtype, f"member {k}")
    # The diverged member took no step from its divergence on.
    assert all(members == [0, 1, 2] for iteration, members in seen if iteration < diverged_at)
    assert all(members == [0, 2] for iteration, members in seen if iteration >= diverged_at)


def test_all_members_diverging_ends_training():
    configurations = [{"lr": 1e30}, {"lr": 1e32, "momentum": 0.5}]
    x, y = make_data(torch.float32)
    models = new_models(2, torch.float32)
    solo_histories, _ = solo_runs(models, "sgd", configurations, x, y, epochs=5)
    batches_seen = []
    train, val = loaders(x, y)
    counting = [(batch_x, batch_y) for batch_x, batch_y in train]

    class CountingLoader:
        def __iter__(self):
            for batch in counting:
                batches_seen.append(1)
                yield batch

    histories = fit_stacked(copy.deepcopy(models), "sgd", configurations, CountingLoader(), 5, val_loader=val)
    assert all(history.diverged for history in histories)
    for history, solo in zip(histories, solo_histories):
        assert_same_history(history, solo, torch.float32, "all diverged")
    assert len(batches_seen) == max(history.diverged_at_iteration for history in histories) + 1


# Memory and chunks


def test_chunks_give_what_one_stack_gives():
    configurations = [{"lr": lr, "momentum": momentum} for lr in (0.01, 0.05) for momentum in (0.0, 0.5, 0.9)][:5]
    x, y = make_data(torch.float64)
    models = new_models(5, torch.float64)
    train, val = loaders(x, y)
    together = fit_stacked(copy.deepcopy(models), "sgd", configurations, train, 2, val_loader=val)
    chunk_members = []
    train, val = loaders(x, y)
    chunked = fit_stacked(
        copy.deepcopy(models), "sgd", configurations, train, 2, val_loader=val, max_members=2,
        on_iteration=lambda iteration, losses: chunk_members.append(tuple(losses)) if iteration == 0 else None,
    )
    assert chunk_members == [(0, 1), (2, 3), (4,)]
    for a, b in zip(chunked, together):
        assert_same_history(a, b, torch.float64, "chunked")
    assert train.epoch == 2


def test_memory_limit_makes_chunks(monkeypatch):
    x, y = make_data(torch.float32)
    models = new_models(3, torch.float32)
    configurations = [{"lr": 0.01}, {"lr": 0.02}, {"lr": 0.03}]
    settings = normalize_hparams("sgd", configurations, 3)
    one_member = member_bytes(models[0], "sgd", settings, x[:32])
    # Room for two members at the default safety fraction of 0.5.
    monkeypatch.setattr("gdlab.train.stacked.memory.available_memory_bytes", lambda device: int(4.5 * one_member))
    first_iteration_members = []
    train, _ = loaders(x, y)
    fit_stacked(
        models, "sgd", configurations, train, 1,
        on_iteration=lambda iteration, losses: first_iteration_members.append(tuple(losses)) if iteration == 0 else None,
    )
    assert first_iteration_members == [(0, 1), (2,)]


def test_max_members_in_memory():
    model = MLP([784, 100, 100, 10])
    batch = torch.zeros(128, 784)
    settings = normalize_hparams("sgd", [{"lr": 0.1, "momentum": 0.9}], 1)
    one_member = member_bytes(model, "sgd", settings, batch)
    parameters = sum(p.numel() for p in model.parameters())
    # parameters, gradients, one momentum buffer, temporaries; activations of 128 samples
    assert one_member >= 4 * (3 * parameters + 128 * (100 + 100 + 10))
    assert one_member < 4 * (10 * parameters + 10 * 128 * (100 + 100 + 10))
    hparams = [{"lr": 0.1, "momentum": 0.9}]
    assert max_members_in_memory(model, "sgd", hparams, batch, available_bytes=10) == 1
    assert max_members_in_memory(model, "sgd", hparams, batch, available_bytes=7 * one_member) == 3
    assert max_members_in_memory(model, "sgd", hparams, batch, safety_fraction=1.0, available_bytes=7 * one_member) == 7
    without_momentum = member_bytes(model, "sgd", normalize_hparams("sgd", [{"lr": 0.1}], 1), batch)
    assert without_momentum == one_member - 4 * parameters
    adam = member_bytes(model, "adam", normalize_hparams("adam", [{"amsgrad": True}], 1), batch)
    assert adam == one_member + 2 * 4 * parameters
    available = available_memory_bytes(torch.device("cpu"))
    assert available is None or available > 0
    # A ConvNet's activations dominate: 2 (values and gradients) x its layers' outputs per sample.
    convnet = small_convnets(1, torch.float32)[0]
    images = torch.zeros(16, 1, 27, 27)
    conv_bytes = member_bytes(convnet, "sgd", normalize_hparams("sgd", [{"lr": 0.1}], 1), images)
    conv_parameters = sum(p.numel() for p in convnet.parameters())
    first_layer_outputs = 2 * 25 * 25 * 16  # conv 1->2 k3 and its ReLU, 16 samples
    assert conv_bytes > 4 * (5 * conv_parameters + 2 * first_layer_outputs)


def test_a_loader_whose_order_changes_between_chunks_is_refused():
    x, y = make_data(torch.float32)
    dataset = torch.utils.data.TensorDataset(x, y)
    reshuffling = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True)
    with pytest.raises(GdlabError, match="another batch order"):
        fit_stacked(new_models(3, torch.float32), "sgd", [{"lr": 0.01}] * 3, reshuffling, 1, max_members=2)


def test_a_repeating_loader_without_set_epoch_works_in_chunks():
    x, y = make_data(torch.float64)
    batches = list(zip(x.split(32), y.split(32)))
    models = new_models(3, torch.float64)
    configurations = [{"lr": 0.01}, {"lr": 0.02}, {"lr": 0.03}]
    together = fit_stacked(copy.deepcopy(models), "sgd", configurations, batches, 2)
    chunked = fit_stacked(copy.deepcopy(models), "sgd", configurations, batches, 2, max_members=1)
    for a, b in zip(chunked, together):
        assert_relative_close(a.iteration_loss, b.iteration_loss, LOSS_RTOL[torch.float64], "list loader")


# Bad input


def test_flags_must_agree():
    with pytest.raises(GdlabError, match="'nesterov'"):
        normalize_hparams("sgd", [{"lr": 0.1, "momentum": 0.9}, {"lr": 0.1, "momentum": 0.9, "nesterov": True}], 2)
    with pytest.raises(GdlabError, match="'amsgrad'"):
        normalize_hparams("adam", [{"amsgrad": True}, {}], 2)


def test_lr_left_out_takes_torchs_default():
    # torch.optim.SGD's lr defaults to 1e-3 (torch 2.13), and so does gdlab's declaration.
    default = torch.optim.SGD([torch.zeros(1, requires_grad=True)]).defaults["lr"]
    assert normalize_hparams("sgd", [{"momentum": 0.9}], 1)[0]["lr"] == default


@pytest.mark.parametrize(
    "rule, hparams, message",
    [
        ("nosuchrule", [{"lr": 0.1}], "unknown rule 'nosuchrule'"),
        ("sgd", [{"lr": 0.1, "betas": (0.9, 0.99)}], r"hparams\[0\] has unknown key\(s\) betas"),
        ("sgd", [{"lr": -1.0}], r"hparams\[0\] .*Invalid learning rate: -1.0"),
        ("sgd", [{"lr": 0.1}, {"lr": 0.1}], "a list of 1 dicts"),
    ],
)
def test_bad_hparams(rule, hparams, message):
    with pytest.raises(GdlabError, match=message):
        normalize_hparams(rule, hparams, 1)


def test_bad_models_and_arguments():
    x, y = make_data(torch.float32)
    train, _ = loaders(x, y)
    batchnorm = [ConvNet(batchnorm=True, in_channels=1, image_size=27, width=2) for _ in range(2)]
    with pytest.raises(GdlabError, match="--backend sequential"):
        fit_stacked(batchnorm, "sgd", [{"lr": 0.1}] * 2, train)
    with pytest.raises(GdlabError, match=r"models\[1\] differs"):
        fit_stacked([MLP([20, 8, 4]), MLP([20, 9, 4])], "sgd", [{"lr": 0.1}] * 2, train)
    with pytest.raises(GdlabError, match=r"models\[1\] differs"):
        fit_stacked([MLP([20, 8, 4]), MLP([20, 8, 4]).double()], "sgd", [{"lr": 0.1}] * 2, train)
    with pytest.raises(GdlabError, match=r"models\[1\] differs"):
        fit_stacked([MLP([20, 8, 4]), MLP([20, 8, 4], activation="tanh")], "sgd", [{"lr": 0.1}] * 2, train)
    with pytest.raises(GdlabError, match="learning_rates has 1 epochs of rates for 2 epochs"):
        fit_stacked(new_models(2, torch.float32), "sgd", [{"lr": 0.1}] * 2, train, 2, learning_rates=[[0.1, 0.1]])
    with pytest.raises(GdlabError, match=r"learning_rates\[0\] has 1 rates for 2 models"):
        fit_stacked(new_models(2, torch.float32), "sgd", [{"lr": 0.1}] * 2, train, 1, learning_rates=[[0.1]])
    with pytest.raises(GdlabError, match="no batches"):
        fit_stacked(new_models(2, torch.float32), "sgd", [{"lr": 0.1}] * 2, [], 1)
    with pytest.raises(GdlabError, match="at least one model"):
        fit_stacked([], "sgd", [], train)


# Members on their own batches: runs of different seeds (MemberLoaders)


def seeded_loader(x, y, seed, batch_size=32):
    return TensorLoader(x, y, batch_size=batch_size, seed=seed)


def solo_runs_on_own_batches(models, rule, configurations, seeds, x, y, epochs, loss_fn=F.cross_entropy):
    """Each configuration alone with fit(), on the batches of its own seed's loader."""
    histories, trained = [], []
    for model, configuration, seed in zip(models, configurations, seeds):
        model = copy.deepcopy(model)
        optimizer = OPTIMIZERS[rule](model.parameters(), **configuration)
        val = TensorLoader(x, y, batch_size=100, shuffle=False)
        histories.append(fit(model, optimizer, seeded_loader(x, y, seed), epochs, loss_fn, val_loader=val))
        trained.append(model)
    return histories, trained


def member_loaders(x, y, seeds):
    """One TensorLoader per seed, handed to every member of that seed (members of a seed share it)."""
    by_seed = {seed: seeded_loader(x, y, seed) for seed in dict.fromkeys(seeds)}
    return MemberLoaders([by_seed[seed] for seed in seeds]), by_seed


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_members_of_different_seeds_train_each_on_its_own_batches_as_fit_does(rule, dtype):
    # Seeds interleaved in the caller's order (as a study lists configuration x seed): 7, 8, 7, 8, 9.
    configurations = (CONFIGURATIONS[rule] * 2)[:5]
    seeds = [7, 8, 7, 8, 9]
    x, y = make_data(dtype)
    models = [new_models(1, dtype, seed=seed)[0] for seed in seeds]
    solo_histories, solo_models = solo_runs_on_own_batches(models, rule, configurations, seeds, x, y, epochs=3)
    assert solo_histories[0].iteration_loss[0] != solo_histories[1].iteration_loss[0]  # the seeds do differ
    stacked_models = copy.deepcopy(models)
    loaders_of, by_seed = member_loaders(x, y, seeds)
    val = TensorLoader(x, y, batch_size=100, shuffle=False)
    histories = fit_stacked(stacked_models, rule, configurations, loaders_of, epochs=3, val_loader=val)
    for k, (history, solo) in enumerate(zip(histories, solo_histories)):
        assert_same_history(history, solo, dtype, f"{rule} member {k} (seed {seeds[k]})")
        assert_same_parameters(stacked_models[k], solo_models[k], dtype, f"{rule} member {k} (seed {seeds[k]})")
    assert all(loader.epoch == 3 for loader in by_seed.values())


@pytest.mark.parametrize("loss", ["nll", "mse"])
def test_members_on_their_own_batches_with_a_loss_without_closed_form(loss):
    loss_fn = get_loss(loss)
    configurations, seeds = CONFIGURATIONS["sgd"][:3], [1, 2, 1]
    x, y = make_data(torch.float64)
    models = [new_models(1, torch.float64, seed=seed)[0] for seed in seeds]
    solo_histories, solo_models = solo_runs_on_own_batches(
        models, "sgd", configurations, seeds, x, y, epochs=2, loss_fn=loss_fn
    )
    stacked_models = copy.deepcopy(models)
    val = TensorLoader(x, y, batch_size=100, shuffle=False)
    histories = fit_stacked(
        stacked_models, "sgd", configurations, member_loaders(x, y, seeds)[0], 2, loss_fn, val_loader=val
    )
    for k, (history, solo) in enumerate(zip(histories, solo_histories)):
        assert_same_history(history, solo, torch.float64, f"{loss} member {k}")
        assert_same_parameters(stacked_models[k], solo_models[k], torch.float64, f"{loss} member {k}")


@pytest.mark.parametrize("loss", ["cross_entropy", "nll"])
def test_a_member_diverging_in_one_seed_leaves_the_others_of_every_seed_training(loss):
    loss_fn = get_loss(loss)
    configurations = [{"lr": 0.05, "momentum": 0.9}, {"lr": 1e30, "momentum": 0.9}, {"lr": 0.1}, {"lr": 0.02}]
    seeds = [3, 3, 4, 4]
    x, y = make_data(torch.float64)
    models = [new_models(1, torch.float64, seed=seed)[0] for seed in seeds]
    solo_histories, solo_models = solo_runs_on_own_batches(
        models, "sgd", configurations, seeds, x, y, epochs=3, loss_fn=loss_fn
    )
    assert [history.diverged for history in solo_histories] == [False, True, False, False]
    stacked_models = copy.deepcopy(models)
    val = TensorLoader(x, y, batch_size=100, shuffle=False)
    histories = fit_stacked(
        stacked_models, "sgd", configurations, member_loaders(x, y, seeds)[0], 3, loss_fn, val_loader=val
    )
    assert histories[1].diverged_at_iteration == solo_histories[1].diverged_at_iteration
    for k in range(4):
        assert_same_history(histories[k], solo_histories[k], torch.float64, f"member {k}")
        assert_same_parameters(stacked_models[k], solo_models[k], torch.float64, f"member {k}")


def test_members_on_their_own_batches_in_chunks_give_what_one_stack_gives():
    configurations = [{"lr": lr, "momentum": 0.9} for lr in (0.01, 0.02, 0.05, 0.1, 0.2)]
    seeds = [5, 6, 5, 6, 7]
    x, y = make_data(torch.float64)
    models = [new_models(1, torch.float64, seed=seed)[0] for seed in seeds]
    together = fit_stacked(copy.deepcopy(models), "sgd", configurations, member_loaders(x, y, seeds)[0], 2)
    chunk_members = []
    chunked = fit_stacked(
        copy.deepcopy(models), "sgd", configurations, member_loaders(x, y, seeds)[0], 2, max_members=2,
        on_iteration=lambda iteration, losses: chunk_members.append(tuple(losses)) if iteration == 0 else None,
    )
    # Lane by lane: seed 5's members (0, 2), then seed 6's (1, 3), then seed 7's (4).
    assert chunk_members == [(0, 2), (1, 3), (4,)]
    for a, b in zip(chunked, together):
        assert_same_history(a, b, torch.float64, "chunked lanes")


def test_convnets_of_different_seeds_stack_through_vmap_on_their_own_batches():
    seeds = [0, 1]
    models = small_convnets(2, torch.float64)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 27, 27, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=generator)
    configurations = [{"lr": 0.05, "momentum": 0.9}, {"lr": 0.01}]
    solo_histories, solo_models = solo_runs_on_own_batches(models, "sgd", configurations, seeds, x, y, epochs=2)
    stacked_models = copy.deepcopy(models)
    val = TensorLoader(x, y, batch_size=100, shuffle=False)
    histories = fit_stacked(stacked_models, "sgd", configurations, member_loaders(x, y, seeds)[0], 2, val_loader=val)
    for k, (history, solo) in enumerate(zip(histories, solo_histories)):
        assert_same_history(history, solo, torch.float64, f"convnet member {k}")
        assert_same_parameters(stacked_models[k], solo_models[k], torch.float64, f"convnet member {k}")


def test_member_loaders_that_do_not_match_are_refused():
    x, y = make_data(torch.float32)
    models = new_models(2, torch.float32)
    with pytest.raises(GdlabError, match="MemberLoaders holds 1 loaders for 2 models"):
        fit_stacked(models, "sgd", [{"lr": 0.1}] * 2, MemberLoaders([seeded_loader(x, y, 1)]))
    fewer_batches = MemberLoaders([seeded_loader(x, y, 1), seeded_loader(x[:96], y[:96], 2)])
    with pytest.raises(GdlabError, match="different numbers of batches"):
        fit_stacked(new_models(2, torch.float32), "sgd", [{"lr": 0.1}] * 2, fewer_batches)
    other_size = MemberLoaders([seeded_loader(x, y, 1, batch_size=32), seeded_loader(x[:100], y[:100], 2, batch_size=10)])
    with pytest.raises(GdlabError, match=r"batches of \[10, 32\] samples"):
        fit_stacked(new_models(2, torch.float32), "sgd", [{"lr": 0.1}] * 2, other_size)
