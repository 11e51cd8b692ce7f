"""digits-mlp: the registered task's data split, scaling, model and a quick training sanity check."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from lrkit.tasks import get_task
from lrkit.tasks.digits import standardised_split


def test_digits_task_is_registered_with_a_fixed_stratified_standardised_split():
    task = get_task("digits-mlp")
    data = task.load_data(0)
    x, _ = data.train.tensors
    vx, vy = data.val.tensors
    assert (len(x), len(vx)) == (1437, 360) and x.shape[1] == 64
    assert torch.equal(task.load_data(5).val.tensors[1], vy)  # the split ignores the run seed
    # stratified: each class's share of the validation set within one image of its overall share
    counts = np.bincount(load_digits().target, minlength=10)
    assert np.all(np.abs(np.bincount(vy.numpy(), minlength=10) - counts * 0.2) <= 1)
    # standardised with the training statistics: columns with spread have mean 0 and std 1
    spread = x.std(0, unbiased=False) > 0
    torch.testing.assert_close(x[:, spread].mean(0), torch.zeros(int(spread.sum())), atol=1e-5, rtol=0)
    torch.testing.assert_close(x[:, spread].std(0, unbiased=False), torch.ones(int(spread.sum())), atol=1e-5, rtol=0)


def test_standardised_split_by_hand():
    features = np.array([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0], [6.0, 5.0]] * 5)
    labels = np.array([0, 0, 1, 1] * 5)
    data = standardised_split(features, labels, val_fraction=0.2)
    x, y = data.train.tensors
    vx, _ = data.val.tensors
    assert x.shape == (16, 2) and vx.shape == (4, 2) and torch.bincount(y).tolist() == [8, 8]
    assert torch.all(x[:, 1] == 0) and torch.all(vx[:, 1] == 0)  # a constant column: centred, not divided by 0
    # one affine map (x - mean_train) / std_train for both splits: 0, 2, 4, 6 stay equally spaced
    values = np.unique(np.round(torch.cat([x[:, 0], vx[:, 0]]).numpy(), 5))
    assert len(values) == 4 and np.allclose(np.diff(values), values[1] - values[0], atol=1e-5)
    assert abs(float(x[:, 0].mean())) < 1e-6 and abs(float(x[:, 0].std(unbiased=False)) - 1) < 1e-5


def test_digits_mlp_learns_in_a_second():
    task = get_task("digits-mlp")
    torch.manual_seed(0)
    model = task.build_model()
    train, val = task.loaders(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3):
        for x, y in train:
            optimizer.zero_grad()
            task.criterion()(model(x), y).backward()
            optimizer.step()
    vx, vy = next(iter(val))
    with torch.no_grad():
        assert task.metric(model(vx), vy) > 0.9
