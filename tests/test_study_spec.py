"""Study files: validation errors that name key and value, grids, lists, random search, ids."""

import math
from pathlib import Path

import pytest
import torch

from gdlab.errors import GdlabError
from gdlab.study import configurations, load_study, parse_study, plan_runs

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def study(text: str, tmp_path: Path):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return load_study(path)


def error_of(text: str, tmp_path: Path) -> str:
    with pytest.raises(GdlabError) as caught:
        study(text, tmp_path)
    return str(caught.value)


def test_unknown_key_lists_the_valid_ones(tmp_path):
    message = error_of('name = "x"\n[train]\nepoch = 3\n[optimizer]\nlr = 0.1\n', tmp_path)
    assert "unknown key 'epoch' in [train]" in message
    assert "epochs" in message and "batch_size" in message
    assert "s.toml" in message


def test_unknown_section_names_the_sections(tmp_path):
    message = error_of('name = "x"\n[optimiser]\nlr = 0.1\n', tmp_path)
    assert "'optimiser'" in message and "[optimizer]" in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[train]\nepochs = 0\n[optimizer]\nlr = 0.1\n', "[train] epochs = 0"),
        ('[train]\nbatch_size = "big"\n[optimizer]\nlr = 0.1\n', "[train] batch_size = 'big'"),
        ('[data]\nval_fraction = 1.5\n[optimizer]\nlr = 0.1\n', "[data] val_fraction = 1.5"),
        ('[data]\ndataset = "imagenet"\n[optimizer]\nlr = 0.1\n', "[data] dataset = 'imagenet'"),
        ('[model]\nactivation = "swish"\n[optimizer]\nlr = 0.1\n', "unknown activation 'swish'"),
        ('[optimizer]\nlr = -0.5\n', "-0.5"),
        ('[optimizer]\nlr = 0.1\nmomentum = -1.0\n', "momentum"),
        ('seeds = 0\n[optimizer]\nlr = 0.1\n', "seeds = 0"),
    ],
)
def test_wrong_type_or_range_names_key_and_value(tmp_path, text, expected):
    assert expected in error_of('name = "x"\n' + text, tmp_path)


def test_every_value_of_an_axis_is_validated(tmp_path):
    message = error_of('name = "x"\n[optimizer]\nlr = [0.1, -2.0]\n', tmp_path)
    assert "-2.0" in message and "lr" in message.lower()


def test_hyperparameter_of_another_rule_is_refused(tmp_path):
    message = error_of('name = "x"\n[optimizer]\nname = "adam"\nlr = 0.1\nmomentum = 0.9\n', tmp_path)
    assert "momentum does not apply to 'adam'" in message and "betas" in message


def test_sgd_without_lr_takes_torchs_default(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('name = "x"\n[optimizer]\nname = "sgd"\n')
    default = torch.optim.SGD([torch.zeros(1, requires_grad=True)]).defaults["lr"]
    assert load_study(path).base.optimizer.hyperparameters()["lr"] == default


def test_a_user_class_without_a_default_lr_needs_one(tmp_path):
    (tmp_path / "my_rules.py").write_text(
        "import torch\n\n\nclass PlainSGD(torch.optim.Optimizer):\n"
        "    def __init__(self, params, lr):\n        super().__init__(params, {'lr': lr})\n"
    )
    assert "lr is required" in error_of('name = "x"\n[optimizer]\nname = "my_rules.py:PlainSGD"\n', tmp_path)


def test_nesterov_without_momentum_is_refused_like_torch(tmp_path):
    message = error_of('name = "x"\n[optimizer]\nlr = 0.1\nnesterov = true\n', tmp_path)
    assert "[optimizer]" in message and "esterov" in message


def test_invalid_toml_names_the_file(tmp_path):
    assert "not valid TOML" in error_of("name = \n", tmp_path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(GdlabError, match="not found"):
        load_study(tmp_path / "nope.toml")


def test_lists_become_grid_axes_but_list_settings_need_lists_of_lists(tmp_path):
    spec = study(
        'name = "x"\n[model]\nhidden = [[8], [8, 8]]\n[optimizer]\nlr = [0.1, 0.01]\nmomentum = 0.9\n', tmp_path
    )
    assert spec.axes == {"model.hidden": [[8], [8, 8]], "optimizer.lr": [0.1, 0.01]}
    points = [(c.settings.model.hidden, c.settings.optimizer.lr) for c in configurations(spec)]
    assert points == [([8], 0.1), ([8], 0.01), ([8, 8], 0.1), ([8, 8], 0.01)]
    plain = study('name = "x"\n[model]\nhidden = [8, 8]\n[optimizer]\nlr = 0.1\n', tmp_path)
    assert plain.axes == {} and plain.base.model.hidden == [8, 8]


def test_plan_is_configurations_times_seeds_times_implementations(tmp_path):
    spec = study(
        'name = "x"\nseeds = 3\n[optimizer]\nimplementation = "both"\nlr = [0.1, 0.01]\nmomentum = [0.0, 0.9]\n',
        tmp_path,
    )
    plans = plan_runs(spec)
    assert len(plans) == 4 * 3 * 2
    assert len({plan.id for plan in plans}) == len(plans)
    assert plans[0].id == "00_lr=0.1_mom=0_s0_scratch"
    assert plans[1].id == "00_lr=0.1_mom=0_s0_torch"
    assert [plan.id for plan in plan_runs(spec)] == [plan.id for plan in plans]  # deterministic
    assert plans[0].config()["momentum"] == 0.0 and plans[0].config()["implementation"] == "scratch"


def test_explicit_list_of_configurations(tmp_path):
    spec = study(
        """
name = "x"
[optimizer]
lr = 0.01
[search]
kind = "list"
[[search.configs]]
lr = 0.01
momentum = 0.0
[[search.configs]]
lr = 0.1
momentum = 0.9
weight_decay = 0.01
""",
        tmp_path,
    )
    found = [c.settings.optimizer.hyperparameters() for c in configurations(spec)]
    assert [(h["lr"], h["momentum"], h["weight_decay"]) for h in found] == [(0.01, 0.0, 0), (0.1, 0.9, 0.01)]


def test_list_entry_errors_name_the_entry(tmp_path):
    text = 'name = "x"\n[optimizer]\nlr = 0.1\n[search]\nkind = "list"\n[[search.configs]]\nlr = 0.1\n[[search.configs]]\nlrr = 1\n'
    message = error_of(text, tmp_path)
    assert "entry 2" in message and "lrr does not apply to 'sgd'" in message and "its hyperparameters are: lr, momentum" in message


def test_random_search_draws_log_uniform_lr_and_uniform_momentum(tmp_path):
    text = """
name = "x"
[optimizer]
lr = 0.01
[search]
kind = "random"
trials = 400
seed = 7
[search.space]
lr = [1e-4, 1.0]
momentum = [0.0, 0.99]
"""
    spec = study(text, tmp_path)
    draws = [c.settings.optimizer for c in configurations(spec)]
    lrs = [draw.lr for draw in draws]
    momenta = [draw.momentum for draw in draws]
    assert all(1e-4 <= lr <= 1.0 for lr in lrs) and all(0.0 <= m <= 0.99 for m in momenta)
    # Log-uniform: about a quarter of the draws in each decade of [1e-4, 1].
    per_decade = [sum(10.0**-k <= lr < 10.0 ** (1 - k) for lr in lrs) for k in range(1, 5)]
    assert all(60 <= count <= 140 for count in per_decade), per_decade
    # Uniform: the mean is near the middle.
    assert abs(sum(momenta) / len(momenta) - 0.495) < 0.05
    again = [c.settings.optimizer.lr for c in configurations(study(text, tmp_path))]
    assert again == lrs
    other_seed = [c.settings.optimizer.lr for c in configurations(study(text.replace("seed = 7", "seed = 8"), tmp_path))]
    assert other_seed != lrs


def test_random_search_refuses_log_range_through_zero(tmp_path):
    text = 'name = "x"\n[optimizer]\nlr = 0.1\n[search]\nkind = "random"\n[search.space]\nweight_decay = [0.0, 0.1]\n'
    assert "log-uniformly" in error_of(text, tmp_path)


def test_ablation_factors_must_be_two_valued_axes(tmp_path):
    text = 'name = "x"\n[model]\nkind = "convnet"\n[optimizer]\nlr = 0.1\n[ablation]\nfactors = ["model.batchnorm"]\n'
    assert "exactly two values" in error_of(text, tmp_path)
    ok = study(text.replace('kind = "convnet"', 'kind = "convnet"\nbatchnorm = [true, false]'), tmp_path)
    assert ok.ablation.factors == ["model.batchnorm"]


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_experiment_is_valid(path):
    spec = load_study(path)
    assert plan_runs(spec)
    assert spec.name == path.stem


def test_parse_study_needs_no_file():
    spec = parse_study({"name": "inline", "optimizer": {"lr": 0.1, "momentum": [0.0, 0.5]}})
    assert [c.settings.optimizer.momentum for c in configurations(spec)] == [0.0, 0.5]
    assert not math.isnan(spec.base.data.val_fraction)
