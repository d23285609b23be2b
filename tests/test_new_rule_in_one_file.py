"""A rule added as one new file is found by study, check, verify and the vectorized backend.

The file (tests/new_rule/heavyball.py) is registered through $GDLAB_RULE_PATH in a
subprocess, so no other test sees it.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

RULE_FOLDER = Path(__file__).resolve().parent / "new_rule"

SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    from rich.console import Console

    import gdlab.optim
    from gdlab.check import check
    from gdlab.check.command import rule_names
    from gdlab.optim import registry
    from gdlab.study import run_study
    from gdlab.verify import compare_rule, rule_checks

    work = Path(sys.argv[1])
    result = {"registered": "heavyball" in registry.names(), "listed": "heavyball" in rule_names(),
              "exported": hasattr(gdlab.optim, "HeavyBall")}

    (work / "study.toml").write_text("""
    name = "heavyball"
    [data]
    train_examples = 300
    [model]
    hidden = [8]
    [train]
    epochs = 1
    [optimizer]
    name = "heavyball"
    lr = [0.01, 0.05]
    momentum = [0.5, 0.9]
    """)
    summary = run_study(work / "study.toml", out_dir=work / "out", backend="vectorized", console=Console(quiet=True))
    result["study_backend"] = summary["backend"]
    result["study_status"] = [run["status"] for run in summary["runs"]]

    (work / "student.py").write_text("""
    import torch

    def train(n_epochs, model, loss_fn, train_loader, lr, momentum):
        velocity = [torch.zeros_like(p) for p in model.parameters()]
        for epoch in range(n_epochs):
            for x, y in train_loader:
                model.zero_grad()
                loss_fn(model(x), y).backward()
                with torch.no_grad():
                    for p, v in zip(model.parameters(), velocity):
                        v.mul_(momentum).sub_(p.grad * lr)
                        p.add_(v)
    """)
    report = check(str(work / "student.py") + ":train", against="heavyball", hparams={"lr": 0.05, "momentum": 0.9})
    result["check_verdict"] = report.to_json()["verdict"]

    heavyball = next(c for c in rule_checks() if c[0] == "HeavyBall")
    result["verify_passed"] = compare_rule(*heavyball).passed
    print(json.dumps(result))
''')


def test_a_rule_in_one_new_file_is_found_everywhere(tmp_path):
    environment = {**os.environ, "GDLAB_RULE_PATH": str(RULE_FOLDER)}
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=environment, timeout=240
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {
        "registered": True,
        "listed": True,
        "exported": True,
        "study_backend": "vectorized",
        "study_status": ["ok"] * 4,
        "check_verdict": "pass",
        "verify_passed": True,
    }


def test_without_the_folder_the_rule_is_unknown():
    probe = "from gdlab.optim import registry; print('heavyball' in registry.names())"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                               env={key: value for key, value in os.environ.items() if key != "GDLAB_RULE_PATH"})
    assert completed.stdout.strip() == "False"
