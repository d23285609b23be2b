"""Neuromatch Academy's optimization tutorial (W1D5), its update functions as the tutorial writes them.

The tutorial's loop computes `loss = loss_fn(model(X), y)` and hands it to the
update function with `list(model.parameters())` and the auxiliary tensors
(zeros like each parameter); the update function zeroes the gradients,
calls `loss.backward()` and updates in place through `.data`.
"""

import torch


def zero_grad(params):
  """
  Clear gradients as they accumulate on successive backward calls
  """
  for par in params:
    if not(par.grad is None):
      par.grad.data.zero_()


def gradient_update(loss, params, lr=1e-3):
  """
  Perform a gradient descent update on a given loss over a collection of parameters
  """
  zero_grad(params)
  loss.backward()
  with torch.no_grad():
    for par in params:
      par.data -= lr * par.grad.data


def momentum_update(loss, params, grad_vel, lr=1e-3, beta=0.8):
  """
  Perform a momentum update over a collection of parameters given a loss and velocities
  """
  zero_grad(params)
  loss.backward()
  with torch.no_grad():
    for (par, vel) in zip(params, grad_vel):
      # Update 'velocity'
      vel.data = -lr * par.grad.data + beta * vel.data
      # Update parameters
      par.data += vel.data


def rmsprop_update(loss, params, grad_sq, lr=1e-3, alpha=0.8, epsilon=1e-8):
  """
  Perform an RMSprop update on a collection of parameters
  """
  zero_grad(params)
  loss.backward()
  with torch.no_grad():
    for (par, gsq) in zip(params, grad_sq):
      # Update estimate of gradient variance
      gsq.data = alpha * gsq.data + (1-alpha) * par.grad.data**2
      # Update parameters
      par.data -=  lr * (par.grad.data / (epsilon + gsq.data)**0.5)


def momentum_update_without_zero_grad(loss, params, grad_vel, lr=1e-3, beta=0.8):
  """The exercise with its first line forgotten: gradients pile up in p.grad."""
  loss.backward()
  with torch.no_grad():
    for (par, vel) in zip(params, grad_vel):
      vel.data = -lr * par.grad.data + beta * vel.data
      par.data += vel.data
