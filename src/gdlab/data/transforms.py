"""Pixel transforms on whole tensors: channel statistics, normalization, random horizontal flip."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from gdlab.errors import GdlabError


def _require_uint8_images(x: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim != 4:
        found = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise GdlabError(f"{what} needs uint8 images of shape (N, C, H, W), got a {found}")


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images ``(N, C, H, W)``, in [0, 1] units.

    With v = x / 255 over all N*H*W pixels of channel c:
    mean_c = E[v], std_c = sqrt(E[(v - mean_c)^2]) (population std, as
    torchvision's published CIFAR-10 figures use). Computed exactly from a
    256-bin histogram per channel, in float64, without a float copy of x.
    """
    _require_uint8_images(x, "channel_stats")
    if x.shape[0] == 0:
        raise GdlabError("channel_stats needs at least one image, got an empty tensor")
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in range(x.shape[1]):
        counts = torch.bincount(x[:, channel].reshape(-1), minlength=256).to("cpu", torch.float64)
        weights = counts / counts.sum()
        mean = (weights * values).sum()
        means.append(mean.item())
        stds.append((weights * (values - mean) ** 2).sum().sqrt().item())
    return tuple(means), tuple(stds)


def _per_channel(value: float | Sequence[float], channels: int, what: str) -> tuple[float, ...]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value,) * channels
    try:
        value = tuple(float(item) for item in value)
    except (TypeError, ValueError):
        raise GdlabError(f"normalize: {what} must be a number or one number per channel, got {value!r}") from None
    if len(value) != channels:
        raise GdlabError(f"normalize: {what} has {len(value)} values {value} but the images have {channels} channels")
    if not all(math.isfinite(item) for item in value):
        raise GdlabError(f"normalize: {what} must be finite, got {value}")
    return value


def normalize(
    x: torch.Tensor,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``(x / 255 - mean_c) / std_c`` per channel, as a ``dtype`` tensor on ``device``.

    The same operations in the same order as torchvision's
    ``ToTensor()`` + ``Normalize(mean, std)``, so the result is bit-identical
    to the course's per-image pipeline, computed on the whole tensor at once.
    ``x`` is moved to ``device`` while still uint8 (4x fewer bytes to copy).
    """
    _require_uint8_images(x, "normalize")
    if not dtype.is_floating_point:
        raise GdlabError(f"normalize: dtype must be a floating-point dtype, got {dtype}")
    channels = x.shape[1]
    mean = _per_channel(mean, channels, "mean")
    std = _per_channel(std, channels, "std")
    if any(item <= 0 for item in std):
        raise GdlabError(f"normalize: std must be positive in every channel, got {std}")
    x = x.to(device) if device is not None else x
    mean_tensor = torch.tensor(mean, dtype=dtype, device=x.device).view(1, channels, 1, 1)
    std_tensor = torch.tensor(std, dtype=dtype, device=x.device).view(1, channels, 1, 1)
    return x.to(dtype).div_(255).sub_(mean_tensor).div_(std_tensor)


def random_horizontal_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Each image of the batch ``x`` (N, ..., W) mirrored left-right with probability ``p``.

    One uniform draw per image from ``generator``: image i is flipped when
    ``u_i < p``. The draws are made on the generator's device and the mask is
    then moved to ``x``, so a CPU generator gives the same flips whatever
    device ``x`` is on. Returns a new tensor; ``x`` is left as it was.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise GdlabError(f"random_horizontal_flip needs a batch tensor (N, ..., W), got {x!r:.80}")
    if not isinstance(generator, torch.Generator):
        raise GdlabError(
            f"random_horizontal_flip needs a torch.Generator (e.g. torch.Generator().manual_seed(0)), got {generator!r}"
        )
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise GdlabError(f"random_horizontal_flip: p must be a probability in [0, 1], got {p!r}")
    draws = torch.rand(x.shape[0], generator=generator, device=generator.device)
    flip = (draws < p).to(x.device).view(-1, *([1] * (x.ndim - 1)))
    return torch.where(flip, x.flip(-1), x)
