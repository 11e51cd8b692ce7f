"""The one train/validation split the bundled tasks use, fixed by `SPLIT_SEED`.

The validation set of a task never depends on the run's seed: seeds vary the model's
initialisation and the data order, and every seed is scored on the same held-out examples.
"""

from __future__ import annotations

import numpy as np

from lrkit.validation import in_range

#: The seed of every bundled task's train/validation split.
SPLIT_SEED = 0


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (train, validation) index arrays, each class split in proportion ``val_fraction``
    (scikit-learn's ``train_test_split(stratify=labels)``; the validation size is rounded up)."""
    from sklearn.model_selection import train_test_split

    in_range("stratified_split", "val_fraction", val_fraction, 0.0, 1.0, open_low=True, open_high=True)
    indices = np.arange(len(labels))
    train, val = train_test_split(indices, test_size=val_fraction, random_state=seed, stratify=labels)
    return train, val
