"""Networks and backward passes laid out the other ways people write them."""

import torch
import torch.nn as nn


class TwoLayerNet(nn.Module):
    """Named layers; forward keeps what backward needs as attributes; trained with nn.CrossEntropyLoss()."""

    def __init__(self, n_in=6, n_hidden=5, n_out=3):
        super().__init__()
        self.fc1 = nn.Linear(n_in, n_hidden)
        self.fc2 = nn.Linear(n_hidden, n_out)

    def forward(self, x):
        self.x_flat = x.view(x.shape[0], -1)
        self.h = torch.sigmoid(self.fc1(self.x_flat))
        return self.fc2(self.h)


def backward_into_grad(net, output, labels):
    """Cross-entropy (mean over the batch) by hand; the results go where autograd would put them."""
    n = output.shape[0]
    probs = torch.softmax(output, dim=1)
    dz2 = probs.clone()
    dz2[range(n), labels] -= 1
    dz2 /= n
    net.fc2.weight.grad = dz2.T @ net.h
    net.fc2.bias.grad = dz2.sum(0)
    dh = dz2 @ net.fc2.weight
    dz1 = dh * net.h * (1 - net.h)
    net.fc1.weight.grad = dz1.T @ net.x_flat
    net.fc1.bias.grad = dz1.sum(0)


def backward_summed_cross_entropy(net, output, labels):
    """The same for nn.CrossEntropyLoss(reduction="sum"): no division by the batch size."""
    probs = torch.softmax(output, dim=1)
    dz2 = probs - nn.functional.one_hot(labels, output.shape[1])
    net.fc2.weight.grad = dz2.T @ net.h
    net.fc2.bias.grad = dz2.sum(0)
    dz1 = (dz2 @ net.fc2.weight) * net.h * (1 - net.h)
    net.fc1.weight.grad = dz1.T @ net.x_flat
    net.fc1.bias.grad = dz1.sum(0)


class ListNet(nn.Module):
    """nn.ModuleList of layers, ReLU between them; forward keeps lists of inputs and pre-activations."""

    def __init__(self, sizes=(8, 6, 4, 2)):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])

    def forward(self, x):
        self.inputs, self.pre_activations = [], []
        out = x
        for i, layer in enumerate(self.layers):
            self.inputs.append(out)
            out = layer(out)
            self.pre_activations.append(out)
            if i < len(self.layers) - 1:
                out = torch.relu(out)
        return out


def backward_returning_lists(model, y_true, y_pred):
    """Mean squared error (nn.MSELoss()); returns the weight gradients and the bias gradients as two lists."""
    grads_W, grads_b = [], []
    delta = 2 * (y_pred - y_true) / y_pred.numel()
    for i in reversed(range(len(model.layers))):
        grads_W.insert(0, delta.T @ model.inputs[i])
        grads_b.insert(0, delta.sum(0))
        if i > 0:
            delta = (delta @ model.layers[i].weight) * (model.pre_activations[i - 1] > 0)
    return grads_W, grads_b


def backward_into_own_lists(model, y_true, y_pred):
    """Stores its results under names of its own choosing."""
    model.gW = [None] * len(model.layers)
    model.gb = [None] * len(model.layers)
    delta = 2 * (y_pred - y_true) / y_pred.numel()
    for i in reversed(range(len(model.layers))):
        model.gW[i] = delta.T @ model.inputs[i]
        model.gb[i] = delta.sum(0)
        if i > 0:
            delta = (delta @ model.layers[i].weight) * (model.pre_activations[i - 1] > 0)


def backward_with_two_weight_lists(model, y_true, y_pred):
    """The same, and it also keeps the weight gradients of the summed loss in a second list."""
    backward_into_own_lists(model, y_true, y_pred)
    model.gW_summed = [g * y_pred.numel() for g in model.gW]


class CourseNetWithBackward(nn.Module):
    """A network with its own backward method, as some course solutions write it (summed squared error)."""

    def __init__(self, sizes=(4, 5, 3)):
        super().__init__()
        self.hidden = nn.Linear(sizes[0], sizes[1])
        self.out = nn.Linear(sizes[1], sizes[2])

    def forward(self, x):
        self.x = x
        self.z1 = self.hidden(x)
        self.a1 = torch.tanh(self.z1)
        return self.out(self.a1)

    def backward(self, y_true, y_pred):
        d2 = 2 * (y_pred - y_true)
        self.dW = {"out": d2.T @ self.a1}
        self.db = {"out": d2.sum(0)}
        d1 = (d2 @ self.out.weight) * (1 - self.a1**2)
        self.dW["hidden"] = d1.T @ self.x
        self.db["hidden"] = d1.sum(0)
