"""d2l.ai's "Linear Regression Implementation from Scratch" (PyTorch tab): its minibatch SGD, as the
book writes it and as students copy it into every later chapter.

The book's loop sums the loss over the batch before differentiating:
`l = loss(net(X, w, b), y)` (one squared error per example), `l.sum().backward()`,
`sgd([w, b], lr, batch_size)`; so `sgd` divides the gradient by the batch size.
"""

import torch


def sgd(params, lr, batch_size):  #@save
    """Minibatch stochastic gradient descent."""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


def sgd_without_the_division(params, lr, batch_size):
    """A student's copy that lost `/ batch_size`: steps batch_size times too long on a summed loss."""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad
            param.grad.zero_()
