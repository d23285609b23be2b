"""Mistakes in the batch dimension, recognized by what the right quantities would have given.

For every nn.Linear layer l of a network run forward once with autograd,
forward hooks record its input a[l-1] and output z[l]; autograd gives
dL/dz[l] (delta), dL/dp[l] for p[l] what follows z[l] (the next layer's input,
or y_pred after the last layer), and dp/dz (the activation derivative, when
the activation acts element by element, which is checked: delta must equal
dL/dp * dp/dz).

A backward pass that sums dL/dp over the batch before multiplying by the
activation derivative, ``(dL/dp).sum(0) * f'(z)`` (reusing the already summed
bias gradient to carry the gradient back is the usual way to get there),
gives in that layer

    delta' = (sum over n of dL/dp[n]) * f'(z)      dW' = delta'.T @ a[l-1]     db' = delta'.sum(0)

so a layer whose (dW, db) equal k·(dW', db') is that mistake, with k = 1 for
a sum and 1/N for a mean. It is tested at the layer where the wrong gradients
start: the last layer that is wrong while every later one is right.
"""

from dataclasses import dataclass

import torch

from gdlab.gradcheck.comparison import is_close

# How close dL/dz must be to dL/dp * dp/dz for the activation to count as element by element.
ELEMENTWISE_RTOL, ELEMENTWISE_ATOL = 1e-10, 1e-12


@dataclass(frozen=True)
class LayerTrace:
    name: str
    a_prev: torch.Tensor  # the layer's input, (N, in)
    z: torch.Tensor  # its output, (N, out)
    delta: torch.Tensor  # dL/dz for the loss given, (N, out)
    upstream: torch.Tensor | None  # dL/dp, p = what follows z, (N, out); None if not element by element
    derivative: torch.Tensor | None  # dp/dz element by element, (N, out); None if not element by element


def trace_layers(network, layers, x, loss_of_output):
    """One LayerTrace per layer in ``layers`` (forward order), or None when the forward does not allow it."""
    records = {}
    handles = []
    for layer in layers:
        def hook(module, inputs, output, name=layer.name):
            if name not in records and inputs and torch.is_tensor(inputs[0]):
                records[name] = (inputs[0], output)
        handles.append(layer.module.register_forward_hook(hook))
    try:
        with torch.enable_grad():
            for layer in layers:
                layer.module.weight.requires_grad_(True)
            y_pred = network(x)
            if len(records) != len(layers) or not torch.is_tensor(y_pred) or not y_pred.requires_grad:
                return None
            loss = loss_of_output(y_pred)
            zs = [records[layer.name][1] for layer in layers]
            follows = [records[layer.name][0] for layer in layers[1:]] + [y_pred]
            targets = zs + [p for p in follows if p.requires_grad]
            gradients = torch.autograd.grad(loss, targets, retain_graph=True, allow_unused=True)
            by_id = {id(t): g for t, g in zip(targets, gradients)}
            traces = []
            for layer, z, p in zip(layers, zs, follows):
                delta = by_id[id(z)]
                if delta is None:
                    return None
                upstream = by_id.get(id(p)) if p.requires_grad else None
                derivative = None
                if upstream is not None and p.shape == z.shape:
                    (derivative,) = torch.autograd.grad(p, z, torch.ones_like(p), retain_graph=True, allow_unused=True)
                    if derivative is None or not torch.allclose(
                        upstream * derivative, delta, rtol=ELEMENTWISE_RTOL, atol=ELEMENTWISE_ATOL
                    ):
                        upstream = derivative = None
                else:
                    upstream = None
                traces.append(LayerTrace(
                    layer.name,
                    records[layer.name][0].detach(),
                    z.detach(),
                    delta.detach(),
                    None if upstream is None else upstream.detach(),
                    None if derivative is None else derivative.detach(),
                ))
            return traces
    except Exception:  # the user's forward; without a trace the diagnosis simply names fewer causes
        return None
    finally:
        for handle in handles:
            handle.remove()


def summed_first(trace: LayerTrace, scale: float):
    """(dW', db') of a backward pass that sums dL/dp over the batch before f'(z), for scale x the loss."""
    if trace.upstream is None:
        return None
    delta = scale * trace.upstream.sum(dim=0) * trace.derivative
    return delta.T @ trace.a_prev, delta.sum(dim=0)


def fitted_scale(analytic_pair, expected_pair, rtol, atol):
    """k with analytic = k · expected for both tensors of a layer (k = 1 included), or None."""
    weight, bias = analytic_pair
    expected_weight, expected_bias = expected_pair
    if weight.shape != expected_weight.shape or bias.shape != expected_bias.shape:
        return None
    scale = expected_weight.abs().max()
    if scale == 0:
        return None
    voters = expected_weight.abs() >= 1e-3 * scale
    k = (weight[voters] / expected_weight[voters]).median().item()
    if k == 0:
        return None
    close_weight = is_close(weight, k * expected_weight, rtol, abs(k) * atol)
    if close_weight and is_close(bias, k * expected_bias, rtol, abs(k) * atol):
        return k
    return None
