"""The GPU path (issue "Fast against the fastest peer", item 4): epochs on one device, with the study's options.

Run on a machine with a GPU (``--device cuda``, the default when one is
there); on a CPU it runs the same sides, smaller (``--samples``), as a check
that it works. Every side trains from data resident on the device, and is
timed after one untimed warm-up epoch (kernel selection, caches), with the
device synchronized before each clock read:

- ``mlp``: one epoch of the 784-100-100-10 MLP on 60,000 MNIST-shaped images,
  batch 128, ``gdlab.train.fit`` with ``gdlab.optim.SGD`` (momentum 0.9);
- ``mlp stacked K``: K such MLPs at once, ``gdlab.train.fit_stacked``;
- ``convnet ...``: one epoch of the course's ConvNet (notebook 003: seven
  convolutions of width 100, BatchNorm) on 50,000 CIFAR-10-shaped images
  (3x32x32), batch 128, horizontal flips, SGD momentum 0.9, in each of the
  study's settings: ``fp32``, ``bf16`` (``[train] precision = "bf16"``:
  ``torch.autocast``), ``channels_last`` (``[train] memory_format``) and both;
- ``convnet course pipeline``: the notebook's way for the same epoch, a
  per-sample Dataset (uint8 -> PIL -> ToTensor -> Normalize, written out as
  torchvision does it) through a shuffling DataLoader, each batch moved to the
  device, fp32; timed on ``--reference-batches`` batches and scaled to the
  epoch (it is the slow side).

Printed: each side's median over ``--rounds`` with its spread, and the ratio of
every convnet setting to the course pipeline and to fp32. The course notebook
took 29 s per epoch on a Colab GPU; the issue's aim is 2 s or less on one H100.

    .venv/bin/python benchmarks/bench_device.py [--device cuda] [--rounds 3] [--samples N] [--ks 100]
"""

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

import gdlab
from gdlab.data import TensorLoader, random_horizontal_flip
from gdlab.models import MLP, ConvNet
from gdlab.train import fit, fit_stacked
from harness import BATCH_SIZE, SIZES, spread

MOMENTUM = 0.9
CIFAR_SHAPE = (3, 32, 32)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work) -> float:
    synchronize(device)
    started = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - started


def images(count: int, shape: tuple[int, ...], classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images and labels: shapes and sizes are what the time depends on."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (count, *shape), dtype=torch.uint8, generator=generator),
            torch.randint(0, classes, (count,), generator=generator))


def normalized(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device=device, dtype=torch.float32).div_(255)
    mean = x.mean(dim=(0, 2, 3), keepdim=True) if x.dim() == 4 else x.mean()
    std = x.std(dim=(0, 2, 3), keepdim=True) if x.dim() == 4 else x.std()
    return (x - mean) / std


def mlp_epoch(x, y, device, epochs=1) -> None:
    torch.manual_seed(0)
    model = MLP(SIZES).to(device)
    optimizer = gdlab.optim.SGD(model.parameters(), lr=0.01, momentum=MOMENTUM)
    fit(model, optimizer, TensorLoader(x, y, batch_size=BATCH_SIZE, seed=0), epochs=epochs)


def stacked_epoch(x, y, device, k: int) -> None:
    torch.manual_seed(0)
    models = [MLP(SIZES).to(device) for _ in range(k)]
    rates = torch.logspace(-3, -1, k, dtype=torch.float64).tolist()
    fit_stacked(models, "sgd", [{"lr": lr, "momentum": MOMENTUM} for lr in rates],
                TensorLoader(x, y, batch_size=BATCH_SIZE, seed=0), epochs=1)


def convnet_epoch(x, y, device, precision: str, memory_format: str) -> None:
    """One epoch as a study with these [train] settings trains it."""
    torch.manual_seed(0)
    model = ConvNet(batchnorm=True, num_classes=10, in_channels=3, image_size=32, width=100).to(device)
    channels_last = memory_format == "channels_last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def transform(batch, generator):
        batch = random_horizontal_flip(batch, generator)
        return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch

    optimizer = gdlab.optim.SGD(model.parameters(), lr=0.01, momentum=MOMENTUM)
    fit(model, optimizer, TensorLoader(x, y, batch_size=BATCH_SIZE, seed=0, transform=transform), epochs=1,
        autocast=torch.bfloat16 if precision == "bf16" else None)


class CourseCifar(torch.utils.data.Dataset):
    """torchvision's CIFAR10 item with ToTensor() and Normalize(mean, std), step for step."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.data, self.targets = images.permute(0, 2, 3, 1).contiguous().numpy(), labels
        self.mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(-1, 1, 1)
        self.std = torch.tensor([0.2470, 0.2435, 0.2616]).view(-1, 1, 1)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        picture = Image.fromarray(self.data[index])  # datasets.CIFAR10.__getitem__
        if torch.rand(1) < 0.5:  # RandomHorizontalFlip
            picture = picture.transpose(Image.FLIP_LEFT_RIGHT)
        tensor = torch.from_numpy(np.array(picture, np.uint8, copy=True))  # ToTensor
        tensor = tensor.view(picture.size[1], picture.size[0], 3).permute((2, 0, 1)).contiguous()
        tensor = tensor.to(dtype=torch.float32).div(255)
        return (tensor - self.mean) / self.std, int(self.targets[index])  # Normalize


def course_pipeline_seconds(x_uint8, y, device, batches: int) -> float:
    """Seconds the notebook's pipeline takes for ``batches`` batches, scaled to a whole epoch."""
    torch.manual_seed(0)
    model = ConvNet(batchnorm=True, num_classes=10, in_channels=3, image_size=32, width=100).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=MOMENTUM)
    loader = torch.utils.data.DataLoader(CourseCifar(x_uint8, y), batch_size=BATCH_SIZE, shuffle=True)

    def some_batches():
        for index, (images_batch, labels) in enumerate(loader):
            if index == batches:
                break
            images_batch, labels = images_batch.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(images_batch), labels)
            loss.backward()
            optimizer.step()
            loss.item()

    return timed(device, some_batches) * (len(loader) / min(batches, len(loader)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=None,
                        help="images per epoch (default: 60,000 MNIST / 50,000 CIFAR on a GPU, 2,560 on a CPU)")
    parser.add_argument("--ks", default="100", help="stacked sizes K, comma-separated")
    parser.add_argument("--reference-batches", type=int, default=40)
    args = parser.parse_args()
    device = torch.device(args.device)
    mnist_count = args.samples or (60_000 if device.type == "cuda" else 2_560)
    cifar_count = args.samples or (50_000 if device.type == "cuda" else 2_560)
    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {mnist_count} MNIST-shaped and {cifar_count} "
          f"CIFAR-shaped images per epoch, batch {BATCH_SIZE}")

    mnist_x, mnist_y = images(mnist_count, (784,))
    mnist_x, mnist_y = normalized(mnist_x, device), mnist_y.to(device)
    cifar_uint8, cifar_y_cpu = images(cifar_count, CIFAR_SHAPE)
    cifar_x, cifar_y = normalized(cifar_uint8, device), cifar_y_cpu.to(device)

    sides = {"mlp": lambda: mlp_epoch(mnist_x, mnist_y, device)}
    for k in ks:
        sides[f"mlp stacked K={k}"] = (lambda k: lambda: stacked_epoch(mnist_x, mnist_y, device, k))(k)
    settings = {"fp32": ("full", "contiguous"), "bf16": ("bf16", "contiguous"),
                "channels_last": ("full", "channels_last"), "bf16 + channels_last": ("bf16", "channels_last")}
    for label, (precision, memory_format) in settings.items():
        sides[f"convnet {label}"] = (lambda p, m: lambda: convnet_epoch(cifar_x, cifar_y, device, p, m))(
            precision, memory_format)

    times: dict[str, list[float]] = {name: [] for name in sides}
    for work in sides.values():  # warm-up: kernel choice, allocator, caches
        timed(device, work)
    reference = []
    for round_index in range(args.rounds):
        names = list(sides)
        shift = round_index % len(names)
        for side in names[shift:] + names[:shift]:
            times[side].append(timed(device, sides[side]))
            print(f"  round {round_index + 1}: {side:28s} {times[side][-1]:8.3f} s", flush=True)
        reference.append(course_pipeline_seconds(cifar_uint8, cifar_y_cpu, device, args.reference_batches))
        print(f"  round {round_index + 1}: {'convnet course pipeline':28s} {reference[-1]:8.3f} s (scaled)", flush=True)
    times["convnet course pipeline"] = reference

    print()
    print(f"{'side':28s} {'epoch: median (min-max, ±half range)':>40s}")
    for side, values in times.items():
        print(f"{side:28s} {spread(values):>40s}")
    median = {side: statistics.median(values) for side, values in times.items()}
    print()
    for label in settings:
        side = f"convnet {label}"
        print(f"RATIO {side} vs the course pipeline: {median['convnet course pipeline'] / median[side]:.1f}x faster; "
              f"vs fp32: {median['convnet fp32'] / median[side]:.2f}x")
    print("(the course notebook: 29 s per epoch on a Colab GPU; the aim: <= 2 s per epoch on one H100)")


if __name__ == "__main__":
    main()
