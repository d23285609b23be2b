"""The README's worked example: the course's SGD with weight decay and momentum, momentum never applied."""

import torch


def train_manual_w_decay_mom(n_epochs, model, loss_fn, train_loader, lr=1e-2, w_decay=0.0, c_mom=0.0):
    mom_lst = []
    curr_mom_lst = []
    for epoch in range(n_epochs):
        for imgs, labels in train_loader:
            loss = loss_fn(model(imgs), labels)
            loss.backward()
            with torch.no_grad():
                for i, p in enumerate(model.parameters()):
                    grad = p.grad + w_decay * p.data
                    if mom_lst == []:  # first time
                        curr_mom_lst.append(grad)
                    else:
                        grad = grad + mom_lst[i] * c_mom
                        mom_lst[i] = grad
                    p.data = p.data - lr * grad
                    p.grad.zero_()
