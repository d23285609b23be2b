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

__all__ = list(_SUBPACKAGES)


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'gdlab' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES))
