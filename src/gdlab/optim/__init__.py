"""Update rules from scratch, bit-for-bit equal to ``torch.optim`` (``foreach=False``).

``functional`` holds each rule as one short function over lists of tensors,
its docstring stating the equations; the classes are thin
``torch.optim.Optimizer`` subclasses that hold hyperparameters and state and
call those functions, so param groups, ``state_dict`` and torch's LR
schedulers work on them as on torch's own.
"""

from gdlab.optim import functional
from gdlab.optim.adagrad import Adagrad
from gdlab.optim.adam import Adam, AdamW
from gdlab.optim.rmsprop import RMSprop
from gdlab.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "functional"]
