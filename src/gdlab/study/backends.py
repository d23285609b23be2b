"""Backends: who trains the jobs of a study, and in what groups.

``sequential`` trains one job after another in this process. ``vectorized``
does too, but first gathers the runs that share a model shape, the data and
training settings and the rule's flags into one stacked job, trained as one
model (``gdlab.train.fit_stacked``), every seed's runs on that seed's
initialization and batch order; ``auto`` picks it when some job would stack
two runs or more. ``ray`` makes each job a
Ray task (``gdlab.study.ray_backend``). Every backend hands each finished
job's outcomes to ``on_done`` as soon as it has them, so the study folder is
written run by run and an interruption loses at most the jobs in flight.
"""

from gdlab.errors import GdlabError
from gdlab.study.execute import Job, OnDone, OnEpoch, data_for, run_job
from gdlab.study.problem import build_model
from gdlab.study.search import RunPlan
from gdlab.train import supports_stacking

BACKENDS = ("auto", "sequential", "vectorized", "ray")


def make_jobs(plans: list[RunPlan], stack: bool = False) -> list[Job]:
    """One job per run, except scratch/torch pairs, which must train together,
    and (``stack``) runs that can train as one stacked model."""
    jobs, waiting, stacks = [], {}, {}
    stackable: dict[tuple[str, str], bool] = {}  # one model built per model and data setting, not per run
    for plan in plans:
        if plan.settings.optimizer.implementation == "both":
            key = (plan.configuration.id, plan.seed)
            if key in waiting:
                first = waiting.pop(key)
                jobs.append(Job("pair", (first, plan) if first.implementation == "scratch" else (plan, first)))
            else:
                waiting[key] = plan
        elif stack and plan.implementation == "scratch" and _stackable(plan, stackable):
            stacks.setdefault(_stack_key(plan), []).append(plan)
        else:
            jobs.append(Job("single", (plan,)))
    for members in stacks.values():
        jobs.append(Job("stacked" if len(members) > 1 else "single", tuple(members)))
    # The runner always hands over both halves of a pair; a lone half trains alone.
    return jobs + [Job("single", (plan,)) for plan in waiting.values()]


def _stack_key(plan: RunPlan) -> tuple:
    """What stacked runs must share: everything but the rule's numeric hyperparameters and the seed
    (each seed's runs train on their own batch order: ``MemberLoaders``)."""
    settings = plan.settings
    hyperparameters = settings.optimizer.hyperparameters()
    shared = sorted((key, repr(hyperparameters[key])) for key in settings.optimizer.rule().declaration.shared_names)
    return (
        settings.data.model_dump_json(),
        settings.model.model_dump_json(),
        settings.train.model_dump_json(),
        settings.optimizer.name,
        tuple(shared),
    )


def _stackable(plan: RunPlan, known: dict[tuple[str, str], bool]) -> bool:
    if not plan.settings.optimizer.rule().stackable:
        return False
    key = (plan.settings.model.model_dump_json(), plan.settings.data.model_dump_json())
    if key not in known:
        data = data_for(plan)
        known[key] = supports_stacking(build_model(plan.settings.model, data.input_shape, data.num_classes))
    return known[key]


def plan_jobs(plans: list[RunPlan], backend: str) -> tuple[str, list[Job]]:
    """The backend to use (``auto`` resolved) and the jobs it trains."""
    if backend not in BACKENDS:
        raise GdlabError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend in ("auto", "vectorized"):
        jobs = make_jobs(plans, stack=True)
        if backend == "vectorized" or any(job.kind == "stacked" for job in jobs):
            return "vectorized", jobs
        return "sequential", jobs
    return backend, make_jobs(plans)


def run_sequential(jobs: list[Job], on_done: OnDone, on_epoch: OnEpoch | None = None) -> None:
    for job in jobs:
        on_done(run_job(job, on_epoch))


def run_jobs(jobs: list[Job], backend: str, on_done: OnDone, on_epoch: OnEpoch | None = None) -> None:
    """Train ``jobs``; ``on_epoch`` hears of each epoch of the jobs trained in this process (not Ray's)."""
    if backend == "ray":
        # Imported here: Ray is an optional extra, and slow to import.
        from gdlab.study.ray_backend import run_on_ray

        run_on_ray(jobs, on_done)
        return
    run_sequential(jobs, on_done, on_epoch)
