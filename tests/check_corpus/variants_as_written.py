"""Known mistakes and formulations of SGD with momentum and of Adam, each written the way people write it."""

import torch


def train_decay_twice(n_epochs, model, loss_fn, train_loader, lr=1e-2, weight_decay=0.0):
    """L2 regularization written into the loss, and weight decay added to the gradient as well."""
    for epoch in range(n_epochs):
        for x, y in train_loader:
            model.zero_grad()
            l2 = sum((p ** 2).sum() for p in model.parameters())
            loss = loss_fn(model(x), y) + weight_decay / 2 * l2
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * (p.grad + weight_decay * p)


def train_buffer_reset_every_step(n_epochs, model, loss_fn, train_loader, lr=1e-2, momentum=0.0):
    """The velocities are created inside the loop over batches, so every step starts from zero."""
    for epoch in range(n_epochs):
        for x, y in train_loader:
            velocities = [torch.zeros_like(p) for p in model.parameters()]
            model.zero_grad()
            loss_fn(model(x), y).backward()
            with torch.no_grad():
                for v, p in zip(velocities, model.parameters()):
                    v.mul_(momentum).add_(p.grad)
                    p -= lr * v


def train_buffer_rebound(n_epochs, model, loss_fn, train_loader, lr=1e-2, momentum=0.0):
    """`v = momentum * v + p.grad` makes a new tensor bound to the loop variable; the list keeps its zeros."""
    velocities = [torch.zeros_like(p) for p in model.parameters()]
    for epoch in range(n_epochs):
        for x, y in train_loader:
            model.zero_grad()
            loss_fn(model(x), y).backward()
            with torch.no_grad():
                for v, p in zip(velocities, model.parameters()):
                    v = momentum * v + p.grad
                    p -= lr * v


def train_nesterov(n_epochs, model, loss_fn, train_loader, lr=1e-2, momentum=0.0):
    """Nesterov's look-ahead written out: the step uses g + m * v."""
    velocities = [torch.zeros_like(p) for p in model.parameters()]
    for epoch in range(n_epochs):
        for x, y in train_loader:
            model.zero_grad()
            loss_fn(model(x), y).backward()
            with torch.no_grad():
                for v, p in zip(velocities, model.parameters()):
                    v.mul_(momentum).add_(p.grad)
                    p -= lr * (p.grad + momentum * v)


def train_adam_eps_inside_sqrt(n_epochs, model, loss_fn, train_loader, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    beta1, beta2 = betas
    m = [torch.zeros_like(p) for p in model.parameters()]
    v = [torch.zeros_like(p) for p in model.parameters()]
    t = 0
    for epoch in range(n_epochs):
        for x, y in train_loader:
            model.zero_grad()
            loss_fn(model(x), y).backward()
            t += 1
            with torch.no_grad():
                for i, p in enumerate(model.parameters()):
                    m[i] = beta1 * m[i] + (1 - beta1) * p.grad
                    v[i] = beta2 * v[i] + (1 - beta2) * p.grad ** 2
                    m_hat = m[i] / (1 - beta1 ** t)
                    v_hat = v[i] / (1 - beta2 ** t)
                    p -= lr * m_hat / torch.sqrt(v_hat + eps)


def adam_step_moments_not_stored(params, exp_avgs, exp_avg_sqs, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """An update function whose moment buffers are rebound inside the loop, so never stored."""
    with torch.no_grad():
        for p, m, v in zip(params, exp_avgs, exp_avg_sqs):
            m = beta1 * m + (1 - beta1) * p.grad
            v = beta2 * v + (1 - beta2) * p.grad * p.grad
            p -= lr * (m / (1 - beta1 ** step)) / ((v / (1 - beta2 ** step)).sqrt() + eps)


def adam_step(params, exp_avgs, exp_avg_sqs, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """The same, with the buffers updated in place: right."""
    with torch.no_grad():
        for p, m, v in zip(params, exp_avgs, exp_avg_sqs):
            m.mul_(beta1).add_((1 - beta1) * p.grad)
            v.mul_(beta2).add_((1 - beta2) * p.grad * p.grad)
            p -= lr * (m / (1 - beta1 ** step)) / ((v / (1 - beta2 ** step)).sqrt() + eps)
