"""More ways to get SGD wrong, one function each, for `gdlab check`'s diagnosis."""

import torch


def train_lr_divided_by_batch_size(n_epochs, model, loss_fn, train_loader, lr=1e-2):
    """The loss is already a batch mean; dividing the gradient by the batch size again shrinks every step."""
    for epoch in range(n_epochs):
        for imgs, labels in train_loader:
            model.zero_grad()
            loss_fn(model(imgs), labels).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p.data = p.data - lr * p.grad / len(imgs)


def train_update_never_applied(n_epochs, model, loss_fn, train_loader, lr=1e-2):
    """`p = p - lr * g` rebinds the loop variable; the model's parameters never change."""
    for epoch in range(n_epochs):
        for imgs, labels in train_loader:
            model.zero_grad()
            loss_fn(model(imgs), labels).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p = p - lr * p.grad


def train_gradient_ascent(n_epochs, model, loss_fn, train_loader, lr=1e-2):
    """A plus where a minus belongs."""
    for epoch in range(n_epochs):
        for imgs, labels in train_loader:
            model.zero_grad()
            loss_fn(model(imgs), labels).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p += lr * p.grad


def train_momentum_as_moving_average(n_epochs, model, loss_fn, train_loader, lr=1e-2, momentum=0.0):
    """Momentum as v = m*v + (1 - m)*g from v = 0, the form many lecture notes use; torch's is v = m*v + g."""
    velocities = [torch.zeros_like(p) for p in model.parameters()]
    for epoch in range(n_epochs):
        for imgs, labels in train_loader:
            model.zero_grad()
            loss_fn(model(imgs), labels).backward()
            with torch.no_grad():
                for v, p in zip(velocities, model.parameters()):
                    v.mul_(momentum).add_((1 - momentum) * p.grad)
                    p -= lr * v


def train_velocity_inside_epoch_loop(n_epochs, model, loss_fn, train_loader, lr=1e-2, momentum=0.0):
    """The momentum buffers are created inside the epoch loop, so they restart every epoch."""
    for epoch in range(n_epochs):
        velocities = [None for _ in model.parameters()]
        for imgs, labels in train_loader:
            model.zero_grad()
            loss_fn(model(imgs), labels).backward()
            with torch.no_grad():
                for i, p in enumerate(model.parameters()):
                    if velocities[i] is None:
                        velocities[i] = p.grad.clone()
                    else:
                        velocities[i] = momentum * velocities[i] + p.grad
                    p -= lr * velocities[i]


def train_with_torch_sgd(n_epochs, model, loss_fn, train_loader, lr=1e-2, momentum=0.0, dampening=0.0,
                         weight_decay=0.0, nesterov=False):
    """torch.optim.SGD itself, in the standard loop: equal to the reference bit for bit."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, dampening=dampening,
                                weight_decay=weight_decay, nesterov=nesterov, foreach=False)
    for epoch in range(n_epochs):
        for imgs, labels in train_loader:
            optimizer.zero_grad()
            loss_fn(model(imgs), labels).backward()
            optimizer.step()


def train_always_nesterov(n_epochs, model, loss_fn, train_loader, lr=1e-2, momentum=0.0, nesterov=False):
    """Ignores its nesterov argument and always uses Nesterov momentum."""
    train_with_torch_sgd(n_epochs, model, loss_fn, train_loader, lr=lr, momentum=momentum, nesterov=True)


def train_one_epoch_short(n_epochs, model, loss_fn, train_loader, lr=1e-2):
    """range(1, n_epochs) runs n_epochs - 1 epochs."""
    for epoch in range(1, n_epochs):
        for imgs, labels in train_loader:
            model.zero_grad()
            loss_fn(model(imgs), labels).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad


def train_decay_once_per_epoch(n_epochs, model, loss_fn, train_loader, lr=1e-2, weight_decay=0.0):
    """Weight decay applied once at the end of each epoch instead of in every step."""
    for epoch in range(n_epochs):
        for imgs, labels in train_loader:
            model.zero_grad()
            loss_fn(model(imgs), labels).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * weight_decay * p


def train_dampened_momentum(n_epochs, model, loss_fn, train_loader, lr=1e-2, momentum=0.0):
    """Dampens the momentum by (1 - momentum), which torch does only when asked for dampening."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, dampening=momentum, foreach=False)
    for epoch in range(n_epochs):
        for imgs, labels in train_loader:
            optimizer.zero_grad()
            loss_fn(model(imgs), labels).backward()
            optimizer.step()
