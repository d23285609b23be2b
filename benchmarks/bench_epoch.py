"""One epoch of the 784-100-100-10 MLP: gdlab's data path and loop vs the course notebooks' pipeline.

All sides train the same network (SGD, lr 0.01, momentum 0.9, batch 128) on
the same 60,000 MNIST-shaped images (the real Fashion-MNIST training set when
it is installed, else random pixels; the output says which):

- reference, course and lean (see ``harness.py``): a per-sample ``Dataset``,
  ``DataLoader(batch_size=128, shuffle=True)``, the usual zero_grad / forward
  / loss / backward / step loop with ``torch.optim.SGD``;
- gdlab: the images normalized once into one tensor, ``TensorLoader`` index
  slices, ``gdlab.train.fit`` with ``gdlab.optim.SGD``.

Rounds rotate which side goes first; the median over rounds is reported, with
the ratios and the fraction of this machine's measured matmul rate that each
side reaches. Then, in a fresh process, peak memory after 1 and after 30
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

import torch

import gdlab
from gdlab.data import TensorLoader, channel_stats, normalize
from gdlab.models import MLP
from gdlab.train import fit
from harness import BATCH_SIZE, REFERENCES, SIZES, matmul_rate, mnist_shaped_images, reference_training, training_flops

LR, MOMENTUM = 0.01, 0.9


def reference_epoch(dataset, seed: int) -> float:
    torch.manual_seed(seed)
    model = MLP(SIZES)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    started = time.perf_counter()
    reference_training(model, optimizer, dataset)
    return time.perf_counter() - started


def gdlab_epoch(x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    torch.manual_seed(seed)
    model = MLP(SIZES)
    optimizer = gdlab.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loader = TensorLoader(x, y, batch_size=BATCH_SIZE, shuffle=True, seed=seed)
    started = time.perf_counter()
    fit(model, optimizer, loader, epochs=1)
    return time.perf_counter() - started


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
    datasets = {name: cls(images, labels, mean[0], std[0]) for name, cls in REFERENCES.items()}
    print(f"data: {source}, {len(labels)} images; torch {torch.__version__}, {torch.get_num_threads()} threads")
    rate = matmul_rate()

    sides = {f"reference ({name})": (lambda d: lambda seed: reference_epoch(d, seed))(d) for name, d in datasets.items()}
    sides["gdlab"] = lambda seed: gdlab_epoch(x, labels, seed)
    names = list(sides)
    times = {name: [] for name in names}
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = sides[name](round_index)
            times[name].append(seconds)
            print(f"  round {round_index + 1}: {name:18s} {seconds:6.2f} s", flush=True)
        # Other processes can slow a measurement down, none can speed it up: keep the best rate.
        rate = max(rate, matmul_rate())

    flops = training_flops(len(labels))
    median = {name: statistics.median(values) for name, values in times.items()}
    print()
    print(f"matmul rate {rate / 1e9:.1f} GFLOP/s (float32 2048x2048, best of every round); "
          f"one epoch's matmuls: {flops / 1e9:.1f} GFLOP, {flops / rate:.2f} s at that rate")
    print(f"{'pipeline':18s} {'epoch (median)':>15s} {'of matmul rate':>15s}")
    for name in names:
        print(f"{name:18s} {median[name]:13.2f} s {flops / median[name] / rate:14.1%}")
    for name in datasets:
        reference = f"reference ({name})"
        print(f"RATIO gdlab vs {reference}: {median[reference] / median['gdlab']:.1f}x faster (target >= 4x)")

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
