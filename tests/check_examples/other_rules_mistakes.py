"""Mistakes with Adam, RMSprop and Adagrad, one function each, for `gdlab check`'s diagnosis."""

import torch


def _train(n_epochs, model, loss_fn, train_loader, optimizer):
    for epoch in range(n_epochs):
        for x, y in train_loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()


def train_adam_without_bias_correction(n_epochs, model, loss_fn, train_loader, lr=1e-3, betas=(0.9, 0.999),
                                       eps=1e-8):
    """Adam from the paper's first lines only: m and v are never divided by (1 - beta^t)."""
    beta1, beta2 = betas
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in model.parameters()]
    for epoch in range(n_epochs):
        for x, y in train_loader:
            model.zero_grad()
            loss_fn(model(x), y).backward()
            with torch.no_grad():
                for (m, v), p in zip(moments, model.parameters()):
                    m.mul_(beta1).add_((1 - beta1) * p.grad)
                    v.mul_(beta2).add_((1 - beta2) * p.grad**2)
                    p -= lr * m / (v.sqrt() + eps)


def train_adam_with_adamw_decay(n_epochs, model, loss_fn, train_loader, lr=1e-3, weight_decay=0.0):
    """Meant to be Adam with L2 weight decay, but uses AdamW's decoupled decay."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, foreach=False)
    _train(n_epochs, model, loss_fn, train_loader, optimizer)


def train_rmsprop_ignoring_momentum(n_epochs, model, loss_fn, train_loader, lr=1e-2, momentum=0.0):
    """Takes a momentum argument and never passes it on."""
    optimizer = torch.optim.RMSprop(model.parameters(), lr=lr, foreach=False)
    _train(n_epochs, model, loss_fn, train_loader, optimizer)


def train_adagrad_ignoring_lr_decay(n_epochs, model, loss_fn, train_loader, lr=1e-2, lr_decay=0.0):
    """Takes lr_decay and never passes it on."""
    optimizer = torch.optim.Adagrad(model.parameters(), lr=lr, foreach=False)
    _train(n_epochs, model, loss_fn, train_loader, optimizer)
