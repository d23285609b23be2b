r"""Update rules as pure functions over lists of tensors.

Each rule is one function that reads like its torch counterpart
(``torch.optim.sgd._single_tensor_sgd`` and friends, torch 2.13,
``foreach=False``) and runs the same tensor operations in the same order, so
with float hyperparameters its result is bit-for-bit torch's. Parameters and
optimizer state are updated in place; nothing is returned. The Optimizer
classes of this package only collect these lists and hand them over.

Hyperparameters as 0-dim tensors (torch's tensor lr and betas)
--------------------------------------------------------------
A 0-dim tensor hyperparameter is what ``torch.optim`` hands its single-tensor
path for a tensor lr (or Adam's tensor betas) after ``_to_scalar``: the rules
then run torch's own operations on it (its arithmetic in the tensor's dtype,
as torch's), so the result is again bit-for-bit torch's. The Optimizer classes
convert 1-element tensors so.

Complex parameters
------------------
As torch's single-tensor path: SGD works on the complex tensors; Adam, AdamW,
RMSprop and Adagrad apply weight decay to the complex gradient, then update
``torch.view_as_real`` views of the parameter, gradient and state (each real
and imaginary part is its own coordinate).

Sparse gradients
----------------
SGD and Adagrad take them, as torch's single-tensor path does (Adagrad
coalesces the gradient and updates only the rows it names; weight decay with a
sparse gradient is refused, as torch refuses it).

Hyperparameters as tensors (K configurations in one call)
---------------------------------------------------------
Every numeric hyperparameter (lr, momentum, dampening, weight_decay, beta1,
beta2, eps, alpha, lr_decay) may instead be a tensor holding one value per
configuration, when K configurations are stacked along the first dimension of
every parameter (a weight of shape (K, out, in), a bias of shape (K, out)).
Its shape is (K,) or (K, 1, ..., 1) (a 0-dim tensor, above, applies to
every configuration); each rule views it as (K, 1, ..., 1) against each
parameter, so one lr of shape (K,) or (K, 1, 1) serves weights and biases
alike. Give such tensors the parameters' dtype.
The flags (nesterov, amsgrad, centered, maximize, decoupled_weight_decay)
stay Python bools: they choose the shape of the computation, shared by all K.

The tensor path runs the same equations but cannot use torch's fused
scalar kernels (``add(alpha=)``, ``addcmul(value=)``, ``addcdiv(value=)``
take Python numbers only), and it always computes terms that the float path
skips when their hyperparameter is 0 (they then add exactly 0). So it rounds
differently: every slice k of a stacked update stays within
``TENSOR_PATH_RTOL`` (relative to the largest parameter entry, float64, 100
steps, in the tests) of the float path run with slice k's hyperparameters.
"""

import torch
from torch import Tensor

Hyperparameter = float | Tensor

# Tested bound for the tensor path vs the float path, float64, 100 steps,
# max |difference| / max(1, max |parameter|). Measured: at most 5e-16 (a few
# ulp; exactly 0 for SGD); the margin covers division by small second moments
# in Adam, RMSprop and Adagrad.
TENSOR_PATH_RTOL = 1e-13


def sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: Hyperparameter,
    weight_decay: Hyperparameter,
    momentum: Hyperparameter,
    dampening: Hyperparameter,
    nesterov: bool,
    maximize: bool,
) -> None:
    r"""Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta)`
    and momentum buffer :math:`b` (lr :math:`\gamma`, weight decay
    :math:`\lambda`, momentum :math:`\mu`, dampening :math:`\tau`)::

        g <- -grad f(theta) if maximize else grad f(theta)
        g <- g + lambda * theta                     if lambda != 0
        if mu != 0:
            b <- g                                  on the first step (buffer is None)
            b <- mu * b + (1 - tau) * g             on every later step
            g <- g + mu * b  if nesterov  else  b
        theta <- theta - gamma * g

    ``momentum_buffers[i]`` is None before the first step and is filled in
    place; with a float ``momentum == 0`` the list is not read. A tensor
    momentum always keeps buffers; a configuration whose momentum is 0 then
    ignores its dampening, as torch does, so its buffer is its gradient.
    Complex parameters and sparse gradients go through the same operations,
    as in torch.
    """
    for i, param in enumerate(params):
        lr, weight_decay, momentum, dampening = _per_parameter(
            param, lr, weight_decay, momentum, dampening
        )
        grad = -grads[i] if maximize else grads[i]
        grad = _with_l2_penalty(grad, param, weight_decay)
        if _runs(momentum):
            buf = momentum_buffers[i]
            if buf is None:
                buf = momentum_buffers[i] = grad.clone()
            else:
                _scaled_add_(buf.mul_(momentum), grad, _new_gradient_weight(momentum, dampening))
            grad = _scaled_add(grad, buf, momentum) if nesterov else buf
        _scaled_sub_(param, grad, lr)


def adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    amsgrad: bool,
    beta1: Hyperparameter,
    beta2: Hyperparameter,
    lr: Hyperparameter,
    weight_decay: Hyperparameter,
    eps: Hyperparameter,
    maximize: bool,
    decoupled_weight_decay: bool = False,
) -> None:
    r"""Adam, as ``torch.optim.Adam``; AdamW with ``decoupled_weight_decay=True``.

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta)`,
    first moment :math:`m`, second moment :math:`v`, running maximum
    :math:`v_{max}` and step count :math:`t` (all starting at 0)::

        g <- -grad f(theta) if maximize else grad f(theta)
        t <- t + 1
        if lambda != 0:
            theta <- theta * (1 - gamma * lambda)   if decoupled_weight_decay (AdamW)
            g <- g + lambda * theta                 otherwise (Adam's L2 term)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        if amsgrad: v_max <- max(v_max, v);  v_hat <- v_max   else  v_hat <- v
        theta <- theta - gamma / (1 - beta1^t) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)

    which is :math:`\theta - \gamma \hat m / (\sqrt{\hat v} + \epsilon)` with the
    bias-corrected :math:`\hat m = m / (1 - \beta_1^t)`,
    :math:`\hat v = v / (1 - \beta_2^t)`. ``steps`` are 0-dim float tensors
    (torch's ``state["step"]``); ``max_exp_avg_sqs`` is read only with amsgrad.
    """
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        steps[i] += 1
        step = steps[i].item()
        lr_i, weight_decay_i = _per_parameter(param, lr, weight_decay)
        if decoupled_weight_decay:
            if _runs(weight_decay_i):
                param.mul_(1 - lr_i * weight_decay_i)
        else:
            grad = _with_l2_penalty(grad, param, weight_decay_i)
        exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
        max_exp_avg_sq = max_exp_avg_sqs[i] if amsgrad else None
        if torch.is_complex(param):
            param, grad, exp_avg, exp_avg_sq = _real_views(param, grad, exp_avg, exp_avg_sq)
            if amsgrad:
                (max_exp_avg_sq,) = _real_views(max_exp_avg_sq)
        lr_i, beta1_i, beta2_i, eps_i = _per_parameter(param, lr, beta1, beta2, eps)
        # torch moves a tensor beta1 to the parameter's dtype for lerp (and only there).
        _moving_average_(exp_avg, grad, _in_dtype_of(param, beta1_i))
        _moving_average_of_square_(exp_avg_sq, grad, beta2_i)
        second_moment = exp_avg_sq
        if amsgrad:
            torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            second_moment = max_exp_avg_sq
        bias_correction1 = 1 - beta1_i**step
        bias_correction2_sqrt = (1 - beta2_i**step) ** 0.5
        denominator = (second_moment.sqrt() / bias_correction2_sqrt).add_(eps_i)
        _scaled_addcdiv_(param, exp_avg, denominator, -(lr_i / bias_correction1))


def adamw(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    **hyperparameters,
) -> None:
    r"""AdamW, as ``torch.optim.AdamW``: :func:`adam` with decoupled weight decay.

    The only difference from Adam: weight decay shrinks the parameter,
    ``theta <- theta * (1 - gamma * lambda)``, before the moments are updated,
    instead of adding ``lambda * theta`` to the gradient (so it never enters
    m or v). Keyword arguments are :func:`adam`'s.
    """
    adam(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
        decoupled_weight_decay=True, **hyperparameters,
    )


def rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Hyperparameter,
    alpha: Hyperparameter,
    eps: Hyperparameter,
    weight_decay: Hyperparameter,
    momentum: Hyperparameter,
    centered: bool,
    maximize: bool,
) -> None:
    r"""RMSprop, as ``torch.optim.RMSprop``.

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta)`,
    square average :math:`v`, gradient average :math:`\bar g` and momentum
    buffer :math:`b` (all starting at 0; smoothing :math:`\alpha`)::

        g <- -grad f(theta) if maximize else grad f(theta)
        t <- t + 1                               (counted as torch does; unused)
        g <- g + lambda * theta                  if lambda != 0
        v <- alpha * v + (1 - alpha) * g^2
        if centered:
            g_bar <- alpha * g_bar + (1 - alpha) * g
            s <- sqrt(v - g_bar^2) + eps
        else:
            s <- sqrt(v) + eps
        if mu != 0:  b <- mu * b + g / s;  theta <- theta - gamma * b
        else:        theta <- theta - gamma * g / s

    ``grad_avgs`` is read only when centered, ``momentum_buffers`` only when
    momentum is not 0 (always, for a tensor momentum).
    """
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        steps[i] += 1
        (weight_decay_i,) = _per_parameter(param, weight_decay)
        grad = _with_l2_penalty(grad, param, weight_decay_i)
        square_avg = square_avgs[i]
        grad_avg = grad_avgs[i] if centered else None
        buf = momentum_buffers[i] if _runs(momentum) else None
        if torch.is_complex(param):
            param, grad, square_avg = _real_views(param, grad, square_avg)
            if grad_avg is not None:
                (grad_avg,) = _real_views(grad_avg)
            if buf is not None:
                (buf,) = _real_views(buf)
        lr_i, alpha_i, eps_i, momentum_i = _per_parameter(param, lr, alpha, eps, momentum)
        _moving_average_of_square_(square_avg, grad, alpha_i)
        if centered:
            _moving_average_(grad_avg, grad, alpha_i)
            scale = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            scale = square_avg.sqrt()
        scale = scale.add_(eps_i)
        if buf is not None:
            buf.mul_(momentum_i).addcdiv_(grad, scale)
            _scaled_sub_(param, buf, lr_i)
        else:
            _scaled_addcdiv_(param, grad, scale, -lr_i)


def adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Hyperparameter,
    weight_decay: Hyperparameter,
    lr_decay: Hyperparameter,
    eps: Hyperparameter,
    maximize: bool,
) -> None:
    r"""Adagrad, as ``torch.optim.Adagrad``.

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta)`,
    sum of squared gradients :math:`s` (starting at the initial accumulator
    value) and step count :math:`t` (starting at 0; lr decay :math:`\eta`)::

        t <- t + 1
        g <- -grad f(theta) if maximize else grad f(theta)
        g <- g + lambda * theta                 if lambda != 0
        gamma_t <- gamma / (1 + (t - 1) * eta)
        s <- s + g^2
        theta <- theta - gamma_t * g / (sqrt(s) + eps)

    A sparse gradient (float or 0-dim hyperparameters, no weight decay, as in
    torch) is coalesced, and only the entries it names are updated, by the
    same equations.
    """
    for i, param in enumerate(params):
        steps[i] += 1
        step = steps[i].item()
        grad = -grads[i] if maximize else grads[i]
        (weight_decay_i,) = _per_parameter(param, weight_decay)
        if _runs(weight_decay_i) and grad.is_sparse:
            raise RuntimeError("weight_decay option is not compatible with sparse gradients")
        grad = _with_l2_penalty(grad, param, weight_decay_i)
        if grad.is_sparse:
            if any(_stacked(value) for value in (lr, lr_decay, eps)):
                raise ValueError(
                    "a sparse gradient takes float (or 0-dim tensor) hyperparameters, not one per "
                    "stacked configuration"
                )
            _sparse_adagrad_step(param, grad, state_sums[i], lr / (1 + (step - 1) * lr_decay), eps)
            continue
        state_sum = state_sums[i]
        if torch.is_complex(param):
            param, grad, state_sum = _real_views(param, grad, state_sum)
        lr_i, lr_decay_i, eps_i = _per_parameter(param, lr, lr_decay, eps)
        decayed_lr = lr_i / (1 + (step - 1) * lr_decay_i)
        state_sum.addcmul_(grad, grad, value=1)
        std = state_sum.sqrt().add_(eps_i)
        _scaled_addcdiv_(param, grad, std, -decayed_lr)


def _sparse_adagrad_step(param: Tensor, grad: Tensor, state_sum: Tensor, decayed_lr, eps) -> None:
    """Adagrad's update for the entries a sparse gradient names (torch's sparse branch)."""
    grad = grad.coalesce()  # the update is non-linear, so each index must appear once
    indices, values = grad._indices(), grad._values()
    state_sum.add_(torch.sparse_coo_tensor(indices, values.pow(2), grad.size()))
    std_values = state_sum.sparse_mask(grad)._values().sqrt_().add_(eps)
    param.add_(torch.sparse_coo_tensor(indices, values / std_values, grad.size()), alpha=-decayed_lr)


# Pieces shared by the rules: the math they have in common.


def _with_l2_penalty(grad: Tensor, param: Tensor, weight_decay: Hyperparameter) -> Tensor:
    """g + lambda * theta: the gradient of f + lambda/2 * |theta|^2 (coupled weight decay)."""
    return _scaled_add(grad, param, weight_decay) if _runs(weight_decay) else grad


def _moving_average_(average: Tensor, value: Tensor, decay: Hyperparameter) -> None:
    """average <- decay * average + (1 - decay) * value, computed as torch does, by lerp."""
    average.lerp_(value, 1 - decay)


def _moving_average_of_square_(average: Tensor, value: Tensor, decay: Hyperparameter) -> None:
    """average <- decay * average + (1 - decay) * value^2."""
    _scaled_addcmul_(average.mul_(decay), value, value, 1 - decay)


def _real_views(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Complex tensors as real ones with a last dimension of 2 (real, imaginary), as torch's rules see them."""
    return tuple(torch.view_as_real(tensor) for tensor in tensors)


def _in_dtype_of(param: Tensor, value: Hyperparameter) -> Hyperparameter:
    """A tensor hyperparameter in the parameter's dtype (a number as it is)."""
    return value.to(dtype=param.dtype) if isinstance(value, Tensor) else value


def _new_gradient_weight(momentum: Hyperparameter, dampening: Hyperparameter) -> Hyperparameter:
    """1 - tau, the weight of the new gradient in SGD's momentum buffer.

    torch ignores dampening when momentum is 0 (there is no buffer). The tensor
    path always keeps a buffer, so a configuration whose momentum is 0 must
    weigh its gradient by 1 for the buffer to equal the plain gradient.
    """
    if _stacked(momentum) and _runs(dampening):
        return 1 - dampening * (momentum != 0).to(momentum.dtype)
    # A float dampening of 0 weighs every configuration's gradient by exactly 1.
    return 1 - dampening


# Float vs stacked hyperparameters. A float (or a 0-dim tensor, which torch's
# kernels take as a number) goes through torch's own fused kernels (this is
# what keeps the float path bit-exact); a tensor of K values broadcasts.


def _stacked(hyperparameter: Hyperparameter) -> bool:
    """Whether this is one value per stacked configuration (a tensor with a dimension)."""
    return isinstance(hyperparameter, Tensor) and hyperparameter.dim() > 0


def _runs(hyperparameter: Hyperparameter) -> bool:
    """Whether a term scaled by this hyperparameter runs: skipped for a 0 (a float or a
    0-dim tensor), as torch does; always run for a stacked tensor, whose zero entries
    then contribute exactly 0."""
    return _stacked(hyperparameter) or bool(hyperparameter != 0)


def _per_parameter(param: Tensor, *hyperparameters: Hyperparameter) -> tuple[Hyperparameter, ...]:
    """View each tensor hyperparameter as (K, 1, ..., 1) against ``param`` of shape (K, ...).

    Only the leading dimension is kept, so viewing a view again (for the next
    parameter, of another rank) is the same as viewing the original.
    """
    configurations = param.shape[0] if param.dim() > 0 else 1
    viewed = []
    for value in hyperparameters:
        if isinstance(value, Tensor) and value.dim() > 0:
            if value.numel() not in (1, configurations) or value.numel() != value.shape[0]:
                raise ValueError(
                    f"a tensor hyperparameter must hold one value per stacked configuration "
                    f"(shape () or (K,) or (K, 1, ..., 1)) with K = the parameters' first "
                    f"dimension; got shape {tuple(value.shape)} for a parameter of shape "
                    f"{tuple(param.shape)}"
                )
            value = value.reshape((-1,) + (1,) * (param.dim() - 1) if param.dim() > 0 else ())
        viewed.append(value)
    return tuple(viewed)


def _scaled_add(x: Tensor, y: Tensor, alpha: Hyperparameter) -> Tensor:
    """x + alpha * y (new tensor)."""
    if _stacked(alpha):
        return torch.addcmul(x, y, alpha)
    return x.add(y, alpha=alpha)


def _scaled_add_(x: Tensor, y: Tensor, alpha: Hyperparameter) -> Tensor:
    """x <- x + alpha * y."""
    if _stacked(alpha):
        return x.addcmul_(y, alpha)
    return x.add_(y, alpha=alpha)


def _scaled_sub_(x: Tensor, y: Tensor, alpha: Hyperparameter) -> Tensor:
    """x <- x - alpha * y; for a stacked alpha without building -alpha (a sign flip is exact)."""
    if _stacked(alpha):
        return x.addcmul_(y, alpha, value=-1)
    return x.add_(y, alpha=-alpha)


def _scaled_addcmul_(x: Tensor, a: Tensor, b: Tensor, alpha: Hyperparameter) -> Tensor:
    """x <- x + alpha * a * b."""
    if _stacked(alpha):
        return x.addcmul_(a * b, alpha)
    return x.addcmul_(a, b, value=alpha)


def _scaled_addcdiv_(x: Tensor, a: Tensor, b: Tensor, alpha: Hyperparameter) -> Tensor:
    """x <- x + alpha * a / b."""
    if _stacked(alpha):
        return x.addcmul_(a / b, alpha)
    return x.addcdiv_(a, b, value=alpha)
