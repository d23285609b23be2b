"""The course's network, as its backpropagation notebook defines it.

The project works in float64: the notebook's first cell sets the default
dtype. Layers are `fc["1"]` .. `fc[str(L)]` in an `nn.ModuleDict`; forward
caches `z[l]` (before the activation) and `a[l]` (after it) in dicts keyed by
layer number; backpropagation stores its results in `dL_dw[l]` / `dL_db[l]`.
"""

import torch
import torch.nn as nn

torch.set_default_dtype(torch.double)


class MyNet(nn.Module):
    def __init__(self, n_l=[2, 3, 2]):
        super().__init__()

        # number of layers in our network (following Andrew's notations)
        self.L = len(n_l) - 1
        self.n_l = n_l

        # Where we will store our neuron values
        # - z: before activation function
        # - a: after activation function (a=f(z))
        self.z = {i: None for i in range(1, self.L + 1)}
        self.a = {i: None for i in range(self.L + 1)}

        # Where we will store the gradients for our custom backpropagation algo
        self.dL_dw = {i: None for i in range(1, self.L + 1)}
        self.dL_db = {i: None for i in range(1, self.L + 1)}

        # Our activation functions
        self.f = {i: lambda x: torch.tanh(x) for i in range(1, self.L + 1)}

        # Derivatives of our activation functions
        self.df = {i: lambda x: (1 / (torch.cosh(x) ** 2)) for i in range(1, self.L + 1)}

        # fully connected layers
        # We have to use nn.ModuleDict and to use strings as keys here to
        # respect pytorch requirements (otherwise, the model does not learn)
        self.fc = nn.ModuleDict({str(i): None for i in range(1, self.L + 1)})
        for i in range(1, self.L + 1):
            self.fc[str(i)] = nn.Linear(in_features=n_l[i - 1], out_features=n_l[i])

    def forward(self, x):
        """
        Computes the forward pass of the network

        Stores the intermediate values in self.z and self.a
        """
        # Input layer
        self.a[0] = torch.flatten(x, 1)

        # Hidden layers until output layer
        for i in range(1, self.L + 1):
            # fully connected layer
            self.z[i] = self.fc[str(i)](self.a[i - 1])
            # activation
            self.a[i] = self.f[i](self.z[i])

        # return output
        return self.a[self.L]


# The loss the project trains and tests with: squared error, summed.
loss = nn.MSELoss(reduction="none")


def summed_loss(y_pred, y_true):
    return loss(y_pred, y_true).sum()
