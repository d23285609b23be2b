"""What the benchmarks stand on: the data, the per-sample reference pipelines, this machine's matmul rate.

Two reference pipelines, both "a Dataset converting each uint8 image to a
normalized float tensor, DataLoader, the usual loop":

- ``course``: what the course notebooks run, torchvision's
  ``datasets.MNIST.__getitem__`` with ``transforms.ToTensor()`` and
  ``transforms.Normalize``, step for step (torchvision cannot be installed
  beside this torch, so its steps are written out here): the uint8 array
  becomes a PIL image, ToTensor copies it back into a tensor, makes it
  channel-first and scales it to [0, 1], Normalize clones it and subtracts and
  divides per channel;
- ``lean``: the least per-sample work that still converts and normalizes one
  image at a time (numpy uint8 -> float tensor -> normalized), no PIL. It is
  the harder baseline, and both are reported.
"""

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import gdlab

SIZES = [784, 100, 100, 10]
BATCH_SIZE = 128


def mnist_shaped_images() -> tuple[torch.Tensor, torch.Tensor, str]:
    """60,000 uint8 (1, 28, 28) images: the real Fashion-MNIST training set when installed."""
    try:
        dataset = gdlab.data.load("fashion-mnist")
        return dataset.train.x, dataset.train.y, f"Fashion-MNIST train set ({dataset.source})"
    except gdlab.errors.GdlabError:
        generator = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (60_000, 1, 28, 28), dtype=torch.uint8, generator=generator)
        y = torch.randint(0, 10, (60_000,), generator=generator)
        return x, y, "random uint8 pixels (Fashion-MNIST not installed)"


class CourseDataset(torch.utils.data.Dataset):
    """torchvision's MNIST item with ToTensor() and Normalize(mean, std), step for step."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float):
        self.data, self.targets = images.squeeze(1), labels
        self.mean, self.std = torch.tensor([mean]), torch.tensor([std])

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        image, target = self.data[index], int(self.targets[index])
        picture = Image.fromarray(image.numpy(), mode="L")  # datasets.MNIST.__getitem__
        tensor = torch.from_numpy(np.array(picture, np.uint8, copy=True))  # ToTensor
        tensor = tensor.view(picture.size[1], picture.size[0], 1).permute((2, 0, 1)).contiguous()
        tensor = tensor.to(dtype=torch.get_default_dtype()).div(255)
        tensor = tensor.clone()  # Normalize (inplace=False)
        tensor.sub_(self.mean.view(-1, 1, 1)).div_(self.std.view(-1, 1, 1))
        return tensor, target


class LeanDataset(torch.utils.data.Dataset):
    """One image at a time, converted and normalized with the fewest steps: no PIL, no copies."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float):
        self.images, self.labels, self.mean, self.std = images.squeeze(1).numpy(), labels.numpy(), mean, std

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = torch.from_numpy(self.images[index]).float().div(255.0)
        return (image - self.mean) / self.std, int(self.labels[index])


REFERENCES = {"course": CourseDataset, "lean": LeanDataset}


def reference_training(model, optimizer, dataset, epochs: int = 1) -> None:
    """The notebooks' loop over a shuffling DataLoader of per-sample items."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True)
    for _ in range(epochs):
        for images, labels in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            loss.item()


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matmul rate in FLOP/s: this machine's practical ceiling."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def training_flops(samples: int, configurations: int = 1, epochs: int = 1) -> float:
    """FLOPs of the matmuls: per weight and sample, 2 forward, 2 for the weight gradient and 2
    for the input gradient, except in the first layer, whose input (the images) needs none."""
    first = SIZES[0] * SIZES[1]
    later = sum(fan_in * fan_out for fan_in, fan_out in zip(SIZES[1:-1], SIZES[2:]))
    return (4 * first + 6 * later) * samples * configurations * epochs


def interleaved_rounds(sides: dict[str, Callable[[int], float]], rounds: int) -> tuple[dict[str, list[float]], float]:
    """Every side once per round, round r starting r sides further along, so no side always runs
    first or after the same neighbour; ``sides[name](round)`` returns its seconds.
    Returns the seconds of every side, round by round, and the best matmul rate measured
    between rounds (other processes can slow a measurement down, none can speed it up)."""
    names = list(sides)
    times = {name: [] for name in names}
    rate = matmul_rate()
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = sides[name](round_index)
            times[name].append(seconds)
            print(f"  round {round_index + 1}: {name:28s} {seconds:8.3f} s", flush=True)
        rate = max(rate, matmul_rate())
    return times, rate


def spread(values: list[float]) -> str:
    """The median and how far the rounds stray from it: ``median s (min-max, +-x% of the median)``."""
    median = statistics.median(values)
    half_range = (max(values) - min(values)) / 2
    return f"{median:8.3f} s ({min(values):.3f}-{max(values):.3f}, ±{half_range / median:.0%})"
