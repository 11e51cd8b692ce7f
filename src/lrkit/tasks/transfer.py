"""`digits-transfer`: a real transfer-learning task on bundled data (no download).

A small ResNet-like CNN (stem / two stages / head) is pretrained on the digits 0-4 of
scikit-learn's 8x8 handwritten digits (UCI "Optical Recognition of Handwritten Digits",
1797 images) and fine-tuned on the digits 5-9 with few labels: ``shots`` images per class
for training (drawn with the task seed), all the other 5-9 images for validation.

Pretraining is deterministic (fixed seed, one single-threaded CPU run of a few seconds)
and cached in memory: every `build_model()` starts from the same pretrained body and a fresh
head initialised from torch's current RNG (the caller seeds torch first).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from lrkit.tasks.registry import Task, TaskData, accuracy, register_task

__all__ = ["DigitsCNN", "load_transfer_data", "pretrained_state", "pretrained_model"]

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
SHOTS = 10
PRETRAIN_SEED = 0
PRETRAIN_EPOCHS = 15


class DigitsCNN(nn.Module):
    """stem (conv-bn-relu) -> layer1, layer2 (conv-bn-relu, max-pool) -> head (linear)."""

    def __init__(self, n_classes: int = 5, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = _stage(width, 2 * width)
        self.layer2 = _stage(2 * width, 4 * width)
        self.pool = nn.Flatten()
        self.head = nn.Linear(4 * width * 2 * 2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.layer2(self.layer1(self.stem(x)))))


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 images as (N, 1, 8, 8) floats in [0, 1] and their labels."""
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.tensor(bunch.target, dtype=torch.long)


def _subset(classes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of `classes`, labels remapped to 0..len(classes)-1."""
    images, labels = _digits()
    mask = torch.isin(labels, torch.tensor(classes))
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[list(classes)] = torch.arange(len(classes))
    return images[mask], remap[labels[mask]]


@functools.lru_cache(maxsize=1)
def pretrained_state() -> dict[str, torch.Tensor]:
    """State dict of a DigitsCNN trained on all images of digits 0-4 (deterministic, cached).

    Adam (lr 3e-3), batch 64, `PRETRAIN_EPOCHS` epochs, seed `PRETRAIN_SEED`; torch's global RNG
    is left untouched (a private generator shuffles, a forked RNG initialises the weights).
    """
    images, labels = _subset(SOURCE_CLASSES)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PRETRAIN_SEED)
        model = DigitsCNN(len(SOURCE_CLASSES))
    generator = torch.Generator().manual_seed(PRETRAIN_SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same float summation order on every machine
    try:
        for _ in range(PRETRAIN_EPOCHS):
            order = torch.randperm(len(images), generator=generator)
            for batch in order.split(64):
                optimizer.zero_grad()
                loss_fn(model(images[batch]), labels[batch]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def pretrained_model() -> DigitsCNN:
    """The pretrained body with a fresh 5-way head for digits 5-9 (head drawn from torch's RNG)."""
    model = DigitsCNN(len(TARGET_CLASSES))
    body = {k: v for k, v in pretrained_state().items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(body, strict=False)
    if unexpected or set(missing) != {"head.weight", "head.bias"}:
        raise RuntimeError(f"pretrained state does not fit DigitsCNN: missing {missing}, unexpected {unexpected}")
    return model


def load_transfer_data(seed: int, shots: int = SHOTS) -> TaskData:
    """Digits 5-9: `shots` training images per class drawn with `seed`, the rest for validation."""
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ValueError(f"shots: must be an integer >= 1, got {shots!r}")
    images, labels = _subset(TARGET_CLASSES)
    rng = np.random.default_rng(seed)
    train = np.concatenate([rng.choice(np.flatnonzero(labels.numpy() == c), shots, replace=False) for c in range(len(TARGET_CLASSES))])
    is_train = np.zeros(len(labels), dtype=bool)
    is_train[train] = True
    train_idx = torch.from_numpy(np.sort(train))
    val_idx = torch.from_numpy(np.flatnonzero(~is_train))
    return TaskData(
        train=TensorDataset(images[train_idx], labels[train_idx]),
        val=TensorDataset(images[val_idx], labels[val_idx]),
    )


DIGITS_TRANSFER = register_task(
    Task(
        name="digits-transfer",
        description=(
            "CNN pretrained on sklearn digits 0-4, fine-tuned on digits 5-9 with "
            f"{SHOTS} labels per class (the other ~850 images of 5-9 validate)"
        ),
        build_model=pretrained_model,
        load_data=load_transfer_data,
        criterion=nn.CrossEntropyLoss,
        metric=accuracy,
        metric_name="accuracy",
        batch_size=10,
        epochs=8,
    )
)
