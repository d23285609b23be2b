"""Training loops from the course's gradient-descent project, written the way its float64 notebooks write them.

The course works in float64: the notebook starts with
`torch.set_default_dtype(torch.double)`, so every tensor it makes is float64.
Its templates vary: hyperparameters before the model, a validation loader,
a device, an optimizer argument.
"""

from datetime import datetime

import torch
import torch.nn as nn

torch.set_default_dtype(torch.double)
device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def train(n_epochs, optimizer, model, loss_fn, train_loader):
    """The project's first task: the loop with torch's optimizer."""
    n_batch = len(train_loader)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    for epoch in range(1, n_epochs + 1):
        loss_train = 0.0
        for imgs, labels in train_loader:
            imgs = imgs.to(device=device)
            labels = labels.to(device=device)
            outputs = model(imgs)
            loss = loss_fn(outputs, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            loss_train += loss.item()
        if epoch == 1 or epoch % 5 == 0:
            print('{}  |  Epoch {}  |  Training loss {:.3f}'.format(
                datetime.now().time(), epoch, loss_train / n_batch))


def train_manual_update(n_epochs, model, loss_fn, learning_rate, train_loader, weight_decay=0.0, momentum=0.0):
    """The reference solution of the manual update: SGD with L2 weight decay and momentum, as torch does it.
    learning_rate sits before train_loader, where gdlab used to expect the loader."""
    velocities = [torch.zeros_like(p) for p in model.parameters()]
    for epoch in range(1, n_epochs + 1):
        for imgs, labels in train_loader:
            imgs, labels = imgs.to(device), labels.to(device)
            loss = loss_fn(model(imgs), labels)
            loss.backward()
            with torch.no_grad():
                for p, v in zip(model.parameters(), velocities):
                    grad = p.grad + weight_decay * p
                    v.mul_(momentum).add_(grad)
                    p -= learning_rate * v
                    p.grad.zero_()


def train_model(lr, weight_decay, momentum, model, criterion, train_loader, val_loader, device, num_epochs=10):
    """A template with the hyperparameters first, a validation pass every epoch, and a device."""
    buffers = {}
    history = []
    for epoch in range(num_epochs):
        model.train()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            model.zero_grad()
            criterion(model(x), y).backward()
            with torch.no_grad():
                for name, p in model.named_parameters():
                    d_p = p.grad + weight_decay * p
                    if name not in buffers:
                        buffers[name] = d_p.clone()
                    else:
                        buffers[name] = momentum * buffers[name] + d_p
                    p -= lr * buffers[name]
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
        history.append(correct / len(val_loader.dataset))
    return history


def train_one_epoch(model, loader, loss_function, optimizer, learning_rate=1e-2):
    """One epoch per call, no number of epochs: gdlab calls it once per epoch."""
    for X, y_true in loader:
        model.zero_grad()
        loss_function(model(X), y_true).backward()
        with torch.no_grad():
            for param in model.parameters():
                param -= learning_rate * param.grad
