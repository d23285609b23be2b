"""A study folder under faults and bad input: changed specs, broken records, two writers, kill -9,
huge grids, overflowing numbers, a full or read-only disk. Real mnist-5k studies, tiny networks."""

import errno
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from study_files import write_study

import gdlab.cli
from gdlab.errors import GdlabError
from gdlab.study import StudyInterrupted, load_study, plan_runs, run_study
from gdlab.study.records import ADDED_SETTINGS, LOCK_NAME, StudyFolder, write_atomically
from gdlab.study.runner import planned_run_count

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("id", "status", "train_accuracy", "val_accuracy", "val_loss", "train_loss", "iterations")


def quiet() -> Console:
    return Console(file=open(os.devnull, "w"))


def recording(lines: list[str]) -> Console:
    console = Console(file=open(os.devnull, "w"), width=400)
    console.print = lambda *args, **kwargs: lines.append(" ".join(map(str, args)))
    return console


def figures(summary: dict) -> dict:
    """What a study found: each run's figures and the selected configuration's test figures."""
    return {
        "runs": [{key: run[key] for key in FIGURES} for run in summary["runs"]],
        "selected": {key: summary["selected"][key] for key in ("config_id", "test_accuracy", "test_loss")},
    }


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def cli(monkeypatch, capsys, *arguments: str) -> tuple[int, str]:
    """``gdlab ARGUMENTS`` in this process: its exit code and everything it printed, whitespace joined."""
    monkeypatch.setattr(sys, "argv", ["gdlab", *map(str, arguments)])
    monkeypatch.setenv("COLUMNS", "1000")
    try:
        gdlab.cli.main()
        code = 0
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def gdlab_command(*arguments) -> list[str]:
    return [sys.executable, "-m", "gdlab.cli", *map(str, arguments)]


def subprocess_env() -> dict:
    # The same thread count as this process: sums split across threads round differently.
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "COLUMNS": "1000"}


# --- a changed spec -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A tiny finished study, trained once for the tests that only resume it."""
    folder = tmp_path_factory.mktemp("finished")
    path = write_study(folder, epochs=1)
    run_study(path, out_dir=folder / "out", console=quiet())
    return path, folder / "out"


CHANGES = [
    ("split_seed = 123", "split_seed = 7", "data.split_seed: 123 -> 7"),
    ("train_examples = 600", "train_examples = 500", "data.train_examples: 600 -> 500"),
    ("epochs = 1", "epochs = 2", "train.epochs: 1 -> 2"),
    ("batch_size = 64", "batch_size = 32", "train.batch_size: 64 -> 32"),
    ("lr = [0.05, 0.2]", "lr = [0.05, 0.1]", "optimizer.lr: [0.05, 0.2] -> [0.05, 0.1]"),
    ("momentum = 0.0", "momentum = 0.0\nmaximize = true", "optimizer.maximize: False -> True"),
    ('activation = "relu"', 'activation = "tanh"', "model.activation: 'relu' -> 'tanh'"),
    ("seeds = 1", "seeds = 2", "seeds: 1 -> 2"),
    ("batch_size = 64", "batch_size = 64\nprecision = \"bf16\"", "train.precision: 'full' -> 'bf16'"),
]


@pytest.mark.parametrize("before, after, difference", CHANGES, ids=[change[2].split(":")[0] for change in CHANGES])
def test_resume_refuses_a_spec_changed_in_any_section_and_keeps_the_folders_spec(
    finished_study, tmp_path, before, after, difference
):
    path, finished = finished_study
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    saved = {name: (out / name).read_bytes() for name in ("study.toml", "identity.json")}
    changed = tmp_path / "changed.toml"
    assert before in path.read_text()
    changed.write_text(path.read_text().replace(before, after))
    with pytest.raises(GdlabError, match=r"(?s)another spec:.*" + re.escape(difference) + ".*--out.*--redo-changed"):
        run_study(changed, out_dir=out, resume=True, console=quiet())
    assert {name: (out / name).read_bytes() for name in saved} == saved
    assert not (out / LOCK_NAME).exists()


def test_a_folder_written_before_a_setting_existed_resumes_as_the_same_study(finished_study, tmp_path):
    # An older gdlab wrote identities without the settings it did not have yet (ADDED_SETTINGS):
    # its runs were made with their defaults, so they are this spec's runs, not another spec's.
    path, finished = finished_study
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    for file in [out / "identity.json", *(out / "runs").glob("*.json")]:
        payload = json.loads(file.read_text())
        for key in ADDED_SETTINGS:
            del payload["identity"][key]
        file.write_text(json.dumps(payload))
    lines: list[str] = []
    run_study(path, out_dir=out, resume=True, console=recording(lines))
    assert "resumed: 2 of 2 runs already complete" in lines
    # A setting changed from that default is still another spec.
    bf16 = tmp_path / "bf16.toml"
    bf16.write_text(path.read_text().replace("batch_size = 64", 'batch_size = 64\nprecision = "bf16"'))
    with pytest.raises(GdlabError, match=r"train.precision: 'full' -> 'bf16'"):
        run_study(bf16, out_dir=out, resume=True, console=quiet())


def test_a_folder_with_no_finished_run_yet_still_refuses_another_spec(finished_study, tmp_path):
    # Killed during its first run: only study.toml and identity.json are there, and they are the spec's.
    path, finished = finished_study
    out = tmp_path / "out"
    out.mkdir()
    for name in ("study.toml", "identity.json"):
        shutil.copy(finished / name, out / name)
    changed = tmp_path / "changed.toml"
    changed.write_text(path.read_text().replace("epochs = 1", "epochs = 3"))
    with pytest.raises(GdlabError, match="already holds a study; add --resume"):
        run_study(changed, out_dir=out, console=quiet())
    with pytest.raises(GdlabError, match=r"train.epochs: 1 -> 3"):
        run_study(changed, out_dir=out, resume=True, console=quiet())
    assert (out / "study.toml").read_bytes() == (finished / "study.toml").read_bytes()


def test_redo_changed_retrains_every_changed_run_and_makes_the_folder_the_new_specs(finished_study, tmp_path):
    path, finished = finished_study
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    tanh = tmp_path / "tanh.toml"
    tanh.write_text(path.read_text().replace('activation = "relu"', 'activation = "tanh"'))
    lines: list[str] = []
    redone = run_study(tanh, out_dir=out, resume=True, redo_changed=True, console=recording(lines))
    assert "resumed: 0 of 2 runs already complete" in lines
    assert sum(line.startswith("redo ") and "settings changed (model.activation)" in line for line in lines) == 2
    fresh = run_study(tanh, out_dir=tmp_path / "fresh", console=quiet())
    assert figures(redone) == figures(fresh)  # tanh-trained weights, not relu weights evaluated as tanh
    assert (out / "study.toml").read_text() == tanh.read_text()


# --- every record verified before it is trusted --------------------------------------------------


def test_broken_records_are_redone_each_named_with_its_reason(tmp_path):
    path = write_study(tmp_path, seeds=3, epochs=1)
    whole = run_study(path, out_dir=tmp_path / "out", backend="sequential", console=quiet())
    umask = os.umask(0o022)
    os.umask(umask)
    # Readable as any file the user makes (0o644 under the usual umask), not mkstemp's 0o600.
    assert {path.stat().st_mode & 0o777 for path in files_under(tmp_path / "out")} == {0o666 & ~umask}

    folder = StudyFolder(tmp_path / "out")
    ids = [plan.id for plan in plan_runs(load_study(path))]
    garbage = random.Random(13).randbytes(4000)
    folder.model_file(ids[0]).write_bytes(garbage)
    model = folder.model_file(ids[1]).read_bytes()
    folder.model_file(ids[1]).write_bytes(model[: len(model) // 2])
    torch.save({"layers.0.weight": torch.zeros(3, 3)}, folder.model_file(ids[2]))
    folder.run_json(ids[3]).write_text(folder.run_json(ids[3]).read_text()[:200])
    folder.metrics_csv(ids[4]).unlink()
    folder.run_json(ids[5]).unlink()  # killed between its model and its record
    (tmp_path / "out" / "runs" / f".{ids[0]}.json.k1ll3d.tmp").write_text('{"rec')
    (tmp_path / "out" / ".summary.json.k1ll3d.tmp").write_text("")

    lines: list[str] = []
    resumed = run_study(path, out_dir=tmp_path / "out", backend="sequential", resume=True, console=recording(lines))
    assert "resumed: 0 of 6 runs already complete" in lines
    redo = {line.split(":")[0].removeprefix("redo "): line for line in lines if line.startswith("redo ")}
    assert set(redo) == set(ids)
    assert f"models/{ids[0]}.pt unreadable (" in redo[ids[0]]
    assert f"models/{ids[1]}.pt unreadable (" in redo[ids[1]]
    assert f"models/{ids[2]}.pt holds parameters of another model" in redo[ids[2]]
    assert f"runs/{ids[3]}.json unreadable (JSONDecodeError" in redo[ids[3]]
    assert f"metrics/{ids[4]}.csv missing" in redo[ids[4]]
    assert f"runs/{ids[5]}.json missing (stopped while saving)" in redo[ids[5]]
    assert "removed 2 temporary file(s)" in " ".join(lines)
    assert not list((tmp_path / "out").rglob("*.tmp"))
    assert figures(resumed) == figures(whole)


def test_result_files_follow_the_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        write_atomically(tmp_path / "private.json", b"{}")
    finally:
        os.umask(previous)
    write_atomically(tmp_path / "shared.json", b"{}")
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o666 & ~previous


# --- one writer per folder; kill -9 at random moments -----------------------------------------


def wait_for(condition, process: subprocess.Popen, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def holder_pid(out: Path) -> int | None:
    try:
        return json.loads((out / LOCK_NAME).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def test_sigterm_and_errors_release_the_folder(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    path = write_study(tmp_path, seeds=2, epochs=1)
    out = tmp_path / "out"

    def terminate(outcome):
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(StudyInterrupted, match="--resume"):
        run_study(path, out_dir=out, backend="sequential", console=quiet(), on_outcome=terminate)
    assert not (out / LOCK_NAME).exists()
    with pytest.raises(GdlabError, match="already holds a study"):
        run_study(path, out_dir=out, console=quiet())
    assert not (out / LOCK_NAME).exists()
    assert len(run_study(path, out_dir=out, resume=True, console=quiet())["runs"]) == 4


def test_two_writers_then_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_result(
    tmp_path, monkeypatch, capsys
):
    path = write_study(tmp_path, seeds=3, epochs=3, lr="[0.05, 0.1, 0.2, 0.4]")
    whole = run_study(path, out_dir=tmp_path / "whole", backend="sequential", console=quiet())
    out = tmp_path / "out"
    # Where each kill falls: once the folder holds a seeded number of finished runs (0: while data
    # loads), plus a seeded fraction of a run, so that it lands in training or in a write.
    moments = random.Random(2024)
    kill_after = sorted(moments.sample(range(len(whole["runs"])), 3))
    killed = []
    for attempt, finished_runs in enumerate(kill_after):
        command = gdlab_command("run", path, "--out", out, "--backend", "sequential", *["--resume"] * bool(attempt))
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                                   env=subprocess_env())
        wait_for(lambda: holder_pid(out) == process.pid, process)
        if attempt == 0:
            # A second `gdlab run` (this process) while the first holds the folder, stopped so it surely still does.
            process.send_signal(signal.SIGSTOP)
            try:
                code, message = cli(monkeypatch, capsys, "run", path, "--out", out, "--resume")
            finally:
                process.send_signal(signal.SIGCONT)
            assert code == 2, message
            assert f"in use by another gdlab run (pid {process.pid} on {socket.gethostname()}" in message
            assert "--resume" in message and "another --out" in message
        wait_for(lambda: len(list((out / "runs").glob("*.json"))) >= finished_runs, process)
        time.sleep(moments.uniform(0.0, 0.1))
        process.kill()
        process.wait(timeout=60)
        if process.returncode == -signal.SIGKILL:
            killed.append(process.pid)
    assert len(killed) == 3
    lines: list[str] = []
    resumed = run_study(path, out_dir=out, backend="sequential", resume=True, console=recording(lines))
    # The last one was killed holding the folder: its lock file stayed behind, and is taken over.
    assert any(line.startswith(f"took over {out / LOCK_NAME} from pid {killed[-1]}") for line in lines), lines
    assert not list(out.rglob("*.tmp")) and not (out / LOCK_NAME).exists()
    assert figures(resumed) == figures(whole)


# --- bounded studies -------------------------------------------------------------------------


def test_a_huge_grid_is_refused_before_any_data_loads(tmp_path, monkeypatch, capsys):
    lrs = [round(0.001 * (index + 1), 4) for index in range(101)]
    momenta = [round(0.009 * index, 4) for index in range(100)]
    path = tmp_path / "huge.toml"
    path.write_text(
        f'name = "huge"\n[data]\ndataset = "mnist"\nroot = "{tmp_path / "no-data"}"\n'
        f'[optimizer]\nname = "sgd"\nlr = {lrs}\nmomentum = {momenta}\n'
    )
    code, output = cli(monkeypatch, capsys, "run", path, "--out", tmp_path / "out")
    assert code == 2, output
    assert "plans 10,100 runs (101 optimizer.lr x 100 optimizer.momentum; 1 seed(s))" in output
    assert "limit of 10,000" in output and "--max-runs 10100" in output
    assert not (tmp_path / "out").exists()
    # Raised, the cap lets the study go on, to the data (which is missing here).
    code, output = cli(monkeypatch, capsys, "run", path, "--out", tmp_path / "out", "--max-runs", "10100")
    assert code == 2 and "mnist" in output and "plans" not in output, output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "settings",
    [
        'seeds = 2\n[optimizer]\nimplementation = ["scratch", "both", "torch"]\nlr = [0.1, 0.2]\n',
        'seeds = 3\n[optimizer]\nlr = 0.1\n[search]\nkind = "list"\n'
        'configs = [{momentum = 0.9}, {implementation = "both"}, {lr = 0.3}]\n',
        '[optimizer]\nimplementation = "both"\nlr = 0.1\nmomentum = [0.0, 0.9]\n'
        '[search]\nkind = "random"\ntrials = 4\nspace = {lr = [0.001, 0.1]}\n',
    ],
)
def test_the_run_count_is_that_of_the_plan(tmp_path, settings):
    path = tmp_path / "study.toml"
    path.write_text(f'name = "count"\n{settings}')
    study = load_study(path)
    assert planned_run_count(study) == len(plan_runs(study))


def test_an_lr_that_overflows_the_training_dtype_is_refused_naming_it(tmp_path):
    with pytest.raises(GdlabError, match=r"\[optimizer\] lr = 1e\+308 does not fit in float32.*float64"):
        load_study(write_study(tmp_path, lr="[0.1, 1e308]"))
    # Trained in float64 by one arm of a dtype axis, in float32 by the other: float32 bounds it.
    path = write_study(tmp_path, lr="1e300")
    path.write_text(path.read_text().replace("batch_size = 64", 'batch_size = 64\ndtype = ["float64", "float32"]'))
    with pytest.raises(GdlabError, match=r"lr = 1e\+300 does not fit in float32"):
        load_study(path)
    with pytest.raises(GdlabError, match=r"momentum = inf is not a finite number"):
        load_study(write_study(tmp_path, momentum="inf"))
    # A huge lr that float32 holds trains, diverges, and is recorded so; the study finishes.
    summary = run_study(write_study(tmp_path, lr="[0.1, 1e30]", epochs=1), out_dir=tmp_path / "out", console=quiet())
    assert [run["status"] for run in summary["runs"]] == ["ok", "diverged"]


def test_a_study_file_that_is_not_utf8_is_one_clear_error(tmp_path, monkeypatch, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "étude"\n'.encode("latin-1"))
    code, output = cli(monkeypatch, capsys, "run", path, "--out", tmp_path / "out")
    assert code == 2 and "latin1.toml: not UTF-8 text (byte 8 is b'\\xe9')" in output, output


# --- I/O failures --------------------------------------------------------------------------


def test_disk_full_midway_is_one_line_and_the_study_resumes(tmp_path, monkeypatch, capsys):
    # ENOSPC from the operating system at the 11th fsync: the third run's record, after its metrics and model.
    path = write_study(tmp_path, seeds=2, epochs=1)
    real_fsync, calls = os.fsync, []

    def fsync_until_full(descriptor):
        calls.append(descriptor)
        if len(calls) >= 11:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync_until_full)
    code, output = cli(monkeypatch, capsys, "run", path, "--out", tmp_path / "out", "--backend", "sequential")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert code == 2, output
    assert "No space left on device (ENOSPC)" in output and "free some space" in output
    assert f"gdlab run {path} --out {tmp_path / 'out'} --resume" in output and "Traceback" not in output
    assert not list((tmp_path / "out").rglob("*.tmp")) and not (tmp_path / "out" / LOCK_NAME).exists()
    lines: list[str] = []
    resumed = run_study(path, out_dir=tmp_path / "out", resume=True, backend="sequential", console=recording(lines))
    assert "resumed: 2 of 4 runs already complete" in lines
    assert [line.split(": ", 1)[1] for line in lines if line.startswith("redo ")] == [
        f"runs/{plan_runs(load_study(path))[2].id}.json missing (stopped while saving)"
    ]
    whole = run_study(path, out_dir=tmp_path / "whole", backend="sequential", console=quiet())
    assert figures(resumed) == figures(whole)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and permission to mount; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_real_full_disk_then_a_read_only_one_are_one_line_each(small_disk, tmp_path, monkeypatch, capsys):
    # hidden = [64]: each model file is ~200 kB, so 1 MiB fills after a few of the 8 runs.
    path = write_study(tmp_path, epochs=1, lr="[0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5]")
    path.write_text(path.read_text().replace("hidden = [16]", "hidden = [64]"))
    out = small_disk / "out"
    code, output = cli(monkeypatch, capsys, "run", path, "--out", out, "--backend", "sequential")
    assert code == 2 and "No space left on device (ENOSPC)" in output and "--resume" in output, output
    saved = len(list((out / "runs").glob("*.json")))
    assert 1 <= saved < 8 and not list(out.rglob("*.tmp"))

    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code, output = cli(monkeypatch, capsys, "run", path, "--out", out, "--resume")
    assert code == 2 and "Read-only file system (EROFS)" in output and "Traceback" not in output, output

    subprocess.run(["mount", "-o", "remount,rw,size=16m", str(small_disk)], check=True)
    lines: list[str] = []
    summary = run_study(path, out_dir=out, resume=True, console=recording(lines))
    assert f"resumed: {saved} of 8 runs already complete" in lines
    assert len(summary["runs"]) == 8 and (out / "summary.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_a_folder_without_write_permission_is_one_line(tmp_path, monkeypatch, capsys):
    path = write_study(tmp_path, epochs=1)
    (tmp_path / "locked").mkdir(mode=0o555)
    code, output = cli(monkeypatch, capsys, "run", path, "--out", tmp_path / "locked" / "out")
    assert code == 2 and "Permission denied (EACCES)" in output and "Traceback" not in output, output
