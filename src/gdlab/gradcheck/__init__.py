"""Gradient checking: finite differences, comparison with a reference, and a diagnosis.

``numerical_gradient`` and ``autograd_gradient`` give reference gradients of
any scalar function of tensors; ``compare`` sets analytic gradients against
one and returns a ``GradReport`` (errors, verdicts, ``Finding``s from
``diagnose``); ``check_mlp_backward`` does all of it for a hand-written MLP
backward pass.
"""

from gdlab.gradcheck.comparison import TensorComparison
from gdlab.gradcheck.diagnosis import Finding, diagnose
from gdlab.gradcheck.mlp import check_mlp_backward
from gdlab.gradcheck.numerical import autograd_gradient, numerical_gradient
from gdlab.gradcheck.report import GradReport, compare

__all__ = [
    "Finding",
    "GradReport",
    "TensorComparison",
    "autograd_gradient",
    "check_mlp_backward",
    "compare",
    "diagnose",
    "numerical_gradient",
]
