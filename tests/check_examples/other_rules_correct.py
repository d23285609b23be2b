"""Adam, AdamW, RMSprop and Adagrad written by hand the way a student would: right, up to rounding.

Every formula is torch's, but with new tensors (`m = beta1 * m + (1 - beta1) * g`)
instead of torch's in-place, fused operations, so the rounding differs.
"""

import math

import torch


def _step_loop(n_epochs, model, loss_fn, train_loader, update):
    for epoch in range(n_epochs):
        for x, y in train_loader:
            model.zero_grad()
            loss_fn(model(x), y).backward()
            with torch.no_grad():
                for i, p in enumerate(model.parameters()):
                    p.data = update(i, p.data, p.grad)


def train_adam(n_epochs, model, loss_fn, train_loader, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
               weight_decay=0.0, amsgrad=False):
    beta1, beta2 = betas
    m, v, v_max, t = {}, {}, {}, {}

    def update(i, p, g):
        g = g + weight_decay * p
        t[i] = t.get(i, 0) + 1
        m[i] = beta1 * m.get(i, torch.zeros_like(p)) + (1 - beta1) * g
        v[i] = beta2 * v.get(i, torch.zeros_like(p)) + (1 - beta2) * g * g
        if amsgrad:
            v_max[i] = torch.maximum(v_max.get(i, torch.zeros_like(p)), v[i])
            second = v_max[i]
        else:
            second = v[i]
        m_hat = m[i] / (1 - beta1 ** t[i])
        denom = second.sqrt() / math.sqrt(1 - beta2 ** t[i]) + eps
        return p - lr * m_hat / denom

    _step_loop(n_epochs, model, loss_fn, train_loader, update)


def train_adamw(n_epochs, model, loss_fn, train_loader, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=1e-2):
    m, v, t = {}, {}, {}

    def update(i, p, g):
        p = p * (1 - lr * weight_decay)
        t[i] = t.get(i, 0) + 1
        m[i] = beta1 * m.get(i, torch.zeros_like(p)) + (1 - beta1) * g
        v[i] = beta2 * v.get(i, torch.zeros_like(p)) + (1 - beta2) * g * g
        m_hat = m[i] / (1 - beta1 ** t[i])
        v_hat = v[i] / (1 - beta2 ** t[i])
        return p - lr * m_hat / (v_hat.sqrt() + eps)

    _step_loop(n_epochs, model, loss_fn, train_loader, update)


def train_rmsprop(n_epochs, model, loss_fn, train_loader, lr=1e-2, alpha=0.99, eps=1e-8,
                  weight_decay=0.0, momentum=0.0, centered=False):
    square_avg, grad_avg, buf = {}, {}, {}

    def update(i, p, g):
        g = g + weight_decay * p
        square_avg[i] = alpha * square_avg.get(i, torch.zeros_like(p)) + (1 - alpha) * g * g
        if centered:
            grad_avg[i] = alpha * grad_avg.get(i, torch.zeros_like(p)) + (1 - alpha) * g
            avg = (square_avg[i] - grad_avg[i] ** 2).sqrt() + eps
        else:
            avg = square_avg[i].sqrt() + eps
        if momentum > 0:
            buf[i] = momentum * buf.get(i, torch.zeros_like(p)) + g / avg
            return p - lr * buf[i]
        return p - lr * g / avg

    _step_loop(n_epochs, model, loss_fn, train_loader, update)


def train_adagrad(n_epochs, model, loss_fn, train_loader, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                  initial_accumulator_value=0.0, eps=1e-10):
    sums, t = {}, {}

    def update(i, p, g):
        g = g + weight_decay * p
        t[i] = t.get(i, 0) + 1
        sums[i] = sums.get(i, torch.full_like(p, initial_accumulator_value)) + g * g
        clr = lr / (1 + (t[i] - 1) * lr_decay)
        return p - clr * g / (sums[i].sqrt() + eps)

    _step_loop(n_epochs, model, loss_fn, train_loader, update)
