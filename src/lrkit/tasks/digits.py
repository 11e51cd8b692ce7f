"""``digits-mlp``: scikit-learn's 8x8 handwritten digits with a small MLP (seconds on a CPU).

Data: the UCI "Optical Recognition of Handwritten Digits" test set shipped with scikit-learn
(``sklearn.datasets.load_digits``: 1 797 images, 64 features, 10 classes), split 80 / 20
stratified with a fixed seed (the split does not depend on the run seed), features standardised
with the training split's mean and standard deviation. Model: 64 → 128 → ReLU → 10.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lrkit.tasks.registry import Task, TaskData, register_task
from lrkit.tasks.splits import stratified_split
from lrkit.torch.evaluation import accuracy

__all__ = ["digits_mlp", "load_digits_data", "standardised_split"]

VAL_FRACTION = 0.2


def standardised_split(features: np.ndarray, labels: np.ndarray, val_fraction: float = VAL_FRACTION) -> TaskData:
    """Stratified train/validation split, features scaled by ``(x - mean_train) / std_train``
    (columns with zero training spread are left centred, not divided)."""
    train, val = stratified_split(labels, val_fraction)
    train_x, val_x, train_y, val_y = features[train], features[val], labels[train], labels[val]
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std = np.where(std > 0, std, 1.0)

    def dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.tensor((x - mean) / std, dtype=torch.float32), torch.tensor(y, dtype=torch.long))

    return TaskData(dataset(train_x, train_y), dataset(val_x, val_y))


@functools.lru_cache(maxsize=1)
def _digits() -> TaskData:
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    return standardised_split(features, labels)


def load_digits_data(seed: int) -> TaskData:
    """The fixed split (1 437 train / 360 validation); `seed` only drives the loader order."""
    return _digits()


def digits_mlp() -> nn.Module:
    """64 → 128 → ReLU → 10."""
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


register_task(Task(
    name="digits-mlp", description="MLP on sklearn's 8x8 digits (1 797 images), 1 437 train / 360 val",
    build_model=digits_mlp, load_data=load_digits_data, criterion=nn.CrossEntropyLoss,
    metric=accuracy, metric_name="accuracy", batch_size=64, epochs=10))
