"""Many configurations of the 784-100-100-10 MLP, one epoch each: stacked vs one at a time vs the notebooks' way.

The configurations are the course report's (lr, momentum, weight decay)
settings for SGD (``--configs N`` takes the first N), batch 128, on 60,000
MNIST-shaped images (the real Fashion-MNIST training set when it is installed,
else random pixels; the output says which). Three ways to train them all,
every configuration from the same initialization:

- vectorized: ``gdlab.train.stacked.fit_stacked``, all configurations as one
  stacked model over one ``TensorLoader`` (one batch order for all);
- sequential: one ``gdlab.train.fit`` per configuration, ``gdlab.optim.SGD``,
  each over a ``TensorLoader`` with the same seed (the same batches);
- reference: one run per configuration of a per-sample pipeline (``harness.py``:
  ``course`` is torchvision's MNIST item with ToTensor and Normalize, as the
  notebooks run it; ``lean`` the least per-sample work), a
  ``DataLoader(batch_size=128, shuffle=True)``, and the usual zero_grad /
  forward / loss / backward / step loop with ``torch.optim.SGD``.

Each round runs the three in a rotated order; the median and the fastest
round are reported with the ratios (of medians, and of fastest rounds), the
fraction of this machine's measured matmul rate each reaches, and how far the
vectorized losses are from the sequential ones.
``--profile`` adds where the vectorized epoch spends its time.

    .venv/bin/python benchmarks/bench_vectorized.py [--configs 10] [--epochs 1] [--rounds 3] [--skip-reference] [--profile]
"""

import argparse
import copy
import statistics
import time

import torch

import gdlab
from gdlab.data import TensorLoader, channel_stats, normalize
from gdlab.models import MLP
from gdlab.train import fit, fit_stacked
from harness import BATCH_SIZE, REFERENCES, SIZES, matmul_rate, mnist_shaped_images, reference_training, training_flops

# (lr, momentum, weight decay) of the course report's sweep
COURSE_SETTINGS = [
    (0.01, 0.0, 0.0),
    (0.1, 0.0, 0.0),
    (0.01, 0.0, 0.01),
    (0.01, 0.9, 0.0),
    (0.01, 0.9, 0.01),
    (0.01, 0.9, 0.001),
    (0.01, 0.8, 0.01),
    (0.1, 0.9, 0.01),
    (0.1, 0.9, 0.001),
    (0.9, 0.9, 0.01),
]


def hyperparameters(settings) -> list[dict]:
    return [{"lr": lr, "momentum": momentum, "weight_decay": decay} for lr, momentum, decay in settings]


def initial_models(count: int, seed: int) -> list[MLP]:
    torch.manual_seed(seed)
    return [MLP(SIZES) for _ in range(count)]


def run_vectorized(models, configurations, x, y, epochs, seed):
    members = copy.deepcopy(models)
    loader = TensorLoader(x, y, batch_size=BATCH_SIZE, shuffle=True, seed=seed)
    started = time.perf_counter()
    histories = fit_stacked(members, "sgd", configurations, loader, epochs=epochs)
    return time.perf_counter() - started, histories


def run_sequential(models, configurations, x, y, epochs, seed):
    histories = []
    started = time.perf_counter()
    for model, configuration in zip(copy.deepcopy(models), configurations):
        optimizer = gdlab.optim.SGD(model.parameters(), **configuration)
        loader = TensorLoader(x, y, batch_size=BATCH_SIZE, shuffle=True, seed=seed)
        histories.append(fit(model, optimizer, loader, epochs=epochs))
    return time.perf_counter() - started, histories


def run_reference(models, configurations, dataset, epochs, seed):
    started = time.perf_counter()
    for model, configuration in zip(copy.deepcopy(models), configurations):
        torch.manual_seed(seed)
        optimizer = torch.optim.SGD(model.parameters(), **configuration)
        reference_training(model, optimizer, dataset, epochs)
    return time.perf_counter() - started, None


def loss_agreement(stacked, sequential, early: int = 50) -> tuple[float, float]:
    """Largest relative difference between vectorized and sequential losses, over the runs that
    did not diverge: of the first ``early`` iterations, and of the last epoch's training loss."""
    early_worst, epoch_worst = 0.0, 0.0
    for a, b in zip(stacked, sequential):
        if a.diverged or b.diverged:
            continue
        pairs = list(zip(a.iteration_loss, b.iteration_loss))[:early]
        early_worst = max(early_worst, max(abs(p - q) / abs(q) for p, q in pairs))
        epoch_worst = max(epoch_worst, abs(a.epoch_train_loss[-1] - b.epoch_train_loss[-1]) / b.epoch_train_loss[-1])
    return early_worst, epoch_worst


def profile_vectorized(models, configurations, x, y, seed) -> None:
    from torch.profiler import profile

    with profile() as profiler:
        run_vectorized(models, configurations, x, y, 1, seed)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=len(COURSE_SETTINGS), help="how many of the course settings")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="repeats; the median and the fastest are reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true", help="leave the (slow) reference pipeline out")
    parser.add_argument("--profile", action="store_true", help="also profile one vectorized epoch")
    args = parser.parse_args()
    if not 1 <= args.configs <= len(COURSE_SETTINGS):
        parser.error(f"--configs must be between 1 and {len(COURSE_SETTINGS)}")

    images, labels, source = mnist_shaped_images()
    mean, std = channel_stats(images)
    x = normalize(images, mean, std)
    configurations = hyperparameters(COURSE_SETTINGS[: args.configs])
    models = initial_models(len(configurations), args.seed)
    print(
        f"data: {source}, {len(labels)} images; {len(configurations)} configurations x {args.epochs} epoch(s), "
        f"batch {BATCH_SIZE}; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    rate = matmul_rate()

    ways = {
        "vectorized": lambda: run_vectorized(models, configurations, x, labels, args.epochs, args.seed),
        "sequential": lambda: run_sequential(models, configurations, x, labels, args.epochs, args.seed),
    }
    if not args.skip_reference:
        for name, cls in REFERENCES.items():
            dataset = cls(images, labels, mean[0], std[0])
            ways[f"ref-{name}"] = (lambda d: lambda: run_reference(models, configurations, d, args.epochs, args.seed))(dataset)
    names = list(ways)
    times = {name: [] for name in names}
    histories = {}
    for round_index in range(args.rounds):
        order = names[round_index % len(names):] + names[: round_index % len(names)]
        for name in order:
            seconds, histories[name] = ways[name]()
            times[name].append(seconds)
            print(f"  round {round_index + 1}: {name:12s} {seconds:7.2f} s", flush=True)
        # Other processes can slow any one measurement down, none can speed it up: keep the best.
        rate = max(rate, matmul_rate())

    flops = training_flops(len(labels), len(configurations), args.epochs)
    median = {name: statistics.median(values) for name, values in times.items()}
    fastest = {name: min(values) for name, values in times.items()}
    print()
    print(
        f"matmul rate: {rate / 1e9:.1f} GFLOP/s (float32 2048x2048, best of every round); the matmuls of "
        f"this training need {flops / 1e9:.0f} GFLOP, {flops / rate:.2f} s at that rate: a floor for every way"
    )
    print(f"{'way':12s} {'median':>9s} {'fastest':>9s} {'per config':>11s} {'of matmul rate':>15s}")
    for name in names:
        seconds = median[name]
        print(
            f"{name:12s} {seconds:7.2f} s {fastest[name]:7.2f} s {seconds / len(configurations):9.2f} s "
            f"{flops / seconds / rate:14.1%}"
        )
    print()

    def ratio(slow: str, fast: str) -> str:
        return f"{median[slow] / median[fast]:.2f}x faster (fastest rounds: {fastest[slow] / fastest[fast]:.2f}x)"

    print(f"RATIO vectorized vs sequential: {ratio('sequential', 'vectorized')}; target >= 2x")
    for name in REFERENCES:
        if f"ref-{name}" in median:
            print(f"RATIO vectorized vs reference ({name}): {ratio(f'ref-{name}', 'vectorized')}; target >= 10x")
            print(f"RATIO sequential vs reference ({name}): {ratio(f'ref-{name}', 'sequential')}")
    early, epoch = loss_agreement(histories["vectorized"], histories["sequential"])
    print(
        f"vectorized vs sequential losses (largest relative difference, runs that did not diverge): "
        f"first 50 iterations {early:.1e}, last epoch's training loss {epoch:.1e}"
    )
    for name in ("vectorized", "sequential"):
        diverged = [COURSE_SETTINGS[k] for k, history in enumerate(histories[name]) if history.diverged]
        print(f"diverged ({name}): {diverged or 'none'}")
    if args.profile:
        profile_vectorized(models, configurations, x, labels, args.seed)


if __name__ == "__main__":
    main()
