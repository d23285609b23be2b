r"""Many configurations trained at once, as one stacked model: ``fit_stacked``.

K models of one architecture, each with its own hyperparameters for one
update rule, train on the SAME batches in the same order, or, given one
loader per member (``MemberLoaders``: runs of different seeds), each lane of
members sharing a loader on its own batches of one common size. Their parameters are
stacked along a new first dimension (``models``), one forward pass gives every
member's scores, and one backward pass of

.. math:: L = \sum_k L_k(\theta_k)

gives every member its own gradient, since :math:`\partial L / \partial
\theta_k = \partial L_k / \partial \theta_k` (no parameter is shared). The
loss must average over the samples of its batch (mean reduction), as
``fit``'s does: then one call of it on all members' scores gives every
member's score gradient (in closed form for cross-entropy;
``score_gradients``). The update is the rule's declared ``update``
(:mod:`gdlab.optim.rules`), called once for all members with each numeric
hyperparameter as a tensor of K values (or a float when all members agree,
which takes the rule's float path; ``hparams``).

What each member gets is what :func:`gdlab.train.fit` gives for that model and
rule alone, up to rounding: a :class:`History` with the same fields and
meaning (``records``). A member whose loss turns NaN or infinite is marked
diverged at that iteration, its parameters are written back as they were
then, and it is dropped from the stack (``stack``); the others go on.

Members that do not fit in memory together (``memory``) train in chunks, one
after the other (``chunks``); every chunk re-iterates the loaders from the
first epoch, so the training loader must give each epoch's batches again in
the same order. A loader with ``set_epoch(e)`` (``gdlab.data.TensorLoader``)
is set to each epoch before it is iterated, which makes that so; for other
loaders the order is checked when there is more than one chunk, and a
different order is an error.

Modules, one idea each: ``fit`` (``fit_stacked`` and the epoch loop),
``hparams`` (each member's hyperparameters, and the rule's keywords for all),
``memory`` (how many members fit), ``chunks`` (chunk sizes, the loader
repeated per chunk), ``stack`` (the members training together), ``models``
(stacked forward; the backward pass is :func:`gdlab.backprop.mlp_backward`),
``score_gradients`` (dL_k/dscores_k), ``records`` (an epoch's figures into
the Histories), ``arguments`` (checks of the plain arguments).
"""

from gdlab.train.stacked.chunks import MemberLoaders
from gdlab.train.stacked.fit import fit_stacked
from gdlab.train.stacked.hparams import declaration_of, normalize_hparams
from gdlab.train.stacked.memory import available_memory_bytes, max_members_in_memory, member_bytes
from gdlab.train.stacked.models import supports_stacking

__all__ = [
    "MemberLoaders",
    "available_memory_bytes",
    "declaration_of",
    "fit_stacked",
    "max_members_in_memory",
    "member_bytes",
    "normalize_hparams",
    "supports_stacking",
]
