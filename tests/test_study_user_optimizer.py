"""A researcher's own optimizer in a study: loaded from a file, validated, paired, resumed, compared.

The optimizer files here are written the way people write them: a
torch.optim.Optimizer subclass with a plain per-parameter loop, no gdlab import.
"""

import shutil
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from gdlab.errors import GdlabError
from gdlab.report import write_report
from gdlab.study import load_study, run_study

ROOT = Path(__file__).resolve().parent.parent

STUDY = """
name = "user-rule"
seeds = 1

[data]
dataset = "mnist-5k"
val_fraction = 0.2
train_examples = 400

[model]
kind = "mlp"
hidden = [16]

[train]
epochs = 1
batch_size = 64

[optimizer]
{optimizer}
"""

# A hand-written AdamW, the loop a student writes from the paper: equal to torch's single-tensor
# AdamW only if every operation matches, which is what the pair below measures.
MY_ADAMW = '''
import torch


class MyAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                state["m"].lerp_(p.grad, 1 - beta1)
                state["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                bias1 = 1 - beta1 ** t
                bias2 = 1 - beta2 ** t
                step_size = group["lr"] / bias1
                denom = (state["v"].sqrt() / (bias2 ** 0.5)).add_(group["eps"])
                p.addcdiv_(state["m"], denom, value=-step_size)
'''


def quiet() -> Console:
    return Console(quiet=True)


def study_file(folder: Path, optimizer: str, extra: str = "") -> Path:
    path = folder / "study.toml"
    path.write_text(STUDY.format(optimizer=textwrap.dedent(optimizer)) + extra)
    return path


def test_a_users_lion_class_runs_a_study_end_to_end(tmp_path):
    shutil.copy(ROOT / "examples" / "lion_optimizer.py", tmp_path / "lion_optimizer.py")
    path = study_file(tmp_path, 'name = "lion_optimizer.py:Lion"\nlr = [1e-4, 1e-3]\n')
    summary = run_study(path, out_dir=tmp_path / "out", console=quiet())
    assert len(summary["runs"]) == 2
    assert {run["config"]["lr"] for run in summary["runs"]} == {1e-4, 1e-3}
    assert all(run["status"] == "ok" for run in summary["runs"])
    assert all(run["config"]["optimizer"].endswith("lion_optimizer.py:Lion") for run in summary["runs"])
    assert summary["selected"]["test_accuracy"] > 0.3  # 10 classes: well above chance after one epoch
    # Config ids name the class, not the path (ids are file names).
    assert all("/" not in run["id"] for run in summary["runs"])


def test_a_users_hyperparameters_are_checked_against_its_signature(tmp_path):
    shutil.copy(ROOT / "examples" / "lion_optimizer.py", tmp_path / "lion_optimizer.py")
    path = study_file(tmp_path, 'name = "lion_optimizer.py:Lion"\nlr = 1e-4\nmomentum = 0.9\n')
    with pytest.raises(GdlabError, match=r"momentum does not apply to .*Lion.*its hyperparameters are: lr, betas, weight_decay"):
        load_study(path)
    path = study_file(tmp_path, 'name = "lion_optimizer.py:Lion"\nlr = -1.0\n')
    with pytest.raises(GdlabError, match=r"\[optimizer\] Invalid learning rate: -1.0"):
        load_study(path)


def test_a_missing_file_or_class_is_named(tmp_path):
    with pytest.raises(GdlabError, match="no file 'nowhere.py'"):
        load_study(study_file(tmp_path, 'name = "nowhere.py:Lion"\n'))
    (tmp_path / "rules.py").write_text("import torch\nclass Other(torch.optim.SGD):\n    pass\n")
    with pytest.raises(GdlabError, match="has no 'Lion'; names defined there: Other"):
        load_study(study_file(tmp_path, 'name = "rules.py:Lion"\n'))


EPS_INSIDE_THE_ROOT = ('denom = (state["v"].sqrt() / (bias2 ** 0.5)).add_(group["eps"])',
                       'denom = (state["v"] / bias2 + group["eps"]).sqrt()')


@pytest.mark.parametrize("eps_inside_the_root", [False, True])
def test_a_hand_written_adamw_paired_with_torchs_records_the_loss_difference(tmp_path, eps_inside_the_root):
    source = MY_ADAMW.replace(*EPS_INSIDE_THE_ROOT) if eps_inside_the_root else MY_ADAMW
    (tmp_path / "my_adamw.py").write_text(source)
    path = study_file(
        tmp_path, 'name = "my_adamw.py:MyAdamW"\nimplementation = "both"\nreference = "adamw"\nlr = 1e-3\n'
    )
    summary = run_study(path, out_dir=tmp_path / "out", console=quiet())
    scratch = [run for run in summary["runs"] if run["implementation"] == "scratch"]
    torch_runs = [run for run in summary["runs"] if run["implementation"] == "torch"]
    assert len(scratch) == len(torch_runs) == 1
    difference = scratch[0]["max_loss_difference"]
    if eps_inside_the_root:  # another rule: the pair shows it
        assert difference > 1e-6
    else:  # the same operations as torch's single-tensor AdamW: equal at every iteration
        assert difference == 0.0


def test_pairing_needs_a_reference_for_a_users_class(tmp_path):
    (tmp_path / "my_adamw.py").write_text(MY_ADAMW)
    path = study_file(tmp_path, 'name = "my_adamw.py:MyAdamW"\nimplementation = "both"\n')
    with pytest.raises(GdlabError, match='add reference = "adamw"'):
        load_study(path)


def test_resume_refuses_a_changed_optimizer_file_and_redo_changed_retrains(tmp_path):
    shutil.copy(ROOT / "examples" / "lion_optimizer.py", tmp_path / "lion_optimizer.py")
    path = study_file(tmp_path, 'name = "lion_optimizer.py:Lion"\nlr = 1e-4\n')
    out = tmp_path / "out"
    first = run_study(path, out_dir=out, console=quiet())
    with open(tmp_path / "lion_optimizer.py", "a") as file:
        file.write("\n# edited after the study ran\n")
    with pytest.raises(GdlabError, match=r"(?s)another spec.*optimizer.file_sha256.*--redo-changed"):
        run_study(path, out_dir=out, resume=True, console=quiet())
    again = run_study(path, out_dir=out, resume=True, redo_changed=True, console=quiet())
    assert again["runs"][0]["val_accuracy"] == first["runs"][0]["val_accuracy"]  # a comment changes no number


def test_resume_refuses_a_changed_model_section(tmp_path):
    path = study_file(tmp_path, 'name = "sgd"\nlr = 0.1\n')
    out = tmp_path / "out"
    run_study(path, out_dir=out, console=quiet())
    path.write_text(path.read_text().replace("hidden = [16]", "hidden = [32]"))
    with pytest.raises(GdlabError, match=r"model.hidden: \[16\] -> \[32\]"):
        run_study(path, out_dir=out, resume=True, console=quiet())


def test_a_study_compares_builtin_rules_and_a_users_rule_each_with_its_own_settings(tmp_path):
    shutil.copy(ROOT / "examples" / "lion_optimizer.py", tmp_path / "lion_optimizer.py")
    path = study_file(tmp_path, 'name = "sgd"\n', extra=textwrap.dedent("""
        [search]
        kind = "list"
        configs = [
          {name = "sgd", lr = 0.1, momentum = 0.9},
          {name = "adamw", lr = 3e-3},
          {name = "lion_optimizer.py:Lion", lr = 3e-4},
        ]
    """))
    path.write_text(path.read_text().replace("seeds = 1", "seeds = 2"))
    summary = run_study(path, out_dir=tmp_path / "out", console=quiet())
    names = [run["config"]["optimizer"].rpartition(":")[2] for run in summary["runs"]]
    assert names == ["sgd", "sgd", "adamw", "adamw", "Lion", "Lion"]
    assert "momentum" not in summary["runs"][2]["config"]  # each rule keeps its own hyperparameters
    # Which rule wins on validation, and by how much, paired by seed.
    rules = summary["rules"]
    assert len(rules) == 3
    winner = max(summary["configurations"], key=lambda c: c["val_accuracy"]["mean"])
    assert rules[0]["config_id"] == winner["id"] == summary["selected"]["config_id"]
    assert "difference_from_best" not in rules[0]
    for row in rules[1:]:
        assert row["difference_from_best"]["n_pairs"] == 2
        assert row["difference_from_best"]["effect"] >= 0
    report = write_report(tmp_path / "out").read_text()
    assert "## Rules compared" in report and "| Lion |" in report


def test_a_class_from_the_callers_own_module_by_name(tmp_path):
    import torch

    path = study_file(tmp_path, 'name = "mysgd"\nlr = 0.1\n')
    summary = run_study(path, out_dir=tmp_path / "out", console=quiet(), optimizers={"mysgd": torch.optim.SGD})
    assert summary["runs"][0]["config"]["optimizer"] == "torch.optim.sgd:SGD"


def test_lbfgs_trains_in_a_study_through_a_closure_equal_to_torchs(tmp_path):
    path = study_file(tmp_path, 'name = "lbfgs"\nimplementation = "both"\nlr = 0.5\nmax_iter = 3\n')
    summary = run_study(path, out_dir=tmp_path / "out", console=quiet())
    assert all(run["status"] == "ok" for run in summary["runs"])
    assert summary["pairs"][0]["max_loss_difference"] == 0.0


@pytest.mark.parametrize(
    "rule, message",
    [("sparseadam", "fails one step on a tiny dense problem.*does not support dense gradients"), ("muon", "only supports 2D parameters")],
)
def test_rules_that_cannot_train_a_study_model_are_refused_before_training(tmp_path, rule, message):
    with pytest.raises(GdlabError, match=message):
        load_study(study_file(tmp_path, f'name = "{rule}"\n'))


def test_a_users_rule_declaration_from_a_file_trains_stacked(tmp_path):
    # A RuleDeclaration (pure init/update) instead of a bare class: the vectorized backend can stack it.
    shutil.copy(ROOT / "tests" / "new_rule" / "heavyball.py", tmp_path / "heavyball.py")
    path = study_file(tmp_path, 'name = "heavyball.py:RULE"\nlr = [0.01, 0.05]\n')
    summary = run_study(path, out_dir=tmp_path / "out", backend="vectorized", console=quiet())
    assert summary["backend"] == "vectorized"
    assert [run["status"] for run in summary["runs"]] == ["ok", "ok"]
    sequential = run_study(path, out_dir=tmp_path / "sequential", backend="sequential", console=quiet())
    for stacked_run, run in zip(summary["runs"], sequential["runs"]):
        assert abs(stacked_run["val_accuracy"] - run["val_accuracy"]) <= 0.02  # the stacked tolerance of test_study_run
