"""A float64 loop that converts its batches itself, with the dtype held in a module constant."""

import torch

DTYPE = torch.float64


def train(n_epochs, model, loss_fn, train_loader, lr=1e-2):
    for epoch in range(n_epochs):
        for imgs, labels in train_loader:
            imgs = imgs.to(DTYPE)
            loss = loss_fn(model(imgs), labels)
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
