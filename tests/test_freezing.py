"""Freezing, BatchNorm handling and gradual unfreezing."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lrkit.torch.freezing import GradualUnfreezing, freeze, unfreeze
from lrkit.torch.groups import discriminative_param_groups, layer_groups


def convnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
    )


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 4, 4, generator=g) * 2 + 1, torch.randint(0, 3, (8,), generator=g)


def train(model, optimizer, steps, on_step=None):
    for step in range(steps):
        model.train()  # a training loop that calls model.train() must not undo a BN freeze
        x, y = batch(step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if on_step is not None:
            on_step()


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda pg: torch.optim.SGD(pg, lr=0.1, momentum=0.9, weight_decay=0.1),
        lambda pg: torch.optim.Adam(pg, lr=0.1),
        lambda pg: torch.optim.AdamW(pg, lr=0.1, weight_decay=0.5),
    ],
    ids=["sgd-momentum-wd", "adam", "adamw"],
)
def test_frozen_groups_bit_identical_and_without_optimizer_state(make_optimizer):
    torch.manual_seed(0)
    model = convnet()
    groups = layer_groups(model, 3)  # [conv+bn], [conv+bn], [linear]
    freeze(groups)  # all but the head
    frozen = [(g, snapshot(m)) for g in groups[:2] for m in g.modules]
    head_before = snapshot(groups[2].modules[0])
    optimizer = make_optimizer(discriminative_param_groups(groups, 0.1))
    train(model, optimizer, 5)
    for (_, before), module in zip(frozen, [m for g in groups[:2] for m in g.modules]):
        after = module.state_dict()
        for key in before:  # weights, bias, running_mean, running_var, num_batches_tracked
            assert torch.equal(before[key], after[key]), key
    frozen_ids = {id(p) for g in groups[:2] for p in g.params}
    assert not any(id(p) in frozen_ids for p in optimizer.state)
    assert all(p.grad is None for g in groups[:2] for p in g.params)
    assert not torch.equal(head_before["weight"], groups[2].modules[0].weight)
    assert {id(p) for p in optimizer.state} == {id(p) for p in groups[2].params}


def test_bn_freeze_survives_model_train_and_is_undone_by_unfreeze():
    torch.manual_seed(0)
    model = convnet()
    bn = model[1]
    freeze(model[:2])  # conv + bn, statistics frozen
    model.train()
    assert bn.training  # the flag follows model.train() ...
    x, _ = batch()
    stats = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    out_train = model[:2](x)
    model(x)
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert torch.equal(bn.num_batches_tracked, stats[2])
    assert bn.training  # ... and is restored after the forward
    assert model[4].num_batches_tracked.item() == 1  # the unfrozen BN still trains its statistics
    model.eval()
    assert torch.equal(model[:2](x), out_train)  # ... but forward ran in eval mode: running statistics used
    unfreeze(model)
    model.train()
    model(x)
    assert not torch.equal(bn.running_mean, stats[0])
    assert all(p.requires_grad for p in model.parameters())


def test_bn_stats_mode_updates_statistics_but_not_weights():
    torch.manual_seed(0)
    model = convnet()
    groups = layer_groups(model, 3)
    freeze(groups, bn="stats")
    bn = model[1]
    mean, weight = bn.running_mean.clone(), bn.weight.clone()
    optimizer = torch.optim.SGD(discriminative_param_groups(groups, 0.1), lr=0.1)
    train(model, optimizer, 3)
    assert not torch.equal(bn.running_mean, mean)
    assert torch.equal(bn.weight, weight)
    assert not bn.weight.requires_grad


def test_bn_train_mode_keeps_bn_weights_trainable():
    torch.manual_seed(0)
    model = convnet()
    groups = layer_groups(model, 3)
    freeze(groups, bn="train")
    conv, bn = model[0], model[1]
    conv_w, bn_w = conv.weight.clone(), bn.weight.clone()
    optimizer = torch.optim.SGD(discriminative_param_groups(groups, 0.1), lr=0.1)
    train(model, optimizer, 3)
    assert torch.equal(conv.weight, conv_w)
    assert not torch.equal(bn.weight, bn_w)
    assert bn.weight.requires_grad and not conv.weight.requires_grad


def test_freeze_upto_sets_exactly_the_first_groups_and_unfreezes_the_rest():
    model = convnet()
    groups = layer_groups(model, 3)
    freeze(groups, upto=3)
    assert not any(p.requires_grad for p in model.parameters())
    freeze(groups, upto=1)
    assert [all(p.requires_grad for p in g.params) for g in groups] == [False, True, True]
    assert [any(p.requires_grad for p in g.params) for g in groups] == [False, True, True]
    freeze(groups, upto=0)
    assert all(p.requires_grad for p in model.parameters())


def test_freeze_clears_stale_gradients():
    model = convnet()
    x, y = batch()
    nn.functional.cross_entropy(model(x), y).backward()
    freeze(model)
    assert all(p.grad is None for p in model.parameters())


def test_deepcopy_keeps_and_unfreeze_releases_the_bn_hooks():
    model = convnet()
    freeze(model)
    clone = copy.deepcopy(model)
    x, _ = batch()
    clone.train()
    mean = clone[1].running_mean.clone()
    clone(x)
    assert torch.equal(clone[1].running_mean, mean)
    unfreeze(clone)
    clone(x)
    assert not torch.equal(clone[1].running_mean, mean)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, g: freeze(g, upto=4), r"upto must be an integer in \[0, 3\]"),
        (lambda m, g: freeze(g, upto=-1), "upto"),
        (lambda m, g: freeze(m, upto=1), "only applies to a list of layer groups"),
        (lambda m, g: freeze(g, bn="eval"), "bn must be one of"),
        (lambda m, g: freeze(g[0]), "not a single LayerGroup"),
        (lambda m, g: freeze([m]), r"target\[0\] must be a LayerGroup"),
        (lambda m, g: GradualUnfreezing(g, 0), "every must be > 0, got 0"),
        (lambda m, g: GradualUnfreezing(g, 1.5), "every must be an integer without steps_per_epoch"),
        (lambda m, g: GradualUnfreezing(g, 0.3, steps_per_epoch=5), "whole number"),
        (lambda m, g: GradualUnfreezing(g, 1, steps_per_epoch=0), "steps_per_epoch"),
        (lambda m, g: GradualUnfreezing(g, 1, start=0), r"start must be an integer in \[1, 3\]"),
        (lambda m, g: GradualUnfreezing([], 1), "at least one"),
    ],
)
def test_validation(call, message):
    model = convnet()
    with pytest.raises(ValueError, match=message):
        call(model, layer_groups(model, 3))


def trainable_pattern(groups):
    return tuple(all(p.requires_grad for p in g.params) for g in groups)


def test_gradual_unfreezing_unfreezes_at_exactly_the_right_step():
    model = convnet()
    groups = layer_groups(model)  # 5 groups: conv, bn, conv, bn, linear
    unfreezer = GradualUnfreezing(groups, every=3)
    seen = []
    for _ in range(16):
        seen.append(trainable_pattern(groups))
        unfreezer.step()
    F, T = False, True
    # trainable(step) = min(5, 1 + step // 3): head alone for updates 0-2, two groups for 3-5, ...
    expected = (
        [(F, F, F, F, T)] * 3 + [(F, F, F, T, T)] * 3 + [(F, F, T, T, T)] * 3
        + [(F, T, T, T, T)] * 3 + [(T, T, T, T, T)] * 4
    )
    assert seen == expected
    assert [unfreezer.trainable(s) for s in (0, 2, 3, 5, 6, 11, 12, 1000)] == [1, 1, 2, 2, 3, 4, 5, 5]


def test_gradual_unfreezing_in_epochs_with_start():
    groups = layer_groups(convnet(), 3)
    unfreezer = GradualUnfreezing(groups, every=0.5, steps_per_epoch=4, start=2)
    assert unfreezer.period == 2
    assert [unfreezer.trainable(s) for s in range(5)] == [2, 2, 3, 3, 3]
    assert trainable_pattern(groups) == (False, True, True)


def test_gradual_unfreezing_resumes_via_state_dict():
    torch.manual_seed(0)
    model = convnet()
    reference = copy.deepcopy(model)
    groups = layer_groups(model, 3)
    unfreezer = GradualUnfreezing(groups, every=2)
    optimizer = torch.optim.SGD(discriminative_param_groups(groups, 0.05), lr=0.05, momentum=0.9)
    train(model, optimizer, 3, unfreezer.step)
    state = {"unfreezer": unfreezer.state_dict(), "optimizer": copy.deepcopy(optimizer.state_dict()),
             "model": snapshot(model)}
    patterns: list = []
    train(model, optimizer, 4, lambda: (unfreezer.step(), patterns.append(trainable_pattern(groups))))

    resumed = reference
    resumed.load_state_dict(state["model"])
    groups2 = layer_groups(resumed, 3)
    unfreezer2 = GradualUnfreezing(groups2, every=2)
    assert trainable_pattern(groups2) == (False, False, True)
    unfreezer2.load_state_dict(state["unfreezer"])
    assert unfreezer2.step_count == 3 and trainable_pattern(groups2) == (False, True, True)
    optimizer2 = torch.optim.SGD(discriminative_param_groups(groups2, 0.05), lr=0.05, momentum=0.9)
    optimizer2.load_state_dict(state["optimizer"])
    patterns2: list = []
    train(resumed, optimizer2, 4, lambda: (unfreezer2.step(), patterns2.append(trainable_pattern(groups2))))
    assert patterns2 == patterns
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)



def test_gradual_unfreezing_rejects_bad_state():
    unfreezer = GradualUnfreezing(layer_groups(convnet(), 3), every=2)
    with pytest.raises(ValueError, match="step_count"):
        unfreezer.load_state_dict({"step_count": -1})
