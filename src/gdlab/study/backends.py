"""Backends: who trains the jobs of a study, and in what groups.

``sequential`` trains one job after another in this process. ``vectorized``
does too, but first gathers the runs that share a model shape, the data and
training settings and the rule's flags into stacked jobs, each trained as one
model (``gdlab.train.fit_stacked``): one seed's runs together, and the runs of
several seeds (each on its seed's initialization and batch order) while the
stack stays within ``STACK_WIDTH``; ``auto`` picks it when some job would
stack two runs or more. ``ray`` makes each job a
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
        for stack in _packed_by_seed(members):
            jobs.append(Job("stacked" if len(stack) > 1 else "single", tuple(stack)))
    # The runner always hands over both halves of a pair; a lone half trains alone.
    return jobs + [Job("single", (plan,)) for plan in waiting.values()]


# How many runs of different seeds a stack gathers. On a CPU, the per-run time of a stacked epoch
# falls up to about 8 members and is flat up to 16; past that the stack's parameters, gradients
# and state outgrow the caches and it rises again (784-100-100-10 MLP, mnist-5k, batch 64: 0.084 s
# per run alone, 0.036 at 8, 0.035 at 16, 0.041 at 24). A bigger job also keeps more finished
# runs from the disk until it ends. One seed's runs stay together however many they are.
STACK_WIDTH = 16


def _packed_by_seed(plans: list[RunPlan]) -> list[list[RunPlan]]:
    """Runs that can stack, as stacks: each seed's runs whole, seeds packed together up to STACK_WIDTH."""
    by_seed: dict[int, list[RunPlan]] = {}
    for plan in plans:
        by_seed.setdefault(plan.seed, []).append(plan)
    stacks: list[list[RunPlan]] = []
    for seed_runs in by_seed.values():
        if stacks and len(stacks[-1]) + len(seed_runs) <= STACK_WIDTH:
            stacks[-1].extend(seed_runs)
        else:
            stacks.append(list(seed_runs))
    return stacks


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
    train = plan.settings.train
    if train.precision != "full" or train.memory_format != "contiguous":
        return False  # the stacked passes run in full precision, on contiguous tensors
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
