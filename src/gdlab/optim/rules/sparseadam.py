r"""SparseAdam (Adam on the entries a sparse gradient holds): ``torch.optim.SparseAdam``."""

import math
from typing import NamedTuple

import torch
from torch import Tensor
from torch.optim.optimizer import _to_scalar

from gdlab.optim._base import evaluate_closure
from gdlab.optim.declaration import RuleDeclaration
from gdlab.optim.rules._common import MAXIMIZE, betas, betas_of, eps, lr, zeros_like_each


def sparseadam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[int],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    maximize: bool,
) -> None:
    r"""SparseAdam, as ``torch.optim._functional.sparse_adam``: Adam masked to the stored entries.

    Each parameter :math:`\theta` is dense and its gradient sparse (a COO
    tensor, e.g. from ``nn.Embedding(sparse=True)``); first and second moments
    :math:`m`, :math:`v` are dense and start at 0. Only the entries J that the
    (coalesced) gradient stores are read and written; every other entry of
    :math:`\theta`, m and v stays as it is, whatever its value::

        g <- -grad f(theta) if maximize else grad f(theta)
        m_J <- m_J + (1 - beta1) (g_J - m_J)
        v_J <- v_J + (1 - beta2) (g_J^2 - v_J)
        theta_J <- theta_J - gamma sqrt(1 - beta2^t) / (1 - beta1^t) * m_J / (sqrt(v_J) + eps)

    ``state_steps[i]`` is t, a Python number already counting this step (as
    torch's ``state["step"]``, incremented by the caller). A gradient storing
    no entries changes nothing.
    """
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]
        grad = grad.coalesce()  # the update is non-linear in g, so each entry must be stored once
        indices = grad._indices()
        grad_values = grad._values()
        if grad_values.numel() == 0:
            continue
        size = grad.size()
        exp_avg, exp_avg_sq, step = exp_avgs[i], exp_avg_sqs[i], state_steps[i]

        def at_gradient_entries(values: Tensor) -> Tensor:
            # The indices are the coalesced gradient's own, so they need no checking.
            return torch.sparse_coo_tensor(indices, values, size, check_invariants=False)

        # m <- beta1 m + (1 - beta1) g, written as m += (1 - beta1) (g - m) on J
        old_exp_avg_values = exp_avg.sparse_mask(grad)._values()
        exp_avg_update_values = grad_values.sub(old_exp_avg_values).mul_(1 - beta1)
        exp_avg.add_(at_gradient_entries(exp_avg_update_values))
        old_exp_avg_sq_values = exp_avg_sq.sparse_mask(grad)._values()
        exp_avg_sq_update_values = grad_values.pow(2).sub_(old_exp_avg_sq_values).mul_(1 - beta2)
        exp_avg_sq.add_(at_gradient_entries(exp_avg_sq_update_values))

        # The new m_J and v_J again, from the values at hand rather than a second sparse_mask.
        numer = exp_avg_update_values.add_(old_exp_avg_values)
        exp_avg_sq_update_values.add_(old_exp_avg_sq_values)
        denom = exp_avg_sq_update_values.sqrt_().add_(eps)

        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr * math.sqrt(bias_correction2) / bias_correction1
        param.add_(at_gradient_entries(-step_size * numer.div_(denom)))


class SparseAdamState(NamedTuple):
    step: list[int]
    exp_avg: list[Tensor]
    exp_avg_sq: list[Tensor]


def init(params: list[Tensor], hparams) -> SparseAdamState:
    return SparseAdamState([0 for _ in params], zeros_like_each(params), zeros_like_each(params))


def update(params, grads, state: SparseAdamState, **hparams) -> None:
    for i in range(len(params)):
        state.step[i] += 1
    sparseadam(
        params, grads, state.exp_avg, state.exp_avg_sq, state.step,
        lr=_to_scalar(hparams["lr"]), **betas_of(hparams), eps=hparams["eps"], maximize=hparams["maximize"],
    )


class SparseAdam(torch.optim.Optimizer):
    """SparseAdam, as ``torch.optim.SparseAdam``; the rule is :func:`sparseadam`.

    For dense parameters whose gradients are sparse (``nn.Embedding(sparse=True)``);
    a dense gradient is refused, as torch refuses it. Same arguments, param
    groups and ``state_dict`` layout (``step`` a Python int, ``exp_avg``,
    ``exp_avg_sq``) as torch's, and bit-for-bit the same parameters.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError(f"Tensor lr must be 1-element, got one of shape {tuple(lr.shape)}")
        if not 0.0 < lr:
            raise ValueError(f"Invalid learning rate: {lr} (lr must be a number > 0)")
        if not 0.0 < eps:
            raise ValueError(f"Invalid epsilon value: {eps} (eps must be a number > 0, e.g. 1e-8)")
        for index in (0, 1):
            if not 0.0 <= betas[index] < 1.0:
                raise ValueError(
                    f"Invalid beta parameter at index {index}: {betas[index]} "
                    f"(betas[{index}] must be in [0, 1), e.g. betas=(0.9, 0.999))"
                )
        defaults = {"lr": lr, "betas": betas, "eps": eps, "maximize": maximize}
        super().__init__(params, defaults)

        sparse_params, complex_params = [], []
        for group_index, group in enumerate(self.param_groups):
            for param_index, param in enumerate(group["params"]):
                if param.is_sparse:
                    sparse_params.append([group_index, param_index])
                if param.is_complex():
                    complex_params.append([group_index, param_index])
        if sparse_params:
            raise ValueError(
                f"Sparse params at indices {sparse_params}: SparseAdam requires dense parameter tensors "
                f"(the gradients are the sparse ones)"
            )
        if complex_params:
            raise ValueError(
                f"Complex params at indices {complex_params}: SparseAdam does not support complex parameters"
            )

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for param in group["params"]:
                if param.grad is None:
                    continue
                params.append(param)
                if not param.grad.is_sparse:
                    raise RuntimeError(
                        f"SparseAdam does not support dense gradients, please consider Adam instead "
                        f"(a parameter of shape {tuple(param.shape)} has a dense gradient; "
                        f"nn.Embedding(sparse=True) gives sparse ones)"
                    )
                grads.append(param.grad)
                state = self.state[param]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                state["step"] += 1
                steps.append(state["step"])
            beta1, beta2 = group["betas"]
            sparseadam(
                params, grads, exp_avgs, exp_avg_sqs, steps,
                lr=_to_scalar(group["lr"]), beta1=beta1, beta2=beta2, eps=group["eps"],
                maximize=group.get("maximize", False),
            )
        return loss


RULE = RuleDeclaration(
    name="sparseadam",
    optimizer=SparseAdam,
    reference=torch.optim.SparseAdam,
    reference_source="torch.optim._functional.sparse_adam (torch 2.13)",
    init=init,
    update=update,
    hyperparameters=(lr(1e-3), betas((0.9, 0.999)), eps(1e-8), MAXIMIZE),
    verify_grid=({"lr": 0.01}, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "maximize": True}),
    stackable=False,
    reference_kwargs={},  # torch's SparseAdam has a single implementation, no foreach argument
    verify_problem="sparse",  # dense gradients are refused
    summary="Adam on the entries a sparse gradient stores (nn.Embedding(sparse=True)); dense gradients refused",
)
