"""How many stacked members fit in memory at once: a rough estimate per member, and the free memory."""

import sys

import torch
from torch import Tensor, nn

from gdlab.optim.declaration import RuleDeclaration
from gdlab.train.stacked.hparams import Rule, declaration_of, normalize_hparams

# Fraction of the free memory that stacked members may plan to use: the
# estimate below is rough, and other processes and the data need room too.
MEMORY_SAFETY_FRACTION = 0.5

# Parameter-sized temporaries an update rule allocates while it runs (the
# penalized gradient, a denominator, a scaled term).
RULE_TEMPORARIES = 3


def max_members_in_memory(
    model: nn.Module,
    rule: Rule,
    hparams: list[dict],
    batch_x: Tensor,
    safety_fraction: float = MEMORY_SAFETY_FRACTION,
    available_bytes: int | None = None,
) -> int:
    """How many members like ``model`` fit in memory at once (at least 1).

    ``safety_fraction`` of the available memory (``available_memory_bytes`` on
    ``batch_x``'s device unless ``available_bytes`` is given) divided by
    ``member_bytes``. Without a way to tell the available memory there is no limit.
    """
    settings = normalize_hparams(rule, hparams, len(hparams))
    return members_that_fit(model, rule, settings, batch_x, safety_fraction, available_bytes)


def members_that_fit(
    model: nn.Module,
    rule: Rule,
    settings: list[dict],
    batch_x: Tensor,
    safety_fraction: float = MEMORY_SAFETY_FRACTION,
    available_bytes: int | None = None,
) -> int:
    """``max_members_in_memory`` for settings already normalized; ``sys.maxsize`` when the free memory is unknown."""
    available = available_memory_bytes(batch_x.device) if available_bytes is None else available_bytes
    if available is None:
        return sys.maxsize
    return max(1, int(available * safety_fraction) // member_bytes(model, rule, settings, batch_x))


def member_bytes(model: nn.Module, rule: Rule, settings: list[dict], batch_x: Tensor) -> int:
    """Estimated memory of one stacked member training on batches like ``batch_x``.

    Parameter-sized tensors: the parameters, their gradients, the rule's state
    (the most any member of ``settings`` needs, since stacked state is shared
    in shape) and ``RULE_TEMPORARIES``; plus, per sample of the batch, every
    layer's output and its gradient.
    """
    params = list(model.parameters())
    itemsize = params[0].element_size()
    parameter_count = sum(param.numel() for param in params)
    declaration = declaration_of(rule)
    state = max(_state_tensors(declaration, member) for member in settings)
    per_sample = _activation_elements_per_sample(model, batch_x[:1])
    return itemsize * (parameter_count * (2 + state + RULE_TEMPORARIES) + 2 * per_sample * len(batch_x))


def _state_tensors(declaration: RuleDeclaration, member: dict) -> int:
    """Parameter-sized state tensors the rule keeps for one member with these hyperparameters,
    counted on a one-step run over a tiny parameter (a rule may make some of its state in its
    first step)."""
    param = torch.zeros(2, 3)
    state = declaration.init([param], member)
    declaration.update([param], [torch.ones(2, 3)], state, **member)
    return sum(
        1 for values in state for value in values if isinstance(value, Tensor) and value.shape == param.shape
    )


def available_memory_bytes(device: torch.device) -> int | None:
    """Free memory where ``device``'s tensors live: the GPU's free memory for CUDA,
    MemAvailable of /proc/meminfo for the CPU; None where neither can be read."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def _activation_elements_per_sample(model: nn.Module, one_sample: Tensor) -> int:
    """Elements of every leaf module's output for one sample (counted once per call)."""
    counts: list[int] = []
    leaves = [module for module in model.modules() if not list(module.children())]
    handles = [leaf.register_forward_hook(lambda module, args, output: counts.append(output.numel())) for leaf in leaves]
    try:
        with torch.no_grad():
            model(one_sample)
    finally:
        for handle in handles:
            handle.remove()
    return sum(counts)
