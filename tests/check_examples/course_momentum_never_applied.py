"""The course notebook's train_manual_w_decay_mom, as written (000_cifar2_gradient_descent).

`mom_lst` starts empty and is never filled (the gradients go to
`curr_mom_lst`, which is never read), so the `else` branch that applies
momentum never runs: this trains plain SGD with weight decay, while
`curr_mom_lst` grows by one tensor per parameter per step.
"""

from datetime import datetime

import torch

device = torch.device("cpu")


def train_manual_w_decay_mom(n_epochs, model, loss_fn, train_loader, lr=1e-2, w_decay=0.,c_mom=0.):
    model.train()
    
    mom_lst = []
    curr_mom_lst = []

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
                                            
                        grad = grad + w_decay*p.data # L2 regularization term

                        if mom_lst == []:  # first time
                          if curr_mom_lst == []:
                            curr_mom_lst = [grad]
                          else:
                            curr_mom_lst.append(grad)
                        else:
                            grad = grad + mom_lst[i]*c_mom # build up some momentum!
                            mom_lst[i] = grad

                        p.data = p.data - lr*grad
                        p.grad.zero_()     #  zero out all gradients
                   
            loss_train += loss.item()

        if epoch == 1 or epoch % 5 == 0:
            print('{}  |  Epoch {}  |  Training loss {:.3f}'.format(
                datetime.now().time(), epoch,
                loss_train / len(train_loader)))
