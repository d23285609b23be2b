"""Checks of ``fit_stacked``'s plain arguments: counts and the learning-rate schedule."""

import math

from gdlab.errors import GdlabError


def check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise GdlabError(f"fit_stacked: {name} must be an integer >= {minimum}, got {value!r}")


def check_learning_rates(learning_rates: list[list[float]] | None, epochs: int, base: list[float]) -> list[list[float]]:
    """Every member's learning rate in every epoch: the given ones, checked, or its own lr throughout."""
    if learning_rates is None:
        return [list(base) for _ in range(epochs)]
    rates = [list(epoch_rates) for epoch_rates in learning_rates]
    if len(rates) < epochs:
        raise GdlabError(
            f"fit_stacked: learning_rates has {len(rates)} epochs of rates for {epochs} epochs; give one list per epoch"
        )
    for epoch, epoch_rates in enumerate(rates[:epochs]):
        if len(epoch_rates) != len(base):
            raise GdlabError(
                f"fit_stacked: learning_rates[{epoch}] has {len(epoch_rates)} rates for {len(base)} models; "
                f"give one per model"
            )
        for member, rate in enumerate(epoch_rates):
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < math.inf:
                raise GdlabError(
                    f"fit_stacked: learning_rates[{epoch}][{member}] = {rate!r} must be a finite number >= 0"
                )
    return [[float(rate) for rate in epoch_rates] for epoch_rates in rates]
