"""Studies: a TOML file of settings and search -> runs -> selection on validation -> one test."""

from gdlab.study.runner import StudyInterrupted, default_out_dir, run_study
from gdlab.study.search import Configuration, RunPlan, configurations, plan_runs
from gdlab.study.spec import Settings, Study, load_study, parse_study

__all__ = [
    "Configuration",
    "RunPlan",
    "Settings",
    "Study",
    "StudyInterrupted",
    "configurations",
    "default_out_dir",
    "load_study",
    "parse_study",
    "plan_runs",
    "run_study",
]
