"""The backward pass of a real course report (shared/reference/004_backprop_and_sweep_report.txt).

`backpropagation_as_listed` is the report's first listing, verbatim: right for
the course's summed squared error. `backpropagation` is the function as the
report says it ran: the same loop followed by the report's second listing, a
weight update with the "scaling factor" `learning_rate = 1e-9`, inside the
backward step.
"""

import torch


def backpropagation_as_listed(model, y_true, y_pred):
    with torch.no_grad():
        # MSE = (pred - true)^2
        # MSE_derived = 2(pred - true)
        # The slope of the loss function can be computed like this:
        grad_post_activation = 2 * (y_pred - y_true)

        # Compute gradient for each layer backwards from output layer to the first hidden layer
        for layer in range(model.L, 0, -1):

            # Slope of loss with respect to pre-activation of current layer
            grad_pre_activation = grad_post_activation * model.df[layer](model.z[layer])

            # Compute gradients of the loss with respect to the weights and biases of the current layer
            model.dL_dw[layer] = torch.matmul(grad_pre_activation.T, model.a[layer - 1])
            model.dL_db[layer] = torch.sum(grad_pre_activation, dim=0)

            # Compute the gradient of the loss with respect to the output of the previous layer
            grad_post_activation = torch.matmul(grad_pre_activation, model.fc[str(layer)].weight)


def backpropagation(model, y_true, y_pred):
    with torch.no_grad():
        grad_post_activation = 2 * (y_pred - y_true)

        for layer in range(model.L, 0, -1):
            grad_pre_activation = grad_post_activation * model.df[layer](model.z[layer])
            model.dL_dw[layer] = torch.matmul(grad_pre_activation.T, model.a[layer - 1])
            model.dL_db[layer] = torch.sum(grad_pre_activation, dim=0)
            grad_post_activation = torch.matmul(grad_pre_activation, model.fc[str(layer)].weight)

        learning_rate = 1e-9
        for layer in range(1, model.L + 1):
            model.fc[str(layer)].weight -= learning_rate * model.dL_dw[layer]
            model.fc[str(layer)].bias -= learning_rate * model.dL_db[layer]
