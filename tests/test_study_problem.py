"""What a run trains with: schedules as per-epoch factors, models built from the spec, optimizers."""

import pytest
import torch

import gdlab.optim
from gdlab.models import MLP, ConvNet
from gdlab.study.problem import build_model, build_optimizer, build_scheduler, epoch_learning_rates
from gdlab.study.spec import ModelSpec, OptimizerSpec, TrainSpec


@pytest.mark.parametrize(
    "schedule",
    [
        {"schedule": "none"},
        {"schedule": "step", "step_size": 2, "gamma": 0.5},
        {"schedule": "multistep", "milestones": [1, 4], "gamma": 0.1},
        {"schedule": "exponential", "gamma": 0.9},
        {"schedule": "cosine", "eta_min": 0.001},
    ],
)
def test_stacked_learning_rates_are_those_torchs_scheduler_gives_each_run(schedule):
    spec = TrainSpec(epochs=6, **schedule)
    base_lrs = [0.3, 0.05]
    expected = []
    for base_lr in base_lrs:
        optimizer = gdlab.optim.SGD([torch.zeros(2, requires_grad=True)], lr=base_lr)
        scheduler = build_scheduler(spec, optimizer)
        rates = []
        for _ in range(spec.epochs):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        expected.append(rates)
    stacked = epoch_learning_rates(spec, base_lrs)
    if schedule["schedule"] == "none":
        assert stacked is None and expected[0] == [0.3] * 6
    else:
        assert [list(rates) for rates in zip(*stacked)] == expected  # exactly torch's, epoch by epoch
        assert len(set(expected[0])) > 1


def test_models_built_from_the_spec():
    mlp = build_model(ModelSpec(hidden=[32, 16]), (1, 28, 28), 10)
    assert isinstance(mlp, MLP) and mlp.sizes == [784, 32, 16, 10]
    linear = build_model(ModelSpec(kind="linear"), (3, 32, 32), 2)
    assert linear.sizes == [3072, 2]
    convnet = build_model(ModelSpec(kind="convnet", width=8, batchnorm=False), (1, 28, 28), 10)
    assert isinstance(convnet, ConvNet) and convnet(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in convnet.modules())


def test_scratch_and_torch_optimizers_get_the_same_hyperparameters():
    spec = OptimizerSpec(name="adam", lr=0.01, betas=(0.8, 0.99), amsgrad=True)
    parameters = [torch.zeros(3, requires_grad=True)]
    scratch = build_optimizer(spec, parameters, "scratch")
    reference = build_optimizer(spec, parameters, "torch")
    assert isinstance(scratch, gdlab.optim.Adam) and type(reference) is torch.optim.Adam
    for key in ("lr", "betas", "amsgrad", "eps", "weight_decay"):
        assert scratch.param_groups[0][key] == reference.param_groups[0][key]
    assert reference.param_groups[0]["foreach"] is False
