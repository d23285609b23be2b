"""gdlab against the fastest peers: the same MLP epoch and K-way sweep in gdlab, plain PyTorch and JAX + optax.

The epoch: the 784-100-100-10 MLP (ReLU), batch 128, 60,000 MNIST-shaped
images resident in memory (the real Fashion-MNIST training set when it is
installed, else random pixels; the output says which), normalized once,
flattened, SGD with momentum 0.9; every iteration's loss and correct count
kept; one shuffled batch order per epoch, the last partial batch dropped on
every side (468 batches of 128: a JAX scan wants batches of one shape).
Compile time is excluded; everything else an epoch needs is in its time.

Single runs (lr 0.01):

- ``gdlab fit``: ``gdlab.train.fit`` with ``gdlab.optim.SGD`` over a ``TensorLoader``;
- ``gdlab fit_fast``: ``gdlab.train.fit_fast``, the same optimizer, the
  hand-written gradient path, losses on the device until the epoch ends;
- ``torch expert``: the plain PyTorch loop an expert writes: resident tensors,
  index slices of a ``randperm``, ``nn.Sequential``, ``F.cross_entropy``,
  ``torch.optim.SGD(foreach=True)``, losses kept on the device;
- ``jax single``: ``benchmarks/peers_jax.py``: one ``jit``-compiled ``lax.scan``
  over the epoch with ``optax.sgd``.
- ``torch matmuls alone``: only the epoch's matrix products (three forward,
  five backward per step, the same shapes, on contiguous slices of the
  resident data), as torch runs them: no loss, activation, gather or update.
  A floor under any eager PyTorch epoch of this network, ``fit_fast`` and the
  expert's loop included; its ratio to JAX's whole epoch says how much room
  eager PyTorch has at all.

K configurations at once (K learning rates, log-spaced from 1e-3 to 1e-1,
momentum 0.9, one batch order for all):

- ``gdlab stacked``: ``gdlab.train.fit_stacked`` (one stacked model);
- ``gdlab sequential``: K ``gdlab.train.fit`` runs one after the other (only
  for the K in ``--sequential-ks``: it takes K epochs);
- ``jax vmap``: the JAX epoch under ``jax.vmap`` over parameters, optimizer
  state and learning rate.

JAX runs in its own environment (``make bench-peers`` creates ``.venv-peers``
with jax and optax; gdlab does not depend on JAX) as a worker process that
compiled its epochs before the first round; every round asks it for its
epochs in turn with gdlab's, each round starting one side further along.
Printed: each side's median over rounds with the spread (min-max), the
fraction of this machine's measured float32 matmul rate it reaches (the
matmuls' FLOPs over its median), each epoch's mean training loss (every
side trains the same problem: they must be alike), and the ratios.

    .venv/bin/python benchmarks/bench_peers.py [--rounds 5] [--ks 10,100] [--sequential-ks 10]
        [--samples N] [--jax-python .venv-peers/bin/python | --no-jax]
"""

import argparse
import json
import math
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import gdlab
from gdlab.data import TensorLoader, channel_stats, normalize
from gdlab.models import MLP
from gdlab.train import fit, fit_fast, fit_stacked
from harness import BATCH_SIZE, SIZES, interleaved_rounds, mnist_shaped_images, spread, training_flops

LR, MOMENTUM = 0.01, 0.9
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JAX_PYTHON = ROOT / ".venv-peers" / "bin" / "python"


def sweep_rates(k: int) -> list[float]:
    return torch.logspace(-3, -1, k, dtype=torch.float64).tolist()


def gdlab_single(trainer, x, y, lr: float, seed: int) -> tuple[float, float]:
    """Seconds of one epoch of ``trainer`` (fit or fit_fast) and its mean training loss."""
    torch.manual_seed(seed)
    model = MLP(SIZES)
    optimizer = gdlab.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM)
    loader = TensorLoader(x, y, batch_size=BATCH_SIZE, shuffle=True, seed=seed, drop_last=True)
    started = time.perf_counter()
    history = trainer(model, optimizer, loader, epochs=1)
    return time.perf_counter() - started, statistics.fmean(history.iteration_loss)


def gdlab_stacked(x, y, k: int, seed: int) -> tuple[float, float]:
    torch.manual_seed(seed)
    models = [MLP(SIZES) for _ in range(k)]
    hyperparameters = [{"lr": lr, "momentum": MOMENTUM} for lr in sweep_rates(k)]
    loader = TensorLoader(x, y, batch_size=BATCH_SIZE, shuffle=True, seed=seed, drop_last=True)
    started = time.perf_counter()
    histories = fit_stacked(models, "sgd", hyperparameters, loader, epochs=1)
    seconds = time.perf_counter() - started
    return seconds, statistics.fmean(statistics.fmean(history.iteration_loss) for history in histories)


def gdlab_sequential(x, y, k: int, seed: int) -> tuple[float, float]:
    runs = [gdlab_single(fit, x, y, lr, seed) for lr in sweep_rates(k)]
    return sum(seconds for seconds, _ in runs), statistics.fmean(loss for _, loss in runs)


def torch_expert(x, y, lr: float, seed: int) -> tuple[float, float]:
    """The plain PyTorch loop: resident tensors, index slices, torch.optim.SGD(foreach=True)."""
    torch.manual_seed(seed)
    layers = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, foreach=True)
    steps = len(x) // BATCH_SIZE
    losses = torch.empty(steps)
    correct = torch.empty(steps, dtype=torch.long)
    started = time.perf_counter()
    order = torch.randperm(len(x))
    for step in range(steps):
        indices = order[step * BATCH_SIZE:(step + 1) * BATCH_SIZE]
        x_batch, y_batch = x[indices], y[indices]
        scores = model(x_batch)
        loss = F.cross_entropy(scores, y_batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step] = loss.detach()
        correct[step] = (scores.detach().argmax(dim=1) == y_batch).sum()
    mean_loss = statistics.fmean(losses.tolist())
    correct.tolist()
    return time.perf_counter() - started, mean_loss


def torch_matmuls_alone(x, y, seed: int) -> tuple[float, float]:
    """Seconds of one epoch's matrix products only (see the module docstring); no loss (nan)."""
    generator = torch.Generator().manual_seed(seed)
    weights = [torch.randn(fan_out, fan_in, generator=generator) * fan_in**-0.5
               for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:])]
    biases = [torch.zeros(weight.shape[0]) for weight in weights]
    started = time.perf_counter()
    for step in range(len(x) // BATCH_SIZE):
        inputs = [x[step * BATCH_SIZE:(step + 1) * BATCH_SIZE]]
        for weight, bias in zip(weights, biases):
            inputs.append(torch.addmm(bias, inputs[-1], weight.t()))
        gradient = inputs.pop()
        for layer in range(len(weights) - 1, -1, -1):
            torch.mm(gradient.t(), inputs[layer])  # dW
            if layer:  # the images need no gradient
                gradient = torch.mm(gradient, weights[layer])
    return time.perf_counter() - started, math.nan


class JaxPeer:
    """The worker process of ``peers_jax.py``: compiled once, asked for one epoch at a time."""

    def __init__(self, python: Path, x: torch.Tensor, y: torch.Tensor, ks: list[int], folder: Path):
        data = folder / "data.npz"
        np.savez(data, x=x.numpy(), y=y.numpy().astype(np.int32))
        settings = {
            "sizes": SIZES, "batch_size": BATCH_SIZE, "lr": LR, "momentum": MOMENTUM,
            "learning_rates": {str(k): sweep_rates(k) for k in ks},
        }
        self.process = subprocess.Popen(
            [str(python), str(Path(__file__).with_name("peers_jax.py")), str(data), json.dumps(settings)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.ready = self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the JAX worker ({self.process.args[0]}) stopped; its error is printed above")
        return json.loads(line)

    def epoch(self, round_index: int, k: int | None = None) -> tuple[float, float]:
        request = {"run": "single" if k is None else "vmap", "round": round_index, **({"k": k} if k else {})}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self._reply()
        return reply["seconds"], reply["mean_loss"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def parse_ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        ks = []
    if not ks or any(k < 2 for k in ks):
        raise argparse.ArgumentTypeError(f"{text!r}: give a comma-separated list of integers >= 2, e.g. 10,100")
    return ks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ks", type=parse_ks, default=[10, 100], help="sweep sizes K, e.g. 10,100")
    parser.add_argument("--sequential-ks", type=parse_ks, default=[10], help="the K also trained one run at a time")
    parser.add_argument("--samples", type=int, default=None, help="train on the first N images only (a smoke test)")
    parser.add_argument("--jax-python", type=Path, default=DEFAULT_JAX_PYTHON,
                        help="the Python of the environment holding jax and optax (make bench-peers makes it)")
    parser.add_argument("--no-jax", action="store_true", help="leave the JAX peer out")
    args = parser.parse_args()
    if not args.no_jax and not args.jax_python.exists():
        parser.error(f"no JAX environment at {args.jax_python}: run `make bench-peers` (it creates .venv-peers "
                     f"with jax and optax), pass --jax-python, or --no-jax to leave JAX out")

    images, labels, source = mnist_shaped_images()
    if args.samples is not None:
        if not BATCH_SIZE <= args.samples <= len(labels):
            parser.error(f"--samples {args.samples} must be between {BATCH_SIZE} and {len(labels)}")
        images, labels = images[: args.samples], labels[: args.samples]
    mean, std = channel_stats(images)
    x, y = normalize(images, mean, std).flatten(1), labels
    samples = len(y) // BATCH_SIZE * BATCH_SIZE  # the partial last batch is dropped on every side
    print(f"data: {source}, {len(y)} images ({samples} per epoch in {samples // BATCH_SIZE} batches of "
          f"{BATCH_SIZE}); torch {torch.__version__}, {torch.get_num_threads()} threads")

    sides = {
        "gdlab fit": lambda r: gdlab_single(fit, x, y, LR, r),
        "gdlab fit_fast": lambda r: gdlab_single(fit_fast, x, y, LR, r),
        "torch expert": lambda r: torch_expert(x, y, LR, r),
        "torch matmuls alone": lambda r: torch_matmuls_alone(x, y, r),
    }
    configurations = {"gdlab fit": 1, "gdlab fit_fast": 1, "torch expert": 1, "torch matmuls alone": 1}
    with tempfile.TemporaryDirectory() as folder:
        jax = None
        if not args.no_jax:
            jax = JaxPeer(args.jax_python, x, y, args.ks, Path(folder))
            print(f"JAX {jax.ready['jax']}, optax {jax.ready['optax']} on {jax.ready['device']}; "
                  f"compiled in {jax.ready['compile_seconds']:.1f} s (not counted)")
            sides["jax single"] = lambda r: jax.epoch(r)
            configurations["jax single"] = 1
        for k in args.ks:
            sides[f"gdlab stacked K={k}"] = (lambda k: lambda r: gdlab_stacked(x, y, k, r))(k)
            configurations[f"gdlab stacked K={k}"] = k
            if k in args.sequential_ks:
                sides[f"gdlab sequential K={k}"] = (lambda k: lambda r: gdlab_sequential(x, y, k, r))(k)
                configurations[f"gdlab sequential K={k}"] = k
            if jax is not None:
                sides[f"jax vmap K={k}"] = (lambda k: lambda r: jax.epoch(r, k))(k)
                configurations[f"jax vmap K={k}"] = k
        mean_losses = {name: [] for name in sides}

        def timed(name):
            def side(round_index: int) -> float:
                seconds, mean_loss = sides[name](round_index)
                mean_losses[name].append(mean_loss)
                return seconds
            return side

        times, rate = interleaved_rounds({name: timed(name) for name in sides}, args.rounds)
        if jax is not None:
            jax.close()

    median = {name: statistics.median(values) for name, values in times.items()}
    print()
    print(f"matmul rate {rate / 1e9:.1f} GFLOP/s (float32 2048x2048, best of every round); "
          f"one configuration's epoch: {training_flops(samples) / 1e9:.1f} GFLOP of matmuls")
    print(f"{'side':24s} {'epoch: median (min-max, ±half range)':>40s} {'per config':>11s} "
          f"{'of matmul rate':>15s} {'mean loss':>10s}")
    for name in sides:
        k = configurations[name]
        print(f"{name:24s} {spread(times[name]):>40s} {median[name] / k:9.3f} s "
              f"{training_flops(samples, k) / median[name] / rate:14.1%} {statistics.fmean(mean_losses[name]):10.4f}")
    print()

    def ratio(name: str, peer: str, target: str = "") -> None:
        if name in median and peer in median:
            print(f"RATIO {name} vs {peer}: {median[peer] / median[name]:.2f}x the peer's speed{target}")

    ratio("gdlab fit_fast", "jax single", " (target >= 1)")
    ratio("gdlab fit", "jax single")
    ratio("torch expert", "jax single")
    ratio("torch matmuls alone", "jax single", " (below 1: torch's matmuls alone take longer than JAX's epoch)")
    ratio("gdlab fit_fast", "torch matmuls alone")
    ratio("gdlab fit_fast", "torch expert")
    ratio("gdlab fit_fast", "gdlab fit")
    for k in args.ks:
        ratio(f"gdlab stacked K={k}", f"jax vmap K={k}", " (target >= 1)")
        ratio(f"gdlab stacked K={k}", f"gdlab sequential K={k}")
    print("(target >= 40% of the matmul rate for gdlab's single run)")


if __name__ == "__main__":
    main()
