"""Backends: who trains the jobs of a study, and in what groups.

``sequential`` trains one job after another in this process; ``ray`` makes
each job a Ray task (``gdlab.study.ray_backend``). Every backend
hands each finished job's outcomes to ``on_done`` as soon as it has them, so
the study folder is written run by run and an interruption loses at most the
jobs in flight.
"""

from collections.abc import Callable

from gdlab.errors import GdlabError
from gdlab.study.execute import Job, RunOutcome, run_job
from gdlab.study.search import RunPlan

BACKENDS = ("auto", "sequential", "ray")

OnDone = Callable[[list[RunOutcome]], None]


def make_jobs(plans: list[RunPlan]) -> list[Job]:
    """One job per run, except scratch/torch pairs, which must train together."""
    jobs, waiting = [], {}
    for plan in plans:
        if plan.settings.optimizer.implementation != "both":
            jobs.append(Job("single", (plan,)))
            continue
        key = (plan.configuration.id, plan.seed)
        if key in waiting:
            first = waiting.pop(key)
            jobs.append(Job("pair", (first, plan) if first.implementation == "scratch" else (plan, first)))
        else:
            waiting[key] = plan
    # The runner always hands over both halves of a pair; a lone half trains alone.
    return jobs + [Job("single", (plan,)) for plan in waiting.values()]


def resolve_backend(name: str, jobs: list[Job]) -> str:
    if name not in BACKENDS:
        raise GdlabError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return "sequential" if name == "auto" else name


def run_sequential(jobs: list[Job], on_done: OnDone) -> None:
    for job in jobs:
        on_done(run_job(job))


def run_jobs(jobs: list[Job], backend: str, on_done: OnDone) -> None:
    if backend == "ray":
        # Imported here: Ray is an optional extra, and slow to import.
        from gdlab.study.ray_backend import run_on_ray

        run_on_ray(jobs, on_done)
        return
    run_sequential(jobs, on_done)
