"""SGD with weight decay and momentum that never zeroes p.grad, so gradients accumulate."""

import torch


def train_sgd(n_epochs, model, loss_fn, train_loader, lr=1e-2, weight_decay=0.0, momentum=0.0):
    velocities = [None for _ in model.parameters()]
    for epoch in range(1, n_epochs + 1):
        for imgs, labels in train_loader:
            outputs = model(imgs)
            loss = loss_fn(outputs, labels)
            loss.backward()

            with torch.no_grad():
                for i, p in enumerate(model.parameters()):
                    grad = p.grad.detach() + weight_decay * p.data
                    if velocities[i] is None:
                        velocities[i] = grad.clone()
                    else:
                        velocities[i] = momentum * velocities[i] + grad
                    p.data = p.data - lr * velocities[i]
