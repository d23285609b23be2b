"""gdlab: a laboratory for gradient descent on real image-classification tasks.

Subpackages, in the direction data flows (nothing lower imports anything higher):
data -> models -> optim / backprop / gradcheck -> train -> check / study -> report.

They are imported on first use (``gdlab.optim.SGD`` works after ``import gdlab``)
so that ``gdlab --help`` and a broken optional piece never slow down or break
the rest.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "data",
    "models",
    "optim",
    "backprop",
    "gradcheck",
    "train",
    "check",
    "study",
    "report",
    "errors",
)

# Functions at the top level, by the module that defines them; imported on first use too.
_FUNCTIONS = {
    "load_study": "gdlab.report.result",  # a study folder's results: gdlab.load_study(DIR).table()
}

__all__ = list(_SUBPACKAGES) + list(_FUNCTIONS)


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name in _FUNCTIONS:
        function = getattr(importlib.import_module(_FUNCTIONS[name]), name)
        globals()[name] = function
        return function
    raise AttributeError(f"module 'gdlab' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES) + list(_FUNCTIONS))
