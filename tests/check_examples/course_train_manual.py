"""The course notebook's plain train_manual (000_cifar2_gradient_descent): correct SGD."""

from datetime import datetime

import torch

device = torch.device("cpu")


def train_manual(n_epochs, model, loss_fn, train_loader, lr=1e-2):
    model.train()
    
    for epoch in range(1, n_epochs + 1):
        loss_train = 0.0
        for imgs, labels in train_loader:
            imgs = imgs.to(device=device) 
            labels = labels.to(device=device)

            outputs = model(imgs)
            loss = loss_fn(outputs, labels)
            loss.backward()

            with torch.no_grad():
                for i, p in enumerate(model.parameters()):
                    if p.grad is not None:
                        grad = p.grad.detach()
                        p.data = p.data - lr*grad
                        p.grad.zero_()     #  zero out all gradients                   

            loss_train += loss.item()

        if epoch == 1 or epoch % 5 == 0:
            print('{}  |  Epoch {}  |  Training loss {:.3f}'.format(
                datetime.now().time(), epoch,
                loss_train / len(train_loader)))
