"""torch's rule taking the user's steps, and when two results count as the same.

The reference shadows the user's run. For step k it loads the parameters the
user's model had when batch k was handed out, runs torch's own loop on that
batch (``zero_grad(); loss_fn(model(x), y).backward(); step()``) with an
optimizer whose state (momentum buffers, moment estimates) has seen the same
gradients as the user's code, and compares where torch lands with where the
user's code landed. Both start every step from the same parameters, so a
rounding difference in one step is not carried into the next and amplified
by training; each step is judged on its own, and a mistake is pinned to the
step that makes it.

Tolerance. Let ``p`` be a parameter tensor before the step, ``u`` torch's
update and ``q`` the user's result. The relative difference of the step is

    r = ||q - (p + u)||_2 / (||p||_2 + ||u||_2)

Two implementations of the same rule differ only by rounding: each rounds a
handful of times (gradient plus weight decay, buffer update, scaling by the
learning rate, the final subtraction), each time by at most half a unit in
the last place of the magnitudes involved, which are bounded by
``|p| + |u|`` elementwise. So r stays below a small multiple of the
dtype's machine epsilon, and the check passes a step when

    r <= TOLERANCE_EPS * eps(dtype)        (eps = 1.19e-7 float32, 2.22e-16 float64)

``TOLERANCE_EPS = 8`` leaves room for the few more operations of Adam or
RMSprop and for rounding carried in their state from step to step. Measured
on this check's problem, students' formulations of SGD, Adam, AdamW, RMSprop
and Adagrad (new tensors where torch works in place) over about 150
hyperparameter settings and 3 epochs stay below 0.7 eps, float32 and
float64 alike. A different rule moves r by a fraction of the update: at
lr 0.01, momentum never applied gives r = 3e-3 and weight decay 0.01 with
the wrong sign r = 2e-4, over a thousand times the float32 threshold.

What this cannot see: a rule that differs from torch's by less than about
``8 eps (||p|| + ||u||)`` per step. At lr 0.01 an update off by a millionth
of itself passes in float32 (it is below float32's own rounding of p) and
fails in float64; so does weight decay 1e-5 at lr 1e-3, which torch's float32
arithmetic barely represents. Checking in float64 moves that limit down by
nine orders of magnitude.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from gdlab.check.rules import Rule

TOLERANCE_EPS = 8


def tolerance(dtype: torch.dtype) -> float:
    return TOLERANCE_EPS * torch.finfo(dtype).eps


def relative_difference(before: torch.Tensor, expected: torch.Tensor, observed: torch.Tensor) -> float:
    """``||observed - expected|| / (||before|| + ||expected - before||)``, computed in float64.

    0 when they are equal (NaNs in the same places included), inf when only
    one is finite or the scale is 0 and they differ.
    """
    before, expected, observed = (tensor.detach().to(torch.float64) for tensor in (before, expected, observed))
    if torch.equal(expected.isnan(), observed.isnan()):
        expected, observed = expected.nan_to_num(0.0), observed.nan_to_num(0.0)
    if not (torch.isfinite(expected).all() and torch.isfinite(observed).all()):
        return 0.0 if torch.equal(expected, observed) else float("inf")
    difference = torch.linalg.vector_norm(observed - expected).item()
    if difference == 0.0:
        return 0.0
    scale = torch.linalg.vector_norm(before).item() + torch.linalg.vector_norm(expected - before).item()
    return difference / scale if scale > 0 else float("inf")


class TorchReference:
    """The reference optimizer taking one step at a time from parameters it is given.

    ``step(before, x, y)`` returns the gradients at ``before`` on the batch and
    the parameters after the reference's step; the optimizer's state carries
    over from step to step, as in a normal run. The step gets a closure
    (zero the gradients, compute the loss, backward), which rules like LBFGS
    need and the others call once.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, rule: Rule, hparams: dict):
        self.model = copy.deepcopy(model)
        self.loss_fn = loss_fn
        self.parameters = dict(self.model.named_parameters())
        self.optimizer = rule.make_optimizer(list(self.parameters.values()), hparams)

    def step(self, before: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, lr: float | None = None):
        """One step from ``before`` on the batch, with the learning rate set to ``lr`` first (as a
        scheduler sets it) when given."""
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                parameter.copy_(before[name])
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        gradients: dict[str, torch.Tensor] = {}

        def closure():
            self.optimizer.zero_grad()
            with torch.enable_grad():
                loss = self.loss_fn(self.model(x), y)
                loss.backward()
            if not gradients:
                gradients.update(
                    {name: parameter.grad.detach().clone() for name, parameter in self.parameters.items()}
                )
            return loss

        closure()
        if _takes_closure(self.optimizer):
            self.optimizer.step(closure)
        else:
            self.optimizer.step()
        after = {name: parameter.detach().clone() for name, parameter in self.parameters.items()}
        return gradients, after


def _takes_closure(optimizer: torch.optim.Optimizer) -> bool:
    """LBFGS needs its closure; the others would only compute the same gradients again."""
    return isinstance(optimizer, torch.optim.LBFGS)
