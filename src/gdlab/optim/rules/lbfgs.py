r"""L-BFGS with an optional strong-Wolfe line search: ``torch.optim.LBFGS``.

L-BFGS is closure-driven: one ``step(closure)`` runs up to ``max_iter``
quasi-Newton iterations, each re-evaluating the loss and gradient through the
closure, over all parameters flattened into one vector. So it has no
per-parameter ``init``/``update`` pair; its pieces are the functions below
(the curvature memory, the two-loop recursion, the cubic interpolation and the
strong-Wolfe search), written after ``torch/optim/lbfgs.py`` (torch 2.13) with
the same tensor operations in the same order, so the parameters come out
bit-for-bit equal.

All of torch's state lives under the first parameter (``optimizer.state[p0]``):
``func_evals`` and ``n_iter`` (counters over all steps), ``d`` (last search
direction), ``t`` (last step length), ``old_dirs`` (gradient differences
:math:`y_k`), ``old_stps`` (steps :math:`s_k`), ``ro`` (:math:`1 / y_k^T s_k`),
``H_diag`` (scale of the initial inverse Hessian), ``prev_flat_grad``,
``prev_loss`` and ``al`` (the two-loop recursion's coefficients).
"""

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import _to_scalar

from gdlab.optim.declaration import Hyperparameter, RuleDeclaration
from gdlab.optim.rules._common import lr

# Curvature pairs with y^T s at or below this are not remembered (they would
# make the inverse-Hessian estimate indefinite).
MIN_CURVATURE = 1e-10


def remember_curvature(
    y: Tensor,
    s: Tensor,
    old_dirs: list[Tensor],
    old_stps: list[Tensor],
    ro: list[Tensor],
    H_diag: Tensor | int,
    *,
    history_size: int,
) -> Tensor | int:
    r"""Add the pair (y, s) to the L-BFGS memory in place; return the new ``H_diag``.

    With :math:`y = \nabla f_{k+1} - \nabla f_k` and :math:`s = t_k d_k`::

        if y.s > 1e-10:
            drop the oldest pair if the memory holds history_size of them
            old_dirs += [y];  old_stps += [s];  ro += [1 / (y.s)]
            H_diag <- (y.s) / (y.y)          (scale of the initial inverse Hessian)

    Otherwise nothing changes and ``H_diag`` is returned as it was.
    """
    ys = y.dot(s)
    if ys > MIN_CURVATURE:
        if len(old_dirs) == history_size:
            old_dirs.pop(0)
            old_stps.pop(0)
            ro.pop(0)
        old_dirs.append(y)
        old_stps.append(s)
        ro.append(1.0 / ys)
        H_diag = ys / y.dot(y)
    return H_diag


def two_loop_recursion(
    flat_grad: Tensor,
    old_dirs: list[Tensor],
    old_stps: list[Tensor],
    ro: list[Tensor],
    H_diag: Tensor | int,
    al: list,
) -> Tensor:
    r"""The L-BFGS direction :math:`d = -H \nabla f`, H the inverse-Hessian estimate of the memory.

    With pairs :math:`(s_i, y_i)`, :math:`\rho_i = 1 / y_i^T s_i`, oldest first::

        q <- -grad f
        for i = m-1 .. 0:   al_i <- rho_i s_i.q;       q <- q - al_i y_i
        r <- H_diag * q
        for i = 0 .. m-1:   be_i <- rho_i y_i.r;       r <- r + (al_i - be_i) s_i
        d <- r

    ``al`` (torch's ``state["al"]``, ``history_size`` long) is filled in place.
    """
    num_old = len(old_dirs)
    q = flat_grad.neg()
    for i in range(num_old - 1, -1, -1):
        al[i] = old_stps[i].dot(q) * ro[i]
        q.add_(old_dirs[i], alpha=-al[i])
    r = torch.mul(q, H_diag)
    for i in range(num_old):
        be_i = old_dirs[i].dot(r) * ro[i]
        r.add_(old_stps[i], alpha=al[i] - be_i)
    return r


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    r"""The minimizer of the cubic through (x1, f1) and (x2, f2) with slopes g1, g2, clipped to ``bounds``.

    ``bounds`` defaults to the interval between x1 and x2. With x2 the point
    farther along (the formula is mirrored when x1 > x2)::

        d1 = g1 + g2 - 3 (f1 - f2) / (x1 - x2)
        d2 = sqrt(d1^2 - g1 g2)
        x  = x2 - (x2 - x1) (g2 + d2 - d1) / (g2 - g1 + 2 d2)

    When :math:`d_1^2 - g_1 g_2 < 0` (or NaN) the cubic has no minimizer and
    the middle of the bounds is returned.
    """
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:  # written so that a NaN takes the midpoint, as in torch
        d2 = d2_square.sqrt()
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def strong_wolfe(
    obj_func: Callable,
    x: list[Tensor],
    t,
    d: Tensor,
    f: float,
    g: Tensor,
    gtd: Tensor,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
):
    r"""A step length t along d satisfying the strong Wolfe conditions (or the best one found).

    ``obj_func(x, t, d)`` returns the loss and flat gradient at ``x + t d``.
    With :math:`\phi(t) = f(x + t d)`, the conditions are::

        phi(t)  <= phi(0) + c1 t phi'(0)      (sufficient decrease, Armijo)
        |phi'(t)| <= -c2 phi'(0)              (curvature)

    Bracketing: from the initial t, extrapolate by cubic interpolation
    (within [t + 0.01 (t - t_prev), 10 t]) until an interval is found that
    contains such a point (Armijo fails, the loss stops decreasing, or the
    slope turns non-negative), or t satisfies both. Zoom: shrink the bracket
    by cubic interpolation, pulled 10% of the bracket away from its ends when
    progress stalls, until the conditions hold, the bracket is shorter than
    ``tolerance_change`` (measured along d), or ``max_ls`` evaluations are spent.
    Returns ``(f_new, g_new, t, function evaluations)`` at the lowest point.
    """
    d_norm = d.abs().max()
    g = g.clone(memory_format=torch.contiguous_format)
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = g_new.dot(d)

    # Bracketing phase.
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new.clone(memory_format=torch.contiguous_format)]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket = [t]
            bracket_f = [f_new]
            bracket_g = [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new.clone(memory_format=torch.contiguous_format)]
            bracket_gtd = [gtd_prev, gtd_new]
            break

        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        t_before = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))

        t_prev = t_before
        f_prev = f_new
        g_prev = g_new.clone(memory_format=torch.contiguous_format)
        gtd_prev = gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1

    if ls_iter == max_ls:
        bracket = [0, t]
        bracket_f = [f, f_new]
        bracket_g = [g, g_new]

    # Zoom phase: refine the bracket until a point satisfies the conditions.
    insufficient_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break

        t = cubic_interpolate(
            bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]
        )

        # A trial point too close to an end of the bracket (within 10% of its
        # length) is moved 10% inside, if the previous trial was also close or
        # this one lies on or beyond an end.
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insufficient_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False

        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Armijo fails or no lower than the low end: t becomes the high end.
            bracket[high_pos] = t
            bracket_f[high_pos] = f_new
            bracket_g[high_pos] = g_new.clone(memory_format=torch.contiguous_format)
            bracket_gtd[high_pos] = gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # The slope points past the low end: the old low end becomes the high end.
                bracket[high_pos] = bracket[low_pos]
                bracket_f[high_pos] = bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos] = t
            bracket_f[low_pos] = f_new
            bracket_g[low_pos] = g_new.clone(memory_format=torch.contiguous_format)
            bracket_gtd[low_pos] = gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


def flat_grad_of(params: list[Tensor]) -> Tensor:
    """All gradients as one vector (zeros for a parameter without one; complex ones as pairs of reals)."""
    views = []
    for param in params:
        if param.grad is None:
            view = param.new_zeros(param.numel())
        elif param.grad.is_sparse:
            view = param.grad.to_dense().view(-1)
        else:
            view = param.grad.view(-1)
        if torch.is_complex(view):
            view = torch.view_as_real(view).view(-1)
        views.append(view)
    return torch.cat(views, 0)


def add_to_params(params: list[Tensor], step_size, direction: Tensor) -> None:
    """params <- params + step_size * direction, the flat ``direction`` cut back into each parameter."""
    offset = 0
    for param in params:
        if torch.is_complex(param):
            param = torch.view_as_real(param)
        numel = param.numel()
        param.add_(direction[offset : offset + numel].view_as(param), alpha=step_size)
        offset += numel


class LBFGS(torch.optim.Optimizer):
    r"""L-BFGS, as ``torch.optim.LBFGS``, with gdlab's own recursion and line search.

    Same arguments, single param group, closure-driven ``step(closure)`` and
    ``state_dict`` layout (all state under the first parameter, see the module
    docstring) as torch's, and bit-for-bit the same parameters. One step::

        f, g <- closure()                               (stop at once if max|g| <= tolerance_grad)
        repeat up to max_iter times:
            d <- -g on the very first iteration, else
                 remember (y, s) = (g - g_prev, t d) and d <- two-loop recursion (-H g)
            t <- min(1, 1 / sum|g|) lr on the very first iteration, else lr
            stop if g.d > -tolerance_change
            line_search_fn None:           x <- x + t d; f, g <- closure() (not after the last iteration)
            line_search_fn "strong_wolfe": t <- strong_wolfe(...); x <- x + t d
            stop after max_iter iterations, max_eval evaluations, when max|g| <= tolerance_grad,
            when max|t d| <= tolerance_change or when |f - f_prev| < tolerance_change

    ``max_eval`` defaults to ``max_iter * 5 // 4``. Returns the loss of the
    first closure evaluation.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError(f"Tensor lr must be 1-element, got one of shape {tuple(lr.shape)}")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr} (lr must be a number >= 0)")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
        }
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(
                f"LBFGS doesn't support per-parameter options (parameter groups): got "
                f"{len(self.param_groups)} groups; pass one list of parameters"
            )

    def _directional_evaluate(self, closure, params, x, t, d):
        """Loss and flat gradient at x + t d; the parameters are put back to x afterwards."""
        add_to_params(params, t, d)
        loss = float(closure())
        flat_grad = flat_grad_of(params)
        for param, saved in zip(params, x, strict=True):
            param.copy_(saved)
        return loss, flat_grad

    @torch.no_grad()
    def step(self, closure):  # type: ignore[override]
        """Up to ``max_iter`` L-BFGS iterations; ``closure`` re-evaluates the model and returns the loss."""
        if len(self.param_groups) != 1:
            raise AssertionError(
                f"Expected exactly one param_group, but got {len(self.param_groups)}: "
                f"LBFGS optimizes one group of parameters"
            )
        closure = torch.enable_grad()(closure)

        group = self.param_groups[0]
        params = group["params"]
        lr = _to_scalar(group["lr"])
        max_iter = group["max_iter"]
        max_eval = group["max_eval"]
        tolerance_grad = group["tolerance_grad"]
        tolerance_change = group["tolerance_change"]
        line_search_fn = group["line_search_fn"]
        history_size = group["history_size"]

        state = self.state[params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1

        flat_grad = flat_grad_of(params)
        opt_cond = flat_grad.abs().max() <= tolerance_grad
        if opt_cond:
            return orig_loss

        d = state.get("d")
        t = state.get("t")
        old_dirs = state.get("old_dirs")
        old_stps = state.get("old_stps")
        ro = state.get("ro")
        H_diag = state.get("H_diag")
        prev_flat_grad = state.get("prev_flat_grad")
        prev_loss = state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # Direction.
            if state["n_iter"] == 1:
                d = flat_grad.neg()
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                y = flat_grad.sub(prev_flat_grad)
                s = d.mul(t)
                H_diag = remember_curvature(y, s, old_dirs, old_stps, ro, H_diag, history_size=history_size)
                if "al" not in state:
                    state["al"] = [None] * history_size
                d = two_loop_recursion(flat_grad, old_dirs, old_stps, ro, H_diag, state["al"])

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
            else:
                prev_flat_grad.copy_(flat_grad)
            prev_loss = loss

            # Step length.
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / flat_grad.abs().sum()) * lr
            else:
                t = lr

            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:
                break  # not a descent direction (to tolerance)

            ls_func_evals = 0
            if line_search_fn is not None:
                if line_search_fn != "strong_wolfe":
                    raise RuntimeError(
                        f"only 'strong_wolfe' is supported as line_search_fn, got {line_search_fn!r}; "
                        f"pass line_search_fn='strong_wolfe' or None"
                    )
                x_init = [param.clone(memory_format=torch.contiguous_format) for param in params]

                def obj_func(x, t, d):
                    return self._directional_evaluate(closure, params, x, t, d)

                loss, flat_grad, t, ls_func_evals = strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
                )
                add_to_params(params, t, d)
                opt_cond = flat_grad.abs().max() <= tolerance_grad
            else:
                add_to_params(params, t, d)
                if n_iter != max_iter:
                    # No re-evaluation after the last iteration: with stochastic
                    # losses it would be spent on nothing.
                    with torch.enable_grad():
                        loss = closure()
                    loss = float(loss)
                    flat_grad = flat_grad_of(params)
                    opt_cond = flat_grad.abs().max() <= tolerance_grad
                    ls_func_evals = 1

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # Stopping conditions.
            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if d.mul(t).abs().max() <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = d
        state["t"] = t
        state["old_dirs"] = old_dirs
        state["old_stps"] = old_stps
        state["ro"] = ro
        state["H_diag"] = H_diag
        state["prev_flat_grad"] = prev_flat_grad
        state["prev_loss"] = prev_loss
        return orig_loss


RULE = RuleDeclaration(
    name="lbfgs",
    optimizer=LBFGS,
    reference=torch.optim.LBFGS,
    reference_source="torch.optim.LBFGS (torch/optim/lbfgs.py, torch 2.13)",
    init=None,
    update=None,
    hyperparameters=(
        lr(1),
        Hyperparameter("max_iter", 20, kind="integer", minimum=1,
                       doc="iterations (each with its own closure evaluations) per step"),
        Hyperparameter("max_eval", None, kind="optional", minimum=1,
                       doc="closure evaluations per step; None means max_iter * 5 // 4"),
        Hyperparameter("tolerance_grad", 1e-7, log_uniform=True,
                       doc="stop when the largest gradient entry is at most this"),
        Hyperparameter("tolerance_change", 1e-9, log_uniform=True,
                       doc="stop when the loss or the parameters change by less than this"),
        Hyperparameter("history_size", 100, kind="integer", minimum=1,
                       doc="curvature pairs remembered"),
        Hyperparameter("line_search_fn", None, kind="choice", minimum=None, choices=(None, "strong_wolfe"),
                       doc="None (fixed step lr) or 'strong_wolfe'"),
    ),
    # max_iter=5 keeps verify quick (each of its steps runs up to max_iter iterations).
    verify_grid=(
        {"max_iter": 5},
        {"max_iter": 5, "line_search_fn": "strong_wolfe"},
        {"lr": 0.5, "max_iter": 5, "history_size": 3, "line_search_fn": "strong_wolfe"},
    ),
    stackable=False,
    needs_closure=True,
    reference_kwargs={},  # torch's LBFGS has a single implementation, no foreach argument
    summary="limited-memory BFGS over a closure, optionally with a strong-Wolfe line search",
)
