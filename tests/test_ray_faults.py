"""The Ray backend under faults: a worker killed mid-job is rerun by Ray; a cluster gone stops the study resumably.

The first test lets the CLI start a private cluster in a session of its own
and kills every process of it, the way a machine's cluster dies, leaving the
driver alone; it runs first, before this file's own cluster (test_ray_backend's
fixture, one per module) starts for the second, where a sequential run of the
same study is the reference.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from study_files import write_study
from test_ray_backend import ROOT, assert_same_results, descendants, in_session, kill, process_table, quiet
from test_ray_backend import cluster, sequential  # noqa: F401  (fixtures: this module's cluster, its reference)

from gdlab.study import run_study

# One cluster per pytest process: under xdist, ``--dist loadgroup`` keeps the Ray files on one worker.
pytestmark = [pytest.mark.ray, pytest.mark.timeout(180), pytest.mark.xdist_group("ray")]


@pytest.mark.slow
def test_a_cluster_gone_mid_study_stops_it_in_one_line_and_sequential_resume_finishes_it(tmp_path):
    # 40 epochs: long enough (about a second a job) that jobs are still running when the first is saved.
    path = write_study(tmp_path, seeds=2, lr="[0.05, 0.1, 0.2]", epochs=40)
    out = tmp_path / "out"
    environment = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    # Ray ends a driver whose cluster's head has been silent this long (60 s by default);
    # gdlab stops the study after a third of it: 10 s of 30 here, to keep the test short.
    environment |= {"RAY_gcs_rpc_server_reconnect_timeout_s": "30", "COLUMNS": "1000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gdlab.cli", "run", str(path), "--out", str(out), "--backend", "ray"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=environment,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list((out / "runs").glob("*.json")):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        driver = (process.pid, process_table()[process.pid][2])
        cluster_processes = in_session(process.pid) - {driver}
        assert cluster_processes
        for pid, _ in cluster_processes:
            kill(pid)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        for pid, _ in in_session(process.pid):
            kill(pid)
    assert process.returncode == 2, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    # Which death reaches the driver first (its raylet's, or the head's silence) is a race; both say so.
    assert "the study stopped: the Ray cluster went away: " in errors[0]
    assert any(
        cause in errors[0]
        for cause in ("its head has not answered for 10 s", "its head does not answer", "(its raylet) died")
    ), errors[0]
    done = len(list((out / "runs").glob("*.json")))
    assert f"{done} of 6 runs complete and saved in {out}; continue with: gdlab run {path} --out {out} --resume" \
        in errors[0]
    assert 1 <= done < 6 and not list((out / "runs").glob(".*.tmp"))

    # What the line says to do, in this process (a second CLI would only add its start-up).
    lines = []
    console = quiet()
    console.print = lambda *args, **kwargs: lines.append(" ".join(map(str, args)))
    summary = run_study(path, out_dir=out, backend="sequential", resume=True, console=console)
    assert f"resumed: {done} of 6 runs already complete" in lines
    assert [run["status"] for run in summary["runs"]] == ["ok"] * 6
    assert json.loads((out / "summary.json").read_text())["runs"] == summary["runs"]


def kill_the_first_worker_running_a_job(stop: threading.Event, killed: list[tuple[int, int]], saved: list) -> None:
    """SIGKILL the first Ray worker of this process seen running a job, as the kernel's OOM killer would.

    Ray names a worker's process after the task it runs (``ray::train_job``) and
    ``ray::IDLE`` between tasks, so the kill lands mid-job. ``killed`` gets its
    pid and how many runs (``saved``) were saved by then.
    """
    while not stop.is_set():
        for pid, _ in descendants(os.getpid()):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::train_job") and kill(pid):
                killed.append((pid, len(saved)))
                return
        time.sleep(0.01)


def test_a_worker_killed_mid_job_is_rerun_by_ray_and_every_run_equals_sequential(cluster, sequential, tmp_path):
    spec, reference_out, reference = sequential
    stop, killed, saved = threading.Event(), [], []
    killer = threading.Thread(target=kill_the_first_worker_running_a_job, args=(stop, killed, saved))
    killer.start()
    try:
        summary = run_study(
            spec, out_dir=tmp_path / "out", backend="ray", console=quiet(),
            on_outcome=lambda outcome: saved.append(outcome.plan.id),
        )
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray worker was seen running a job"
    [(worker, runs_saved_before_the_kill)] = killed
    assert worker not in process_table() and runs_saved_before_the_kill < len(reference["runs"])
    assert all(run["status"] == "ok" for run in summary["runs"])
    assert_same_results(summary, tmp_path / "out", reference, reference_out)
