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
