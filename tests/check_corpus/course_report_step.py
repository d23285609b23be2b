"""The manual SGD step of a course report (gradient-descent project), as its authors wrote it.

The loop around it calls `model.zero_grad()`, `loss.backward()` and then
`manual_sgd_step(model, learning_rate, momentum, weight_decay, momentum_buffer)`
with `momentum_buffer = [None for param in model.parameters()]`.
"""

import torch


def manual_sgd_step(model, learning_rate, momentum, weight_decay, momentum_buffer):
    # A single step of SGD
    # Ref: https://pytorch.org/docs/stable/generated/torch.optim.SGD.html
    with torch.no_grad():
        for i, param in enumerate(model.parameters()):
            gradient = param.grad

            # Apply L2 regularization
            if weight_decay != 0:
                gradient = gradient.add(param, alpha=weight_decay)

            # Apply momentum
            if momentum != 0:
                velocity = momentum_buffer[i]
                if velocity is None:
                    # Initialize the velocity as the gradient, not as zero
                    velocity = torch.clone(gradient).detach()
                    momentum_buffer[i] = velocity
                else:
                    velocity.mul_(momentum).add_(gradient)

                gradient = velocity

            # Update parameters
            param.add_(gradient, alpha=-learning_rate)
