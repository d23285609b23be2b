"""Training functions gdlab check cannot run to a verdict (exit 2)."""

import torch


def train_without_epochs(model, train_loader, lr=1e-2):
    """Not the course's signature: no n_epochs, no loss_fn."""
    for imgs, labels in train_loader:
        torch.nn.functional.cross_entropy(model(imgs), labels).backward()


def train_with_typo(n_epochs, model, loss_fn, train_loader, lr=1e-2):
    """Raises NameError on its first update: `grad` is never defined."""
    for epoch in range(n_epochs):
        for imgs, labels in train_loader:
            loss_fn(model(imgs), labels).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p.data = p.data - lr * grad  # noqa: F821


def train_from_a_list(n_epochs, model, loss_fn, train_loader, lr=1e-2):
    """Draws every batch before the first step, so its steps cannot be observed one by one."""
    batches = list(train_loader)
    for epoch in range(n_epochs):
        for imgs, labels in batches:
            model.zero_grad()
            loss_fn(model(imgs), labels).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad


def train_on_arrays(X_train, Y_train, model, lr=1e-2):
    """Takes the data as two arrays, not a loader: gdlab has nothing to give X_train and Y_train."""
    for x, y in zip(X_train, Y_train):
        torch.nn.functional.cross_entropy(model(x), y).backward()
