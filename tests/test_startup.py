"""Start-up: a study imports only what it uses, when it uses it.

scipy.stats (most of a second), matplotlib and pandas are for intervals,
reports and tables: running a study must not pay for them at import. Each
check runs a fresh interpreter, since this test process has imported them
long ago.
"""

import json
import subprocess
import sys

HEAVY = ("scipy", "matplotlib", "pandas")


def imported_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; which of HEAVY it left in sys.modules, and what it printed."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))"
    finished = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    *printed, modules = finished.stdout.strip().splitlines()
    return {"modules": json.loads(modules), "printed": printed}


def test_the_study_runner_imports_neither_scipy_nor_matplotlib_nor_pandas():
    assert imported_after("import gdlab.study.runner")["modules"] == []


def test_scipy_comes_in_with_the_first_interval_and_not_before():
    one_seed = imported_after(
        "from gdlab.study.stats import mean_ci, paired_effect\n"
        "print(mean_ci([0.91]).format(), paired_effect([0.9], [0.8]).n_pairs)"
    )
    assert one_seed == {"modules": [], "printed": ["0.910 1"]}
    seeds = imported_after(
        "from gdlab.study.stats import mean_ci\n"
        "interval = mean_ci([0.90, 0.92, 0.94])\n"
        "print(round(interval.ci_low, 4), round(interval.ci_high, 4))"
    )
    # t(0.975, 2) = 4.3027; standard error 0.01155
    assert seeds == {"modules": ["scipy"], "printed": ["0.8703 0.9697"]}


def test_a_gdlab_optimizer_and_a_schedule_free_study_never_import_torch_dynamo():
    # torch.optim.Optimizer's methods import torch._dynamo (about 1 s) on first call, to keep
    # torch.compile out of them; gdlab's optimizers call them eagerly and must not pay it.
    code = (
        "import sys, torch, gdlab.optim\n"
        "from gdlab.study.problem import epoch_learning_rates\n"
        "from gdlab.study.spec import TrainSpec\n"
        "model = torch.nn.Linear(3, 2)\n"
        "for rule in (gdlab.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),\n"
        "             gdlab.optim.Adam(model.parameters()), gdlab.optim.RAdam(model.parameters())):\n"
        "    model(torch.ones(4, 3)).sum().backward()\n"
        "    rule.step(); rule.zero_grad(); rule.load_state_dict(rule.state_dict())\n"
        "    rule.add_param_group({'params': [torch.zeros(1, requires_grad=True)]})\n"
        "assert epoch_learning_rates(TrainSpec(epochs=2), [0.1, 0.2]) is None\n"
        "print('torch._dynamo' in sys.modules)"
    )
    assert imported_after(code)["printed"] == ["False"]
