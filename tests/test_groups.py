"""Layer groups and discriminative learning rates."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrkit.schedules import cosine, one_cycle
from lrkit.torch import ScheduledLR, find_lr
from lrkit.torch.groups import discriminative_lrs, discriminative_param_groups, layer_groups


class Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + x)


class TinyResNet(nn.Module):
    """torchvision's ResNet layout: conv1, bn1, relu, maxpool, layer1..4, avgpool, fc."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        self.layer1 = nn.Sequential(Block(4), Block(4))
        self.layer2 = nn.Sequential(Block(4), Block(4))
        self.layer3 = nn.Sequential(Block(4), Block(4))
        self.layer4 = nn.Sequential(Block(4), Block(4))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


class TinyGPT(nn.Module):
    """nanoGPT's layout: transformer = ModuleDict(wte, wpe, h=ModuleList, ln_f), lm_head tied to wte."""

    def __init__(self, n_layer: int = 4, d: int = 8, vocab: int = 11):
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab, d),
                wpe=nn.Embedding(16, d),
                h=nn.ModuleList([nn.TransformerEncoderLayer(d, 2, 16, batch_first=True) for _ in range(n_layer)]),
                ln_f=nn.LayerNorm(d),
            )
        )
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx):
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


class ViTLike(nn.Module):
    """Parameters set directly on the root (cls token, position embedding) plus embed/blocks/head."""

    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.embed = nn.Linear(4, 8)
        self.blocks = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])
        self.head = nn.Linear(8, 2)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                         nn.Linear(8, 2))


def flat(groups):
    return [p for g in groups for p in g.params]


def assert_partition(model, groups):
    """Every parameter exactly once, and the concatenation is model.parameters() order."""
    ids = [id(p) for p in flat(groups)]
    assert ids == [id(p) for p in model.parameters()]
    assert len(set(ids)) == len(ids)
    assert all(g.params for g in groups)


MODELS = [mlp, TinyResNet, TinyGPT, ViTLike]


@pytest.mark.parametrize("factory", MODELS)
def test_every_parameter_exactly_once_in_order_for_every_group_count(factory):
    model = factory()
    units = len(layer_groups(model))
    for n in range(1, units + 1):
        groups = layer_groups(model, n)
        assert len(groups) == n
        assert_partition(model, groups)


def test_sequential_groups_are_its_layers():
    model = mlp()
    groups = layer_groups(model)
    assert [g.names for g in groups] == [("0",), ("2",), ("4",), ("6",)]
    assert [g.names for g in layer_groups(model, 3)] == [("0", "2"), ("4",), ("6",)]


def test_resnet_like_split_stem_stages_head():
    groups = layer_groups(TinyResNet(), 3)
    assert [g.names for g in groups] == [("conv1", "bn1", "layer1"), ("layer2", "layer3", "layer4"), ("fc",)]
    units = layer_groups(TinyResNet())
    assert [g.names for g in units] == [("conv1",), ("bn1",), ("layer1",), ("layer2",), ("layer3",), ("layer4",),
                                        ("fc",)]


def test_transformer_like_split_embeddings_blocks_head_with_tied_head():
    model = TinyGPT(n_layer=4)
    units = layer_groups(model)
    names = [g.names for g in units]
    # the tied lm_head owns no new parameter: it rides with the last unit, the embedding owns the weight
    assert names == [
        ("transformer.wte",),
        ("transformer.wpe",),
        *[(f"transformer.h.{i}",) for i in range(4)],
        ("transformer.ln_f", "lm_head"),
    ]
    assert units[0].params == (model.transformer.wte.weight,)
    groups = layer_groups(model, 4)
    assert [g.names for g in groups] == [
        ("transformer.wte", "transformer.wpe"),
        ("transformer.h.0", "transformer.h.1"),
        ("transformer.h.2", "transformer.h.3"),
        ("transformer.ln_f", "lm_head"),
    ]


def test_root_parameters_join_the_first_group():
    model = ViTLike()
    groups = layer_groups(model, 3)
    assert groups[0].params[0] is model.cls_token
    assert [g.names for g in groups] == [("embed", "blocks.0"), ("blocks.1", "blocks.2"), ("head",)]


def test_single_child_wrapper_is_opened():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp()

    groups = layer_groups(Wrapper(), 2)
    assert [g.names for g in groups] == [("net.0", "net.2", "net.4"), ("net.6",)]


def test_explicit_split_by_names():
    model = TinyResNet()
    groups = layer_groups(model, split=["layer3", "fc"])
    assert [g.names for g in groups] == [("conv1", "bn1", "layer1", "layer2"), ("layer3", "layer4"), ("fc",)]
    assert_partition(model, groups)


def test_explicit_split_by_callable():
    model = TinyResNet()
    groups = layer_groups(
        model, split=lambda m: [[m.conv1, m.bn1, m.layer1, m.layer2], [m.layer3, m.layer4], m.fc]
    )
    assert [g.names for g in groups] == [("conv1", "bn1", "layer1", "layer2"), ("layer3", "layer4"), ("fc",)]
    assert_partition(model, groups)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_groups": 0}, "n_groups"),
        ({"n_groups": 8}, r"n_groups must be an integer in \[1, 7\]"),
        ({"n_groups": 2, "split": ["fc"]}, "not both"),
        ({"split": ["nope"]}, "nope"),
        ({"split": ["fc", "layer3"]}, "module order"),
        ({"split": ["conv1"]}, "strictly after the first unit"),
        ({"split": "fc"}, "split"),
        ({"split": lambda m: [m.conv1, m.fc]}, "cover every parameter"),
        ({"split": lambda m: [m.layer1, m.layer1[0], m]}, "overlap"),
        ({"split": lambda m: [nn.Linear(1, 1)]}, "must be a part of the model"),
    ],
)
def test_layer_groups_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layer_groups(TinyResNet(), **kwargs)


def test_ulmfit_factor_rule():
    # Howard & Ruder 2018 eq. 2 with eta^{l-1} = eta^l / 2.6: head gets lr, each group below / 2.6
    assert discriminative_lrs(4, 1e-2) == pytest.approx([1e-2 / 2.6**3, 1e-2 / 2.6**2, 1e-2 / 2.6, 1e-2])
    assert discriminative_lrs(3, 0.3, factor=3.0) == pytest.approx([0.3 / 9, 0.1, 0.3])


def test_slice_range_matches_fastai_even_mults():
    # fastai even_mults(1e-5, 1e-3, 3) == [1e-5, 1e-4, 1e-3]
    assert discriminative_lrs(3, (1e-5, 1e-3)) == pytest.approx([1e-5, 1e-4, 1e-3])
    assert discriminative_lrs(3, slice(1e-5, 1e-3)) == pytest.approx([1e-5, 1e-4, 1e-3])
    assert discriminative_lrs(5, (1e-4, 1e-2))[2] == pytest.approx(1e-3)
    assert discriminative_lrs(1, (1e-4, 1e-2)) == [1e-2]


def test_explicit_lrs_and_options():
    groups = layer_groups(mlp(), 3)
    pg = discriminative_param_groups(groups, lrs=[1e-3, 2e-3, 5e-3], weight_decay=0.1)
    assert [g["lr"] for g in pg] == [1e-3, 2e-3, 5e-3]
    assert all(g["weight_decay"] == 0.1 for g in pg)
    assert [p for g in pg for p in g["params"]] == flat(groups)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((), {}, "exactly one of lr and lrs"),
        ((1e-3,), {"lrs": [1, 2, 3]}, "exactly one of lr and lrs"),
        ((-1e-3,), {}, "lr must be > 0, got -0.001"),
        ((1e-3,), {"factor": 0}, "factor"),
        (((1e-2, 1e-3),), {}, "lo <= hi"),
        ((slice(1e-4, 1e-2, 2),), {}, "no step"),
        ((), {"lrs": [1e-3, 1e-3]}, "one value per group"),
        ((), {"lrs": [1e-3, float("nan"), 1e-3]}, r"lrs\[1\]"),
    ],
)
def test_discriminative_validation(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        discriminative_param_groups(layer_groups(mlp(), 3), *args, **kwargs)


def test_discriminative_rejects_lr_in_options():
    with pytest.raises(ValueError, match="options"):
        discriminative_param_groups(layer_groups(mlp(), 3), 1e-3, params=[])


def _train(model, optimizer, scheduler, steps, record):
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    for _ in range(steps):
        record.append([g["lr"] for g in optimizer.param_groups])
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        scheduler.step()


def test_ratios_survive_scheduling_and_resume():
    torch.manual_seed(0)
    model = mlp()
    groups = layer_groups(model, 4)
    lrs = discriminative_lrs(4, 1e-2)
    optimizer = torch.optim.SGD(discriminative_param_groups(groups, 1e-2), lr=1.0, momentum=0.9)
    schedule = one_cycle(max_lr=lrs[0], total_steps=20)
    scheduler = ScheduledLR(optimizer, schedule)
    seen: list[list[float]] = []
    _train(model, optimizer, scheduler, 8, seen)
    state = {"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}
    _train(model, optimizer, scheduler, 12, seen)

    # ratios are exactly lr_g / lr_0 = factor^-(G-1-g) relative to the head at every step
    for step, values in enumerate(seen):
        assert values[0] == pytest.approx(schedule(step), rel=1e-12)
        for g in range(4):
            assert values[g] / values[0] == pytest.approx(lrs[g] / lrs[0], rel=1e-12)
        assert values[3] / values[2] == pytest.approx(2.6, rel=1e-12)

    # resume on a fresh optimizer: the same LR sequence, ratios included
    model2 = mlp()
    optimizer2 = torch.optim.SGD(discriminative_param_groups(layer_groups(model2, 4), 1e-2), lr=1.0, momentum=0.9)
    scheduler2 = ScheduledLR(optimizer2, schedule)
    optimizer2.load_state_dict(state["optimizer"])
    scheduler2.load_state_dict(state["scheduler"])
    resumed: list[list[float]] = []
    _train(model2, optimizer2, scheduler2, 12, resumed)
    assert resumed == seen[8:]


def test_ratios_with_cosine_and_adam():
    model = mlp()
    optimizer = torch.optim.Adam(discriminative_param_groups(layer_groups(model, 2), (1e-4, 1e-2)))
    scheduler = ScheduledLR(optimizer, cosine(1e-4, 10))
    seen: list[list[float]] = []
    _train(model, optimizer, scheduler, 10, seen)
    for step, (body, head) in enumerate(seen):
        assert body == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * step / 10)), rel=1e-12)
        assert head / body == pytest.approx(100.0, rel=1e-12)


def test_the_range_test_sweeps_discriminative_groups_with_their_ratios():
    torch.manual_seed(0)
    model = mlp()
    groups = layer_groups(model, 3)
    optimizer = torch.optim.SGD(discriminative_param_groups(groups, 1e-2, factor=3.0), lr=1.0)
    seen: list[list[float]] = []

    class Recording(nn.Module):  # the loss function sees every LR the sweep sets
        def forward(self, out, y):
            seen.append([g["lr"] for g in optimizer.param_groups])
            return nn.functional.cross_entropy(out, y)

    data = [(torch.randn(16, 4), torch.randint(0, 2, (16,))) for _ in range(4)]
    result = find_lr(model, optimizer, Recording(), data, num_iter=20, progress=False)
    assert len(seen) >= 2
    for lrs in seen:
        assert [lr / lrs[0] for lr in lrs] == pytest.approx([1.0, 3.0, 9.0], rel=1e-12)
    assert [lr / result.suggestion for lr in result.group_lrs] == pytest.approx([1.0, 3.0, 9.0], rel=1e-12)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-2 / 9, 1e-2 / 3, 1e-2])  # restored
