"""The on-disk cache of the bundled datasets' arrays: built once, read back exactly, self-repairing."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from lrkit.tasks import datacache


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LRKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def counting_builder():
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(12, dtype=np.float64).reshape(3, 4) / 7, "y": np.array([3, 1, 2], dtype=np.int64)}

    return build, calls


def test_builds_once_then_reads_back_identical_arrays(cache):
    build, calls = counting_builder()
    first = datacache.cached_arrays("toy", build)
    second = datacache.cached_arrays("toy", build)
    assert len(calls) == 1 and (cache / "toy.npz").exists()
    for key in ("x", "y"):
        assert second[key].dtype == first[key].dtype
        np.testing.assert_array_equal(second[key], first[key])
    assert not list(cache.glob("*.tmp")), "no temporary file left behind"


def test_a_corrupt_file_is_rebuilt_and_repaired(cache, caplog):
    build, calls = counting_builder()
    cache.mkdir()
    (cache / "toy.npz").write_bytes(b"not a zip archive")
    with caplog.at_level(logging.WARNING, logger="lrkit.tasks.datacache"):
        arrays = datacache.cached_arrays("toy", build)
    assert len(calls) == 1 and "rebuilding" in caplog.text
    np.testing.assert_array_equal(arrays["y"], [3, 1, 2])
    datacache.cached_arrays("toy", build)
    assert len(calls) == 1, "the repaired file is used the next time"


def test_an_unwritable_cache_is_skipped_not_fatal(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("LRKIT_CACHE_DIR", str(blocker / "cache"))  # a folder under a file cannot exist
    build, calls = counting_builder()
    with caplog.at_level(logging.WARNING, logger="lrkit.tasks.datacache"):
        arrays = datacache.cached_arrays("toy", build)
    assert len(calls) == 1 and "could not write" in caplog.text
    np.testing.assert_array_equal(arrays["y"], [3, 1, 2])


def test_default_location_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("LRKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert datacache.cache_dir() == tmp_path / "lrkit"


def test_cached_mnist1d_equals_a_fresh_generation(cache):
    from mnist1d.data import get_dataset_args, make_dataset

    fresh = make_dataset(get_dataset_args())
    datacache.mnist1d_arrays()  # builds and stores
    stored = datacache.mnist1d_arrays()  # reads the file
    for key in ("x", "y", "x_test", "y_test"):
        np.testing.assert_array_equal(stored[key], fresh[key])
    assert stored["x"].shape == (4000, 40) and stored["x_test"].shape == (1000, 40)
