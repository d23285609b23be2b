"""Studies end to end on real mnist-5k data: summary contract, pairs, divergence, seeds, resume."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from study_files import write_study

import gdlab.study.runner as runner
from gdlab.errors import GdlabError
from gdlab.report import write_report
from gdlab.study import StudyInterrupted, load_study, plan_runs, run_study
from gdlab.study.backends import plan_jobs

ROOT = Path(__file__).resolve().parents[1]


def quiet():
    return Console(file=open(os.devnull, "w"))


def comparable(summary: dict) -> dict:
    """A summary without what legitimately changes between two runs of a study (times, paths)."""
    summary = json.loads(json.dumps(summary))
    for run in summary["runs"]:
        run.pop("seconds")
    for configuration in summary["configurations"]:
        configuration.pop("seconds")
    summary.pop("environment")
    summary.pop("out_dir")
    return summary


def test_summary_follows_the_contract(tmp_path):
    spec = load_study(write_study(tmp_path, momentum="[0.0, 0.9]"))
    summary = run_study(spec, out_dir=tmp_path / "out", console=quiet())
    write_report(tmp_path / "out")  # the analyzer, from the folder alone (as `gdlab run` does after each job)
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["experiment"] == "tiny" and summary["experiment"] == "tiny"
    assert len(on_disk["runs"]) == 4
    for run in on_disk["runs"]:
        for key in ("id", "config", "seed", "status", "train_accuracy", "val_accuracy", "val_loss", "seconds"):
            assert key in run
        assert run["status"] == "ok" and 0.0 <= run["val_accuracy"] <= 1.0
    selected = on_disk["selected"]
    assert selected["id"] in {run["id"] for run in on_disk["runs"]}
    assert 0.0 <= selected["test_accuracy"] <= 1.0 and selected["test_loss"] > 0
    best = max(on_disk["runs"], key=lambda run: run["val_accuracy"])
    assert selected["val_accuracy"] == best["val_accuracy"]
    for name in ("report.md", "study.toml", "plots/training_loss.png", "plots/validation_accuracy.png"):
        assert (tmp_path / "out" / name).is_file()
    for run in on_disk["runs"]:
        rows = (tmp_path / "out" / "metrics" / f"{run['id']}.csv").read_text().splitlines()
        assert rows[0] == "iteration,epoch,loss,accuracy" and len(rows) == 1 + run["iterations"]


def test_test_set_is_evaluated_for_the_selected_configuration_only(tmp_path, monkeypatch):
    evaluated = []
    real = runner.test_metrics

    def counting(plan, state_dict):
        evaluated.append(plan.id)
        return real(plan, state_dict)

    monkeypatch.setattr(runner, "test_metrics", counting)
    spec = load_study(write_study(tmp_path, seeds=2, lr="[0.05, 0.2, 0.01]"))
    summary = run_study(spec, out_dir=tmp_path / "out", console=quiet())
    assert sorted(evaluated) == sorted(summary["selected"]["run_ids"])
    assert len(evaluated) == 2
    assert all("test_accuracy" not in run for run in summary["runs"])


def test_paired_scratch_and_torch_sgd_agree_exactly(tmp_path):
    spec = load_study(write_study(tmp_path, implementation="both", momentum="0.9", lr="0.1",
                                  extra="weight_decay = 0.01\nnesterov = true"))
    summary = run_study(spec, out_dir=tmp_path / "out", console=quiet())
    assert [pair["max_loss_difference"] for pair in summary["pairs"]] == [0.0]
    scratch, reference = summary["runs"]
    assert (scratch["implementation"], reference["implementation"]) == ("scratch", "torch")
    assert scratch["val_accuracy"] == reference["val_accuracy"]
    lines = [(tmp_path / "out" / "metrics" / f"{run['id']}.csv").read_text() for run in summary["runs"]]
    assert lines[0] == lines[1]
    write_report(tmp_path / "out")
    assert (tmp_path / "out" / "plots" / "pairs.png").is_file()


def test_a_diverging_configuration_is_recorded_as_diverged_and_the_study_goes_on(tmp_path):
    spec = load_study(write_study(tmp_path, lr="[0.1, 1e6]", momentum="0.9", seeds=2))
    summary = run_study(spec, out_dir=tmp_path / "out", console=quiet())
    diverged = [run for run in summary["runs"] if run["status"] == "diverged"]
    assert len(diverged) == 2 and all(run["config"]["lr"] == 1e6 for run in diverged)
    for run in diverged:
        assert run["train_accuracy"] is None and run["val_accuracy"] is None
        assert run["diverged_at_iteration"] is not None
    bad = next(c for c in summary["configurations"] if c["config"]["lr"] == 1e6)
    assert bad["status"] == "diverged" and bad["val_accuracy"]["mean"] is None
    assert summary["selected"]["config"]["lr"] == 0.1
    report = write_report(tmp_path / "out").read_text()
    assert "diverged" in report
    # No NaN anywhere in the JSON: strict readers must be able to parse it.
    json.loads((tmp_path / "out" / "summary.json").read_text(), parse_constant=lambda name: pytest.fail(name))


def test_nothing_selected_when_every_configuration_diverges(tmp_path):
    spec = load_study(write_study(tmp_path, lr="1e7", momentum="0.9"))
    summary = run_study(spec, out_dir=tmp_path / "out", console=quiet())
    assert summary["selected"] is None and "diverged" in summary["selected_reason"]


def test_seeds_give_confidence_intervals(tmp_path):
    spec = load_study(write_study(tmp_path, seeds=3, lr="0.1"))
    summary = run_study(spec, out_dir=tmp_path / "out", console=quiet())
    (configuration,) = summary["configurations"]
    figures = configuration["val_accuracy"]
    values = [run["val_accuracy"] for run in summary["runs"]]
    assert figures["n"] == 3 and figures["mean"] == pytest.approx(sum(values) / 3)
    assert figures["ci_low"] < figures["mean"] < figures["ci_high"]
    assert len(set(values)) > 1  # seeds really differ
    selected = summary["selected"]
    assert len(selected["test_accuracies"]) == 3
    low, high = selected["test_accuracy_ci"]
    assert low <= selected["test_accuracy"] <= high


def test_existing_study_folder_is_not_overwritten_without_resume(tmp_path):
    spec = load_study(write_study(tmp_path, lr="0.1", epochs=1))
    run_study(spec, out_dir=tmp_path / "out", console=quiet())
    with pytest.raises(GdlabError, match="--resume"):
        run_study(spec, out_dir=tmp_path / "out", console=quiet())


def test_interrupted_study_resumes_to_the_same_summary(tmp_path):
    path = write_study(tmp_path, seeds=2, lr="[0.05, 0.2]", momentum="[0.0, 0.9]")
    spec = load_study(path)
    whole = run_study(spec, out_dir=tmp_path / "whole", backend="sequential", console=quiet())

    finished = []

    def stop_after_three(outcome):
        finished.append(outcome.plan.id)
        if len(finished) == 3:
            raise KeyboardInterrupt

    with pytest.raises(StudyInterrupted, match="3 of 8 runs complete.*--resume"):
        run_study(spec, out_dir=tmp_path / "cut", backend="sequential", console=quiet(), on_outcome=stop_after_three)
    assert not (tmp_path / "cut" / "summary.json").exists()

    # One saved record half-written, one corrupted: both must be redone, not trusted.
    plans = plan_runs(spec)
    (tmp_path / "cut" / "runs" / f"{plans[0].id}.json").write_text('{"record": {"id": ')
    metrics = tmp_path / "cut" / "metrics" / f"{plans[1].id}.csv"
    metrics.write_text("\n".join(metrics.read_text().splitlines()[:-3]) + "\n")

    lines = []
    console = Console(file=open(os.devnull, "w"))
    console.print = lambda *args, **kwargs: lines.append(" ".join(map(str, args)))
    resumed = run_study(spec, out_dir=tmp_path / "cut", backend="sequential", resume=True, console=console)
    assert "resumed: 1 of 8 runs already complete" in lines
    assert comparable(resumed) == comparable(whole)


def test_interrupted_vectorized_study_resumes_to_the_same_summary(tmp_path):
    # Nesterov is a flag, shared by the members of a stack: two stacked groups of six runs (2 lr x 3 seeds).
    spec = load_study(write_study(tmp_path, seeds=3, lr="[0.05, 0.2]", momentum="0.9",
                                  extra="nesterov = [false, true]"))
    whole = run_study(spec, out_dir=tmp_path / "whole", console=quiet())
    assert whole["backend"] == "vectorized"

    def stop_at_once(outcome):
        raise KeyboardInterrupt

    # Stopped while the first stacked group (six runs) is being handed over:
    # the whole group is on disk, never part of it.
    with pytest.raises(StudyInterrupted, match="6 of 12 runs complete"):
        run_study(spec, out_dir=tmp_path / "cut", console=quiet(), on_outcome=stop_at_once)
    assert len(list((tmp_path / "cut" / "runs").glob("*.json"))) == 6
    resumed = run_study(spec, out_dir=tmp_path / "cut", resume=True, console=quiet())
    assert comparable(resumed) == comparable(whole)


def test_sigterm_stops_cleanly_and_resume_finishes(tmp_path):
    path = write_study(tmp_path, seeds=3, epochs=3, lr="[0.05, 0.1, 0.2]")
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "gdlab.cli", "run", str(path), "--out", str(out), "--backend", "sequential"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )
    deadline = time.monotonic() + 120
    while not list((out / "runs").glob("*.json")):
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "interrupted:" in output and "--resume" in output
    done = len(list((out / "runs").glob("*.json")))
    assert 1 <= done < 9 and not list((out / "runs").glob(".*.tmp"))
    resumed = subprocess.run(
        [sys.executable, "-m", "gdlab.cli", "run", str(path), "--out", str(out), "--resume"],
        capture_output=True, text=True, cwd=ROOT, timeout=180,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed: {done} of 9 runs already complete" in resumed.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["runs"]) == 9 and all(math.isfinite(run["val_accuracy"]) for run in summary["runs"])


def test_ablation_reports_each_factor_effect_paired_by_seed(tmp_path):
    path = tmp_path / "ablation.toml"
    path.write_text(
        """
name = "tiny-ablation"
seeds = 2
[data]
dataset = "mnist-5k"
train_examples = 300
[model]
kind = "convnet"
width = 4
batchnorm = [false, true]
[train]
epochs = 2
batch_size = 50
augment = "hflip"
schedule = ["step", "none"]
step_size = 1
gamma = 0.5
[optimizer]
lr = 0.05
[ablation]
factors = ["model.batchnorm", "train.schedule"]
"""
    )
    summary = run_study(load_study(path), out_dir=tmp_path / "out", console=quiet())
    ablation = summary["ablation"]
    assert len(ablation["arms"]) == 4 and all("test_accuracy" in arm for arm in ablation["arms"])
    by_levels = {(arm["levels"]["model.batchnorm"], arm["levels"]["train.schedule"]): arm for arm in ablation["arms"]}
    effects = {effect["factor"]: effect for effect in ablation["effects"]}
    batchnorm = effects["model.batchnorm"]
    # Switches compare on (true) against off whatever order the file gives.
    assert (batchnorm["first"], batchnorm["second"]) == (True, False) and batchnorm["n_pairs"] == 4
    expected = sum(by_levels[(True, s)]["test_accuracy"] - by_levels[(False, s)]["test_accuracy"] for s in ("step", "none")) / 2
    assert batchnorm["effect"] == pytest.approx(expected)
    schedule = effects["train.schedule"]
    assert (schedule["first"], schedule["second"]) == ("step", "none")
    assert schedule["p_value"] is None or 0.0 <= schedule["p_value"] <= 1.0
    assert "## Ablation" in write_report(tmp_path / "out").read_text()


def test_vectorized_backend_agrees_with_sequential(tmp_path):
    path = write_study(tmp_path, seeds=2, lr="[0.05, 0.2, 1e6]", momentum="[0.0, 0.9]")
    spec = load_study(path)
    sequential = run_study(spec, out_dir=tmp_path / "seq", backend="sequential", console=quiet())
    vectorized = run_study(spec, out_dir=tmp_path / "vec", backend="auto", console=quiet())
    assert sequential["backend"] == "sequential" and vectorized["backend"] == "vectorized"
    for one, other in zip(sequential["runs"], vectorized["runs"]):
        assert one["id"] == other["id"] and one["status"] == other["status"]
        if one["status"] == "ok":
            assert abs(one["val_accuracy"] - other["val_accuracy"]) <= 0.02
            losses = [
                [float(row.split(",")[2]) for row in (tmp_path / folder / "metrics" / f"{one['id']}.csv").read_text().splitlines()[1:]]
                for folder in ("seq", "vec")
            ]
            # float32, 2 epochs: stacked matmuls round differently from one model's.
            assert losses[0] == pytest.approx(losses[1], rel=1e-4, abs=1e-5)
        else:
            assert one["diverged_at_iteration"] == other["diverged_at_iteration"]
    assert vectorized["selected"]["config_id"] == sequential["selected"]["config_id"]


def test_the_runs_of_several_seeds_stack_together_up_to_the_stack_width(tmp_path, monkeypatch):
    spec = load_study(write_study(tmp_path, seeds=3, lr="[0.05, 0.2]"))
    backend, jobs = plan_jobs(plan_runs(spec), "auto")
    assert backend == "vectorized"
    assert [(job.kind, sorted(plan.seed for plan in job.plans)) for job in jobs] == [("stacked", [0, 0, 1, 1, 2, 2])]
    # Whole seeds only: with room for five runs, seeds 0 and 1 share a stack and seed 2 gets its own.
    monkeypatch.setattr("gdlab.study.backends.STACK_WIDTH", 5)
    _, jobs = plan_jobs(plan_runs(spec), "auto")
    assert [sorted(plan.seed for plan in job.plans) for job in jobs] == [[0, 0, 1, 1], [2, 2]]


def test_paired_and_torch_runs_are_never_stacked(tmp_path):
    spec = load_study(write_study(tmp_path, implementation="both", lr="[0.05, 0.2]", epochs=1))
    summary = run_study(spec, out_dir=tmp_path / "out", backend="auto", console=quiet())
    assert summary["backend"] == "sequential"
    assert [pair["max_loss_difference"] for pair in summary["pairs"]] == [0.0, 0.0]
