"""One epoch of the 784-100-100-10 MLP: gdlab's data path and loop vs the course notebooks' pipeline.

Both sides train the same network (SGD, lr 0.01, momentum 0.9, batch 128) on
the same 60,000 MNIST-shaped images (the real Fashion-MNIST training set when
it is installed, else random pixels; the output says which):

- reference: a per-sample ``Dataset`` whose ``__getitem__`` turns one uint8
  image into a normalized float tensor, ``DataLoader(batch_size=128,
  shuffle=True)``, and the usual zero_grad / forward / loss / backward / step
  loop with ``torch.optim.SGD``;
- gdlab: the images normalized once into one tensor, ``TensorLoader`` index
  slices, ``gdlab.train.fit`` with ``gdlab.optim.SGD``.

Rounds alternate which side goes first; the median over rounds is reported,
with the ratio and the fraction of this machine's measured matmul rate that
each side reaches. Then, in a fresh process, peak memory after 1 and after 30
epochs of gdlab training.

    .venv/bin/python benchmarks/bench_epoch.py [--rounds 3] [--memory-epochs 30]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import gdlab
from gdlab.data import TensorLoader, channel_stats, normalize
from gdlab.models import MLP
from gdlab.train import fit

SIZES = [784, 100, 100, 10]
BATCH_SIZE = 128
LR, MOMENTUM = 0.01, 0.9


def mnist_shaped_images() -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        dataset = gdlab.data.load("fashion-mnist")
        return dataset.train.x, dataset.train.y, f"Fashion-MNIST train set ({dataset.source})"
    except gdlab.errors.GdlabError:
        generator = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (60_000, 1, 28, 28), dtype=torch.uint8, generator=generator)
        y = torch.randint(0, 10, (60_000,), generator=generator)
        return x, y, "random uint8 pixels (Fashion-MNIST not installed)"


class PerSampleDataset(torch.utils.data.Dataset):
    """The notebooks' pipeline: each image converted and normalized on its own, when asked for."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float):
        self.images, self.labels, self.mean, self.std = images, labels, mean, std

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = torch.from_numpy(self.images[index]).float().div(255.0)
        return (image - self.mean) / self.std, int(self.labels[index])


def reference_epoch(images: np.ndarray, labels: np.ndarray, mean: float, std: float, seed: int) -> float:
    torch.manual_seed(seed)
    model = MLP(SIZES)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loader = torch.utils.data.DataLoader(PerSampleDataset(images, labels, mean, std), batch_size=BATCH_SIZE, shuffle=True)
    started = time.perf_counter()
    for x, y in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()
    return time.perf_counter() - started


def gdlab_epoch(x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    torch.manual_seed(seed)
    model = MLP(SIZES)
    optimizer = gdlab.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loader = TensorLoader(x, y, batch_size=BATCH_SIZE, shuffle=True, seed=seed)
    started = time.perf_counter()
    fit(model, optimizer, loader, epochs=1)
    return time.perf_counter() - started


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


def epoch_flops(samples: int) -> float:
    """Forward 2 FLOPs per weight per sample, backward twice that: 6 x weights x samples."""
    weights = sum(fan_in * fan_out for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]))
    return 6 * weights * samples


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_probe(epochs: int) -> None:
    """Run in a fresh process: peak RSS after 1 epoch and after ``epochs`` epochs of gdlab training."""
    images, labels, _ = mnist_shaped_images()
    mean, std = channel_stats(images)
    x, y = normalize(images, mean, std), labels
    del images
    torch.manual_seed(0)
    model = MLP(SIZES)
    optimizer = gdlab.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loader = TensorLoader(x, y, batch_size=BATCH_SIZE, shuffle=True, seed=0)
    fit(model, optimizer, loader, epochs=1)
    after_one = peak_rss_mib()
    fit(model, optimizer, loader, epochs=epochs - 1)
    print(json.dumps({"after_1": after_one, f"after_{epochs}": peak_rss_mib(), "epochs": epochs}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-epochs", type=int, default=30)
    parser.add_argument("--memory-probe", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe)
        return

    images, labels, source = mnist_shaped_images()
    mean, std = channel_stats(images)
    x = normalize(images, mean, std)
    images_np, labels_np = images.squeeze(1).numpy(), labels.numpy()
    print(f"data: {source}, {len(labels)} images; torch {torch.__version__}, {torch.get_num_threads()} threads")
    rate = matmul_rate()
    print(f"measured matmul rate: {rate / 1e9:.1f} GFLOP/s (float32, 2048x2048)")

    reference_times, gdlab_times = [], []
    for round_index in range(args.rounds):
        sides = [("reference", lambda: reference_epoch(images_np, labels_np, mean[0], std[0], round_index)),
                 ("gdlab", lambda: gdlab_epoch(x, labels, round_index))]
        if round_index % 2:
            sides.reverse()
        for name, run in sides:
            seconds = run()
            (reference_times if name == "reference" else gdlab_times).append(seconds)
            print(f"  round {round_index + 1}: {name:9s} {seconds:6.2f} s")

    flops = epoch_flops(len(labels))
    reference, ours = statistics.median(reference_times), statistics.median(gdlab_times)
    print()
    print(f"{'pipeline':10s} {'epoch (median)':>15s} {'of FLOP limit':>14s}")
    for name, seconds in (("reference", reference), ("gdlab", ours)):
        print(f"{name:10s} {seconds:13.2f} s {flops / seconds / rate:13.1%}")
    print(f"speed-up: gdlab is {reference / ours:.1f}x faster than the reference pipeline (target >= 4x)")

    probe = subprocess.run(
        [sys.executable, __file__, "--memory-probe", str(args.memory_epochs)],
        capture_output=True, text=True, check=True,
    )
    memory = json.loads(probe.stdout.strip().splitlines()[-1])
    after_many = memory[f"after_{args.memory_epochs}"]
    print(
        f"peak memory: {memory['after_1']:.0f} MiB after 1 epoch, {after_many:.0f} MiB after "
        f"{args.memory_epochs}: ratio {after_many / memory['after_1']:.3f} (target <= 1.05)"
    )


if __name__ == "__main__":
    main()
