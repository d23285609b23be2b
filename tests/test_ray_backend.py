"""The Ray backend on a local cluster started here: sequential's results, run by run, clean stops.

One cluster serves the whole file (starting one costs seconds); the test of
Ctrl-C through the real CLI lets gdlab start and stop a cluster of its own,
in a session of its own, and checks that none of its processes outlive it.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from study_files import write_study

from gdlab.errors import GdlabError
from gdlab.study import StudyInterrupted, load_study, plan_runs, run_study
from gdlab.study.backends import make_jobs
from gdlab.study.ray_backend import connect, train_job

# One cluster per pytest process: under xdist, ``--dist loadgroup`` keeps this file on one worker.
pytestmark = [pytest.mark.ray, pytest.mark.timeout(180), pytest.mark.xdist_group("ray")]

ROOT = Path(__file__).resolve().parents[1]
# Workers must train with the driver's thread count to match it (ray_backend.train_job).
# One more thread than the cluster has CPUs: a task then reserves fewer CPUs than the
# driver runs threads, and Ray's default for its workers (OMP_NUM_THREADS = the task's
# CPUs) gives a different count, so only train_job's own setting makes the results equal.
DRIVER_THREADS = os.cpu_count() + 1


def quiet():
    return Console(file=open(os.devnull, "w"))


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, start time) of every process we can read."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, parent, session, start = fields[0], int(fields[1]), int(fields[3]), fields[19]
        if state != "Z":
            table[int(stat.parent.name)] = (parent, session, start)
    return table


def descendants(root: int) -> set[tuple[int, str]]:
    table = process_table()
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (parent, _, _) in table.items() if parent in frontier}
        found |= {(pid, table[pid][2]) for pid in frontier}
    return found


def kill(pid: int) -> bool:
    """SIGKILL ``pid``; False if it had exited already (a process table is a snapshot, and Ray's
    short-lived helper processes come and go)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def in_session(session: int) -> set[tuple[int, str]]:
    return {(pid, start) for pid, (_, sid, start) in process_table().items() if sid == session}


def still_running(processes: set[tuple[int, str]], wait_s: float = 15.0) -> set[tuple[int, str]]:
    """Those of ``processes`` (pid and start time, so a reused pid does not count) alive after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        table = process_table()
        alive = {(pid, start) for pid, start in processes if pid in table and table[pid][2] == start}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def listening_hosts(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net writes them) of TCP sockets listening on ``port``."""
    hosts = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                hosts.add(host)
    return hosts


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


@pytest.fixture(scope="module")
def cluster():
    """A local cluster started by the backend's own ``connect``; gone, every process of it, afterwards."""
    ray = pytest.importorskip("ray")
    threads = torch.get_num_threads()
    torch.set_num_threads(DRIVER_THREADS)
    # Ray sets RAY_AUTH_MODE=token in this process when it turns token authentication on;
    # the processes this file starts inherit that, and the rest of the session gets it back as it was.
    auth_mode = os.environ.get("RAY_AUTH_MODE")
    with pytest.MonkeyPatch.context() as environment:
        environment.delenv("RAY_ADDRESS", raising=False)
        assert not ray.is_initialized()
        assert connect(ray) is True
        try:
            yield ray
        finally:
            processes = descendants(os.getpid())
            ray.shutdown()
            torch.set_num_threads(threads)
            if auth_mode is None:
                os.environ.pop("RAY_AUTH_MODE", None)
            assert processes and not still_running(processes)


@pytest.fixture(scope="module")
def sequential(cluster, tmp_path_factory):
    """A study run by the sequential backend, the reference the Ray runs must equal.

    After ``cluster``, which sets the driver's thread count both backends must share.
    """
    folder = tmp_path_factory.mktemp("sequential")
    spec = load_study(write_study(folder, seeds=2, lr="[0.05, 0.2]"))
    summary = run_study(spec, out_dir=folder / "out", backend="sequential", console=quiet())
    return spec, folder / "out", summary


def figures(summary: dict) -> dict:
    """What must not depend on the backend: each run's figures, and the selected configuration's test."""
    runs = {
        run["id"]: (run["status"], run["train_accuracy"], run["val_accuracy"], run["val_loss"], run["iterations"])
        for run in summary["runs"]
    }
    selected = summary["selected"]
    return {"runs": runs, "selected": (selected["id"], selected["test_accuracy"], selected["test_loss"])}


def assert_same_results(summary: dict, out: Path, reference: dict, reference_out: Path) -> None:
    assert figures(summary) == figures(reference)
    for run in reference["runs"]:
        name = f"metrics/{run['id']}.csv"
        assert (out / name).read_text() == (reference_out / name).read_text(), name


def test_the_local_cluster_listens_on_loopback_only(cluster):
    host, port = cluster.get_runtime_context().gcs_address.rsplit(":", 1)
    assert host == "127.0.0.1"
    assert [node["NodeManagerAddress"] for node in cluster.nodes()] == ["127.0.0.1"]
    hosts = listening_hosts(int(port))
    assert hosts and hosts <= LOOPBACK, hosts
    assert cluster.cluster_resources()["CPU"] == os.cpu_count()


def test_results_equal_the_sequential_backend(cluster, sequential, tmp_path):
    spec, reference_out, reference = sequential
    summary = run_study(spec, out_dir=tmp_path / "out", backend="ray", console=quiet())
    assert summary["backend"] == "ray" and reference["backend"] == "sequential"
    assert all(run["status"] == "ok" for run in summary["runs"])
    assert_same_results(summary, tmp_path / "out", reference, reference_out)


def test_each_run_is_saved_as_soon_as_it_finishes(cluster, tmp_path):
    spec = load_study(write_study(tmp_path, seeds=2, lr="[0.05, 0.2]", epochs=1))
    out = tmp_path / "out"
    seen = []

    def on_outcome(outcome):
        seen.append(outcome.plan.id)
        on_disk = sorted(path.stem for path in (out / "runs").glob("*.json"))
        assert on_disk == sorted(seen)
        assert not (out / "summary.json").exists()

    summary = run_study(spec, out_dir=out, backend="ray", console=quiet(), on_outcome=on_outcome)
    assert sorted(seen) == sorted(run["id"] for run in summary["runs"]) and len(seen) == 4


def test_interruption_keeps_finished_runs_and_resume_completes_them(cluster, sequential, tmp_path):
    spec, reference_out, reference = sequential
    out = tmp_path / "out"

    def stop_after_the_first(outcome):
        raise KeyboardInterrupt

    with pytest.raises(StudyInterrupted, match="1 of 4 runs complete.*--resume"):
        run_study(spec, out_dir=out, backend="ray", console=quiet(), on_outcome=stop_after_the_first)
    assert len(list((out / "runs").glob("*.json"))) == 1
    assert not (out / "summary.json").exists()
    # The cluster was the caller's: the backend cancelled its tasks but left it running.
    assert cluster.is_initialized()
    assert cluster.get(cluster.remote(lambda: 1).remote(), timeout=60) == 1

    lines = []
    console = quiet()
    console.print = lambda *args, **kwargs: lines.append(" ".join(map(str, args)))
    summary = run_study(spec, out_dir=out, backend="ray", resume=True, console=console)
    assert "resumed: 1 of 4 runs already complete" in lines
    assert_same_results(summary, out, reference, reference_out)


def test_without_ray_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when Ray is not installed
    spec = load_study(write_study(tmp_path, lr="0.1", epochs=1))
    with pytest.raises(GdlabError, match=r'--backend ray.*pip install "gdlab\[ray\]"'):
        run_study(spec, out_dir=tmp_path / "out", backend="ray", console=quiet())


def test_a_worker_with_another_torch_stops_the_study_with_a_clear_error(cluster, sequential, tmp_path, monkeypatch):
    spec = sequential[0]
    # The driver pretends to run another torch release; the workers run the real one.
    monkeypatch.setattr(torch, "__version__", "0.0.0-driver")
    with pytest.raises(GdlabError, match=r"a Ray task failed: this Ray worker has torch .* driver has 0\.0\.0-driver"):
        run_study(spec, out_dir=tmp_path / "out", backend="ray", console=quiet())


def test_train_job_refuses_a_torch_other_than_the_drivers(tmp_path):
    job = make_jobs(plan_runs(load_study(write_study(tmp_path, lr="0.1"))))[0]
    with pytest.raises(GdlabError, match=r"torch==1\.0\.0 on the workers"):
        train_job(job, 1, "1.0.0")


@pytest.mark.slow
def test_ctrl_c_stops_the_cli_and_its_own_cluster_and_resume_joins_ray_address(cluster, tmp_path):
    path = write_study(tmp_path, seeds=2, lr="[0.05, 0.1, 0.2]")
    out = tmp_path / "out"
    # Taken after the module's cluster started: Ray then sets RAY_AUTH_MODE=token here when
    # it turned token authentication on, and a process joining it must say so to send the token.
    environment = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    # A session of its own: SIGINT to its process group is what Ctrl-C in a terminal sends,
    # and every process of the cluster it starts stays in that session, where we can find it.
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
        cluster_processes = in_session(process.pid) - {(process.pid, process_table()[process.pid][2])}
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 130, output
        assert "interrupted:" in output and "--resume" in output
        assert cluster_processes and not still_running(cluster_processes)
    finally:
        # Whatever went wrong above, leave none of this cluster's processes behind.
        process.kill()
        for pid, _ in in_session(process.pid):
            kill(pid)
    done = len(list((out / "runs").glob("*.json")))
    assert 1 <= done < 6 and not list((out / "runs").glob(".*.tmp"))

    # Joining the module's cluster, which listens on 127.0.0.1 only: Ray's documented switch
    # keeps the joining process on loopback too (otherwise it would dial the network address).
    joining = {**environment, "RAY_ADDRESS": cluster.get_runtime_context().gcs_address,
               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    resumed = subprocess.run(
        [sys.executable, "-m", "gdlab.cli", "run", str(path), "--out", str(out), "--resume", "--backend", "ray"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env=joining,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed: {done} of 6 runs already complete" in resumed.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "ray" and [run["status"] for run in summary["runs"]] == ["ok"] * 6
    # Joined, not started: the cluster outlives the study that used it.
    assert cluster.get(cluster.remote(lambda: 1).remote(), timeout=60) == 1

