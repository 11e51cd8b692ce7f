"""fashion-cnn and fashion-transfer: the IDX reader, the Debian package's files, the splits, and tiny training runs."""

from __future__ import annotations

import gzip
import itertools

import numpy as np
import pytest
import torch

from lrkit.tasks import fashion as F
from lrkit.tasks import get_task
from lrkit.tasks.idx import read_idx
from lrkit.tasks.transfer import TransferCNN
from lrkit.torch import layer_groups
from lrkit.torch.evaluation import accuracy

requires_data = pytest.mark.skipif(
    not all((F.data_dir() / name).is_file() for name, _ in F.FILES.values()),
    reason=f"Fashion-MNIST not in {F.data_dir()}: install the Debian package dataset-fashion-mnist (make system-deps)")

#: Golden value: the sum of the 784 uint8 pixels of the first training image, computed once with
#: ``int(read_idx(".../train-images-idx3-ubyte.gz", 3)[0].sum())`` (numpy sums uint8 in uint64).
FIRST_TRAIN_IMAGE_PIXEL_SUM = 76247


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LRKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def idx_file(path, header: bytes, payload: bytes):
    with gzip.open(path, "wb") as stream:
        stream.write(header + payload)
    return path


# --- the IDX reader --------------------------------------------------------------------------

def test_idx_reader_on_a_tiny_file(tmp_path):
    path = idx_file(tmp_path / "x.gz", bytes.fromhex("00000803 00000002 00000001 00000003"), bytes(range(6)))
    array = read_idx(path, 3)
    assert array.dtype == np.uint8 and array.shape == (2, 1, 3)
    np.testing.assert_array_equal(array[1, 0], [3, 4, 5])


@pytest.mark.parametrize("header, payload, ndim, message", [
    ("00000801 00000003", b"\x01\x02\x03", 3, r"magic number of .*x\.gz must be 0x00000803 .* got '0x00000801'"),
    ("00000d03 00000001 00000001 00000001", b"\x00" * 4, 3, r"must be 0x00000803 \(uint8, 3-d IDX\), got '0x00000d03'"),
    ("00000803 00000002 00000002 00000002", b"\x00" * 5, 3, r"data of .*must be 8 bytes \(2 × 2 × 2 uint8\), got 5"),
    ("00000801 00000004", b"\x00" * 6, 1, r"must be 4 bytes .* got 6"),
    ("00000803 00000002", b"", 3, r"header of .*x\.gz must be 16 bytes"),
    ("0000", b"", 1, r"magic number .* got '2 bytes'"),
])
def test_idx_reader_refuses_malformed_files(tmp_path, header, payload, ndim, message):
    path = idx_file(tmp_path / "x.gz", bytes.fromhex(header), payload)
    with pytest.raises(ValueError, match=message):
        read_idx(path, ndim)


def test_idx_reader_refuses_a_damaged_gzip_stream(tmp_path):
    whole = idx_file(tmp_path / "whole.gz", bytes.fromhex("00000801 00000400"), bytes(1024)).read_bytes()
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "plain.gz").write_bytes(b"not gzip at all")
    for name in ("cut.gz", "plain.gz"):
        with pytest.raises(ValueError, match=rf"read_idx: path must be a complete gzip file .*{name}"):
            read_idx(tmp_path / name, 1)


@requires_data
def test_the_debian_files_hold_the_published_fashion_mnist():
    arrays = F.fashion_arrays()
    assert arrays["train_images"].shape == (60000, 28, 28) and arrays["test_images"].shape == (10000, 28, 28)
    assert arrays["train_labels"][:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert arrays["test_labels"][:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(arrays["train_labels"]).tolist() == [6000] * 10
    assert np.bincount(arrays["test_labels"]).tolist() == [1000] * 10
    assert int(arrays["train_images"][0].sum()) == FIRST_TRAIN_IMAGE_PIXEL_SUM
    counts = np.bincount(arrays["train_images"].ravel(), minlength=256)  # the documented constants, from a histogram
    values = np.arange(256) / 255.0
    mean = counts @ values / counts.sum()
    std = np.sqrt(counts @ (values - mean) ** 2 / counts.sum())
    assert abs(mean - F.MEAN) < 1e-4 and abs(std - F.STD) < 1e-4


def test_a_missing_package_names_it_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LRKIT_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(F.FashionMNISTMissing) as caught:
        F.fashion_arrays()
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError) and "\n" not in message
    for part in ("dataset-fashion-mnist", "make system-deps", "apt-get install dataset-fashion-mnist", str(tmp_path),
                 "train-images-idx3-ubyte.gz"):
        assert part in message


# --- fashion-cnn -----------------------------------------------------------------------------

@requires_data
def test_fashion_cnn_uses_the_official_split_and_learns_in_a_few_batches():
    task = get_task("fashion-cnn")
    assert (task.family, task.batch_size, task.metric_name) == ("sgd", 128, "accuracy")
    data = task.load_data(0)
    x, _ = data.train.tensors
    vx, vy = data.val.tensors
    assert x.shape == (60000, 1, 28, 28) and vx.shape == (10000, 1, 28, 28)
    assert vy[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]  # the official test set, in file order
    assert task.load_data(3) is data  # the split ignores the run seed
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3

    torch.manual_seed(0)
    model = task.build_model()
    train, _ = task.loaders(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = task.criterion()
    for images, labels in itertools.islice(train, 25):
        optimizer.zero_grad()
        loss_fn(model(images), labels).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert task.metric(model(vx[:2000]), vy[:2000]) > 0.5  # chance: 0.1 (0.57 here)


# --- fashion-transfer ------------------------------------------------------------------------

@requires_data
def test_fashion_transfer_data_few_labels_official_test_set_seeded():
    data = F.load_fashion_transfer(0)
    x, y = data.train.tensors
    xv, yv = data.val.tensors
    assert x.shape == (500, 1, 28, 28) and torch.bincount(y).tolist() == [F.SHOTS] * 5
    assert torch.bincount(yv).tolist() == [1000] * 5  # every official test image of classes 5-9
    _, _, test_x, test_y = F._tensors()
    assert torch.equal(xv, test_x[test_y >= 5]) and torch.equal(yv, test_y[test_y >= 5] - 5)
    assert torch.equal(F.load_fashion_transfer(0).train.tensors[0], x)
    other = F.load_fashion_transfer(1)
    assert not torch.equal(other.train.tensors[0], x) and other.val is data.val
    assert torch.bincount(F.load_fashion_transfer(2, shots=3).train.tensors[1]).tolist() == [3] * 5
    with pytest.raises(ValueError, match="shots must be an integer in"):
        F.load_fashion_transfer(0, shots=6001)


TINY = F.Pretraining(epochs=1, per_class=40)


@requires_data
def test_pretraining_is_deterministic_cached_on_disk_and_leaves_the_global_rng_alone(cache, monkeypatch):
    rng = torch.get_rng_state()
    state = F.pretrained_state(TINY)
    assert torch.equal(torch.get_rng_state(), rng)
    assert len(list(cache.glob("fashion-mnist-v1-transfer-body-1x40-*.npz"))) == 1
    again = F._pretrain(TINY)
    assert state.keys() == again.keys() and all(np.array_equal(state[k].numpy(), again[k]) for k in state)
    TransferCNN(5, 28).load_state_dict(state)

    def no_training(budget):
        raise AssertionError("pretrained again instead of reading the cache")

    monkeypatch.setattr(F, "_pretrain", no_training)
    F.pretrained_state.cache_clear()  # a new process: only the file is left
    read_back = F.pretrained_state(TINY)
    assert all(torch.equal(read_back[k], state[k]) for k in state)


def test_the_pretraining_budget_is_validated():
    with pytest.raises(ValueError, match="Pretraining: per_class must be an integer in"):
        F.Pretraining(epochs=1, per_class=0)
    with pytest.raises(ValueError, match="Pretraining: epochs must be an integer >= 1"):
        F.Pretraining(epochs=0)


@requires_data
def test_fashion_transfer_models_share_the_body_get_fresh_heads_and_fine_tune(cache, monkeypatch):
    monkeypatch.setattr(F, "PRETRAINING", TINY)
    task = get_task("fashion-transfer")
    assert task.family == "sgd" and task.metric_name == "accuracy"
    torch.manual_seed(1)
    model = task.build_model()
    torch.manual_seed(2)
    other = task.build_model()
    assert torch.equal(model.stem[0].weight, F.pretrained_state(TINY)["stem.0.weight"])
    assert torch.equal(model.layer2[0].weight, other.layer2[0].weight)
    assert not torch.equal(model.head.weight, other.head.weight)
    groups = layer_groups(model, 3)
    assert groups[0].names[0] == "stem" and groups[-1].names == ("head",)

    train, val = task.loaders(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = task.criterion()
    for _ in range(2):
        for images, labels in train:
            optimizer.zero_grad()
            loss_fn(model(images), labels).backward()
            optimizer.step()
    model.eval()
    vx, vy = next(iter(val))
    with torch.no_grad():
        assert task.metric(model(vx), vy) > 0.6  # chance: 0.2


@pytest.mark.slow  # the full pretraining (~50 s, then read from the data cache); the tiny budget above covers the code
@requires_data
def test_the_full_pretraining_knows_the_source_classes():
    model = TransferCNN(5, 28)
    model.load_state_dict(F.pretrained_state(F.PRETRAINING))
    model.eval()
    images, labels = F.class_subset(*F._tensors()[2:], F.SOURCE_CLASSES)  # their official test images
    with torch.no_grad():
        assert accuracy(model(images), labels) > 0.9
