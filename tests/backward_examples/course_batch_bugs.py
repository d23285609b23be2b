"""Course-style backward passes, each with a mistake in the batch dimension.

All are written for the course's summed squared error and its `MyNet`
(course_model.py): `fc[str(l)]`, `z[l]`, `a[l]`, `df[l]`, results in
`dL_dw[l]` / `dL_db[l]`.
"""

import torch


def output_layer_then_hidden_loop_bias_not_summed(model, y_true, y_pred):
    """The output layer first, then a loop over the hidden layers whose bias gradient keeps the batch."""
    with torch.no_grad():
        L = model.L
        delta = 2 * (y_pred - y_true) * model.df[L](model.z[L])
        model.dL_dw[L] = delta.T @ model.a[L - 1]
        model.dL_db[L] = delta.sum(dim=0)

        for l in range(L - 1, 0, -1):
            delta = (delta @ model.fc[str(l + 1)].weight) * model.df[l](model.z[l])
            model.dL_dw[l] = delta.T @ model.a[l - 1]
            model.dL_db[l] = delta  # one row per example: never summed over the batch


def propagates_the_bias_gradient(model, y_true, y_pred):
    """Reuses dL_db (already summed over the batch) to carry the gradient back: the sum comes before df."""
    with torch.no_grad():
        grad_post_activation = 2 * (y_pred - y_true)
        for layer in range(model.L, 0, -1):
            grad_pre_activation = grad_post_activation * model.df[layer](model.z[layer])
            model.dL_dw[layer] = torch.matmul(grad_pre_activation.T, model.a[layer - 1])
            model.dL_db[layer] = torch.sum(grad_pre_activation, dim=0)
            grad_post_activation = torch.matmul(model.dL_db[layer], model.fc[str(layer)].weight)


def sums_the_loss_gradient_first(model, y_true, y_pred):
    """Sums the loss gradient over the batch before the output layer's activation derivative."""
    with torch.no_grad():
        grad_post_activation = 2 * torch.sum(y_pred - y_true, dim=0)
        for layer in range(model.L, 0, -1):
            grad_pre_activation = grad_post_activation * model.df[layer](model.z[layer])
            model.dL_dw[layer] = torch.matmul(grad_pre_activation.T, model.a[layer - 1])
            model.dL_db[layer] = torch.sum(grad_pre_activation, dim=0)
            grad_post_activation = torch.matmul(grad_pre_activation, model.fc[str(layer)].weight)


def averages_the_bias_gradient_in_the_first_layer(model, y_true, y_pred):
    """Right everywhere but in layer 1, whose bias gradient is a mean over the batch instead of a sum."""
    with torch.no_grad():
        grad_post_activation = 2 * (y_pred - y_true)
        for layer in range(model.L, 0, -1):
            grad_pre_activation = grad_post_activation * model.df[layer](model.z[layer])
            model.dL_dw[layer] = torch.matmul(grad_pre_activation.T, model.a[layer - 1])
            if layer == 1:
                model.dL_db[layer] = torch.mean(grad_pre_activation, dim=0)
            else:
                model.dL_db[layer] = torch.sum(grad_pre_activation, dim=0)
            grad_post_activation = torch.matmul(grad_pre_activation, model.fc[str(layer)].weight)


def forgets_the_two(model, y_true, y_pred):
    """The derivative of (pred - true)^2 written as (pred - true)."""
    with torch.no_grad():
        grad_post_activation = y_pred - y_true
        for layer in range(model.L, 0, -1):
            grad_pre_activation = grad_post_activation * model.df[layer](model.z[layer])
            model.dL_dw[layer] = torch.matmul(grad_pre_activation.T, model.a[layer - 1])
            model.dL_db[layer] = torch.sum(grad_pre_activation, dim=0)
            grad_post_activation = torch.matmul(grad_pre_activation, model.fc[str(layer)].weight)


def mean_loss_gradient(model, y_true, y_pred):
    """Right for the mean squared error (nn.MSELoss()'s default): divides by the number of elements."""
    with torch.no_grad():
        grad_post_activation = 2 * (y_pred - y_true) / y_pred.numel()
        for layer in range(model.L, 0, -1):
            grad_pre_activation = grad_post_activation * model.df[layer](model.z[layer])
            model.dL_dw[layer] = torch.matmul(grad_pre_activation.T, model.a[layer - 1])
            model.dL_db[layer] = torch.sum(grad_pre_activation, dim=0)
            grad_post_activation = torch.matmul(grad_pre_activation, model.fc[str(layer)].weight)


def subtracts_in_place(model, y_true, y_pred):
    """Right gradients, but the loss gradient is built in y_pred's own memory (y_pred is model.a[L])."""
    with torch.no_grad():
        grad_post_activation = y_pred
        grad_post_activation -= y_true
        grad_post_activation *= 2
        for layer in range(model.L, 0, -1):
            grad_pre_activation = grad_post_activation * model.df[layer](model.z[layer])
            model.dL_dw[layer] = torch.matmul(grad_pre_activation.T, model.a[layer - 1])
            model.dL_db[layer] = torch.sum(grad_pre_activation, dim=0)
            grad_post_activation = torch.matmul(grad_pre_activation, model.fc[str(layer)].weight)


def also_writes_grad_for_the_optimizer(model, y_true, y_pred):
    """Right dL_dw / dL_db, and it also fills .grad, with the step it wants optimizer.step() to take."""
    learning_rate = 0.01
    with torch.no_grad():
        grad_post_activation = 2 * (y_pred - y_true)
        for layer in range(model.L, 0, -1):
            grad_pre_activation = grad_post_activation * model.df[layer](model.z[layer])
            model.dL_dw[layer] = torch.matmul(grad_pre_activation.T, model.a[layer - 1])
            model.dL_db[layer] = torch.sum(grad_pre_activation, dim=0)
            grad_post_activation = torch.matmul(grad_pre_activation, model.fc[str(layer)].weight)
            model.fc[str(layer)].weight.grad = learning_rate * model.dL_dw[layer]
            model.fc[str(layer)].bias.grad = learning_rate * model.dL_db[layer]
