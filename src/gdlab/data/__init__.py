"""Data: official dataset files -> uint8 tensors -> splits, subsets, normalization -> batches.

    ds = gdlab.data.load("cifar10")                      # ds.train.x: uint8 (N, 3, 32, 32)
    train, val = gdlab.data.split_train_val(ds.train, val_fraction=0.1, seed=123)
    train, names = gdlab.data.select_classes(train, ["airplane", "bird"], ds.classes)
    mean, std = gdlab.data.channel_stats(train.x)
    loader = gdlab.data.TensorLoader(gdlab.data.normalize(train.x, mean, std), train.y, batch_size=256)

Modules, one idea each: `registry` (what is known about each dataset),
`sources` (look-up order, layouts, download), `idx`, `cifar`, `mnist_5k`
(file formats), `safe_pickle` (numpy-only unpickling), `dataset` (Split,
ImageDataset, load), `splits` (train/val, class subsets), `transforms`
(statistics, normalization, flips), `loader` (TensorLoader).
"""

from gdlab.data.dataset import ImageDataset, Split, load
from gdlab.data.loader import TensorLoader
from gdlab.data.registry import DATASETS, DatasetInfo, RemoteFile
from gdlab.data.sources import DatasetStatus, describe_datasets
from gdlab.data.splits import select_classes, split_train_val
from gdlab.data.transforms import channel_stats, normalize, random_horizontal_flip

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetStatus",
    "ImageDataset",
    "RemoteFile",
    "Split",
    "TensorLoader",
    "channel_stats",
    "describe_datasets",
    "load",
    "normalize",
    "random_horizontal_flip",
    "select_classes",
    "split_train_val",
]
