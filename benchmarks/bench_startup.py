"""A small study as its user feels it: whole ``gdlab run`` processes, sequential against vectorized.

The study is ``experiments/startup-grid-mnist5k.toml`` (8 SGD configurations
of the 784-100-100-10 MLP on the bundled mnist-5k, 3 epochs, batch 64, one
seed), or ``--spec``. Each round runs, as separate processes in a rotated
order, each into a fresh study folder:

- ``gdlab run SPEC --backend sequential`` and ``--backend vectorized``, start
  to exit: imports, data, training, selection, the test, the report;
- two floors every ``gdlab run`` pays before its data loads:
  ``python -c "import torch"`` and a process importing what ``gdlab run``
  imports (``gdlab.cli``, ``gdlab.study.runner``, ``gdlab.report``).

Printed: the median and spread of each, the ratio of the two backends'
medians (the target: vectorized at least 2x faster than sequential), and,
from each study's summary.json, how many of its seconds went to training
(the runs' own ``seconds``), so that what start-up, data and report cost
around the training can be read off, and the ceiling that cost puts on the
ratio (the ratio were vectorized training to take no time at all).

    .venv/bin/python benchmarks/bench_startup.py [--rounds 5] [--spec FILE.toml]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import spread

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = ROOT / "experiments" / "startup-grid-mnist5k.toml"
BACKENDS = ("sequential", "vectorized")
IMPORTS_OF_RUN = "import gdlab.cli, gdlab.study.runner, gdlab.report"


def whole_process(command: list[str]) -> float:
    """Wall-clock seconds of ``command`` from start to exit; its output is shown only if it fails."""
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed (exit {finished.returncode}):\n{finished.stdout}{finished.stderr}"
        )
    return seconds


def gdlab_executable() -> str:
    """The ``gdlab`` command of the environment running this benchmark."""
    beside = Path(sys.executable).with_name("gdlab")
    if not beside.exists():
        raise SystemExit(f"no gdlab command beside {sys.executable}: run this with the project's venv (make setup)")
    return str(beside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="the study file to run")
    args = parser.parse_args()
    if not args.spec.is_file():
        parser.error(f"--spec {args.spec}: no such study file")
    gdlab = gdlab_executable()
    training = {backend: [] for backend in BACKENDS}

    with tempfile.TemporaryDirectory() as folder:
        def study(backend: str):
            def run(round_index: int) -> float:
                out = Path(folder) / f"{backend}-{round_index}"
                seconds = whole_process([gdlab, "run", str(args.spec), "--out", str(out), "--backend", backend])
                summary = json.loads((out / "summary.json").read_text())
                training[backend].append(sum(run["seconds"] for run in summary["runs"]))
                return seconds
            return run

        sides = {f"gdlab run --backend {backend}": study(backend) for backend in BACKENDS}
        sides["python -c 'import torch'"] = lambda _: whole_process([sys.executable, "-c", "import torch"])
        sides["imports of gdlab run"] = lambda _: whole_process([sys.executable, "-c", IMPORTS_OF_RUN])
        names = list(sides)
        times = {name: [] for name in names}
        print(f"study: {args.spec.relative_to(ROOT) if args.spec.is_relative_to(ROOT) else args.spec}; "
              f"{args.rounds} rounds of whole processes")
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(sides[name](round_index))
                print(f"  round {round_index + 1}: {name:34s} {times[name][-1]:7.2f} s", flush=True)

    print()
    print(f"{'process':34s} {'wall clock: median (min-max, ±half range)':>44s} {'of it training':>15s}")
    for name in names:
        backend = name.rsplit(" ", 1)[-1]
        share = ""
        if backend in training:
            share = f"{statistics.median(training[backend]):7.2f} s"
        print(f"{name:34s} {spread(times[name]):>44s} {share:>15s}")
    median = {name: statistics.median(values) for name, values in times.items()}
    sequential, vectorized = (median[f"gdlab run --backend {backend}"] for backend in BACKENDS)
    print()
    print(f"RATIO vectorized vs sequential, whole processes: {sequential / vectorized:.2f}x faster (target >= 2x)")
    trained = {backend: statistics.median(training[backend]) for backend in BACKENDS}
    print(f"RATIO vectorized vs sequential, training alone: "
          f"{trained['sequential'] / trained['vectorized']:.2f}x faster")
    print(f"around the training (start-up, data, selection, test, report): sequential "
          f"{sequential - trained['sequential']:.2f} s, vectorized {vectorized - trained['vectorized']:.2f} s")
    around = vectorized - trained["vectorized"]
    torch_import = median["python -c 'import torch'"]
    # What no training speed-up can remove: were vectorized training instant, the ratio would be this.
    needed = trained["sequential"] - 2 * trained["vectorized"]  # 2x needs the time around training below this
    reach = (f"2x needs the {around:.2f} s around vectorized training cut to {needed:.2f} s; importing torch "
             f"alone takes {torch_import:.2f} s" if needed > 0 else
             "2x is out of reach whatever the start-up: sequential training is not twice vectorized's")
    print(f"CEILING vectorized vs sequential, whole processes, were vectorized training instant: "
          f"{sequential / around:.2f}x ({reach})")

if __name__ == "__main__":
    main()
