"""The digits-transfer task, the fine-tuning recipe and `lrkit finetune`."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from lrkit.cli import app
from lrkit.experiments.finetune_on_task import fine_tune_task
from lrkit.finetune import StageOptions, fine_tune, train_head, train_unfrozen
from lrkit.schedules import sgdr
from lrkit.tasks import accuracy, get_task
from lrkit.tasks.transfer import SHOTS, TransferCNN, load_transfer_data, pretrained_model, pretrained_state, source_data
from lrkit.torch import freeze, layer_groups

TASK = get_task("digits-transfer")


def setup(seed: int = 0, pretrained: bool = True):
    torch.manual_seed(seed)
    model = pretrained_model("digits") if pretrained else TransferCNN(5, 8)
    train, val = TASK.loaders(seed)
    return model, layer_groups(model, 3), train, val


# --- the transfer tasks --------------------------------------------------------------------------

def test_pretraining_is_deterministic_cached_and_leaves_the_global_rng_alone():
    cached = pretrained_state("digits")
    assert pretrained_state("digits") is cached
    rng = torch.get_rng_state()
    again = pretrained_state.__wrapped__("digits")
    assert torch.equal(torch.get_rng_state(), rng)
    assert cached.keys() == again.keys()
    assert all(torch.equal(cached[k], again[k]) for k in cached)


MNIST = pytest.param("mnist", 28, marks=pytest.mark.slow)  # pretraining ~10 s; the digits case covers the code


@pytest.mark.parametrize("dataset, size", [("digits", 8), MNIST])
def test_pretrained_model_knows_the_source_digits_and_gets_a_fresh_head(dataset, size):
    model = TransferCNN(5, size)
    model.load_state_dict(pretrained_state(dataset))
    model.eval()
    images, labels = source_data(dataset)
    assert images.shape[1:] == (1, size, size) and set(labels.tolist()) == set(range(5))
    with torch.no_grad():
        assert accuracy(model(images), labels) > 0.98
    torch.manual_seed(1)
    a = pretrained_model(dataset)
    torch.manual_seed(2)
    b = pretrained_model(dataset)
    assert torch.equal(a.stem[0].weight, pretrained_state(dataset)["stem.0.weight"])
    assert torch.equal(a.layer2[0].weight, b.layer2[0].weight)
    assert not torch.equal(a.head.weight, b.head.weight)


@pytest.mark.parametrize("dataset, val_size", [("digits", 600), ("mnist", 1000)])  # no pretraining: fast
def test_transfer_data_few_labels_fixed_validation_disjoint_and_seeded(dataset, val_size):
    data = load_transfer_data(0, dataset)
    x, y = data.train.tensors
    xv, yv = data.val.tensors
    assert len(x) == 5 * SHOTS and torch.bincount(y).tolist() == [SHOTS] * 5
    assert len(yv) == val_size and torch.bincount(yv).tolist() == [val_size // 5] * 5
    flat_val = {tuple(v.flatten().tolist()) for v in xv}
    assert not any(tuple(v.flatten().tolist()) in flat_val for v in x)  # held-out images only
    other = load_transfer_data(1, dataset)
    assert torch.equal(load_transfer_data(0, dataset).train.tensors[0], x)
    assert not torch.equal(other.train.tensors[0], x)
    assert torch.equal(other.val.tensors[0], xv)  # the same validation set for every seed
    assert torch.bincount(load_transfer_data(3, dataset, shots=2).train.tensors[1]).tolist() == [2] * 5


@pytest.mark.parametrize(
    "kwargs, message",
    [({"shots": 0}, "shots must be an integer >= 1"), ({"shots": 10_000}, "shots must be at most"),
     ({"dataset": "cifar"}, "dataset must be one of")],
)
def test_transfer_data_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_transfer_data(0, **kwargs)


def test_pretrained_features_transfer():
    """Training only the head: the pretrained body beats a random body by a wide margin."""
    scores = []
    for pretrained in (True, False):
        model, groups, train, val = setup(0, pretrained)
        stage = train_head(model, groups, train, val, nn.CrossEntropyLoss(), epochs=8, lr=1e-2, progress=False)
        scores.append(stage.metric)
    assert scores[0] > 0.85  # measured 0.91 (random body: 0.53)
    assert scores[0] > scores[1] + 0.2


# --- the recipe ----------------------------------------------------------------------------------

def test_head_stage_on_its_own_trains_only_the_head():
    model, groups, train, val = setup()
    body = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    head = model.head.weight.clone()
    stage = train_head(model, groups, train, val, nn.CrossEntropyLoss(), epochs=2, lr=1e-2, progress=False)
    after = model.state_dict()
    assert all(torch.equal(body[k], after[k]) for k in body)  # BN statistics included
    assert not torch.equal(head, model.head.weight)
    assert stage.lr_source == "given" and stage.lrs == (1e-2,)
    assert [(r.epoch, r.steps, r.trainable_groups) for r in stage.history] == [(1, 5, 1), (2, 10, 1)]


def test_unfrozen_stage_discriminative_lrs_follow_sgdr_with_fixed_ratios():
    model, groups, train, val = setup()
    stage = train_unfrozen(model, groups, train, val, nn.CrossEntropyLoss(), epochs=3, lr=3e-3, factor=2.6,
                           cycle_len=1, progress=False)
    assert stage.lrs == pytest.approx((3e-3 / 2.6**2, 3e-3 / 2.6, 3e-3))
    reference = sgdr(lr=3e-3 / 2.6**2, first_cycle_steps=5, t_mul=2.0)
    for r in stage.history:  # the LRs of each epoch's last update (step r.steps - 1)
        assert r.lrs[0] == pytest.approx(reference(r.steps - 1), rel=1e-12)
        assert r.lrs[2] / r.lrs[0] == pytest.approx(2.6**2, rel=1e-12)
        assert r.trainable_groups == 3


def test_one_lr_is_factor_one():
    model, groups, train, val = setup()
    stage = train_unfrozen(model, groups, train, val, nn.CrossEntropyLoss(), epochs=1, lr=1e-3, factor=1.0,
                           progress=False)
    assert stage.lrs == (1e-3, 1e-3, 1e-3)


def test_fine_tune_end_to_end_with_gradual_unfreezing():
    model, groups, train, val = setup()
    result = fine_tune(model, train, val, nn.CrossEntropyLoss(), epochs=3, freeze_epochs=1, groups=groups,
                       head_lr=1e-2, lr=3e-3, gradual_every=1, progress=False)
    assert [s.name for s in result.stages] == ["head", "unfrozen"]
    # head alone, then head + middle (gradual_start=2) for one epoch, then everything
    assert [(r.stage, r.trainable_groups) for r in result.history] == [
        ("head", 1), ("unfrozen", 2), ("unfrozen", 3), ("unfrozen", 3)]
    assert result.metric > result.history[0].metric + 0.2  # measured 0.41 after the head stage, 0.70 at the end
    assert result.metric == result.history[-1].metric
    assert json.loads(json.dumps(result.to_dict()))["stages"][1]["lr_source"] == "given"


def test_without_head_stage_gradual_unfreezing_starts_with_the_head_alone():
    model, groups, train, val = setup()
    result = fine_tune(model, train, val, nn.CrossEntropyLoss(), epochs=3, freeze_epochs=0, groups=groups, lr=3e-3,
                       gradual_every=1, progress=False)
    assert [(r.stage, r.trainable_groups) for r in result.history] == [("unfrozen", 1), ("unfrozen", 2),
                                                                       ("unfrozen", 3)]
    with pytest.raises(ValueError, match="freeze_epochs must be >= 0, got -1"):
        fine_tune(model, train, val, nn.CrossEntropyLoss(), epochs=1, freeze_epochs=-1, lr=1e-3, progress=False)


def test_fine_tune_task_is_reproducible():
    runs = [fine_tune_task("digits-transfer", seed=1, epochs=1, freeze_epochs=1, head_lr=1e-2, lr=3e-3,
                           progress=False) for _ in range(2)]
    assert runs[0].to_dict() == runs[1].to_dict()


def test_finder_chooses_the_lrs_without_side_effects():
    """The recipe with both LR range tests trains exactly like the recipe given the LRs they chose:
    the finder restores model, optimizer, RNGs and the loader's generator."""
    options = dict(epochs=1, freeze_epochs=1, finder={"num_iter": 30}, progress=False)
    model, groups, train, val = setup()
    found = fine_tune(model, train, val, nn.CrossEntropyLoss(), groups=groups, **options)
    assert [s.lr_source for s in found.stages] == ["finder", "finder"]
    head, unfrozen = found.stages
    assert all(math.isfinite(v) and 1e-7 <= v <= 10 for s in found.stages for v in s.lrs)
    assert unfrozen.lrs[2] / unfrozen.lrs[0] == pytest.approx(2.6**2)
    model, groups, train, val = setup()
    given = fine_tune(model, train, val, nn.CrossEntropyLoss(), groups=groups, head_lr=head.lrs[0],
                      lr=unfrozen.lrs[2], **options)
    assert [s.lr_source for s in given.stages] == ["given", "given"]
    assert numbers(given.history) == pytest.approx(numbers(found.history), rel=1e-12)


def numbers(history) -> list[float]:
    return [x for r in history for x in (r.epoch, r.steps, r.train_loss, r.val_loss, r.metric, *r.lrs)]


def test_finder_suggestion_is_the_first_groups_lr_and_low_confidence_is_logged(monkeypatch, caplog):
    """The range test reports the first group's LR; the head gets it divided by lr_0 / lr_head."""

    class Low:
        suggestion, interval, confidence, notes = 1e-4, (1e-5, 1e-2), "low", ("too noisy",)

    calls = []
    monkeypatch.setattr("lrkit.finetune.find_lr", lambda *a, **k: calls.append(k) or Low())
    model, groups, train, val = setup()
    with caplog.at_level("WARNING", logger="lrkit.finetune"):
        stage = train_unfrozen(model, groups, train, val, nn.CrossEntropyLoss(), epochs=1, factor=2.0,
                               finder={"num_iter": 7}, progress=False)
    assert stage.lrs == pytest.approx((1e-4, 2e-4, 4e-4)) and stage.lr_source == "finder"
    assert calls == [{"progress": False, "num_iter": 7}]
    assert "low-confidence LR range test (heuristics span 1e-05 to 0.01; too noisy)" in caplog.text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs must be > 0"),
        ({"epochs": 0.1}, "whole number"),
        ({"epochs": 1, "bn": "eval"}, "bn must be one of"),
        ({"epochs": 1, "lr": -1.0}, "lr must be > 0"),
        ({"epochs": 1, "cycle_len": 0}, "cycle_len"),
        ({"epochs": 1, "gradual_every": 0.3}, "whole number"),
        ({"epochs": 1, "t_mul": 0.5}, "t_mul"),
        ({"epochs": 1, "factor": 0}, "factor"),
    ],
)
def test_validation_happens_before_any_work(kwargs, message):
    model, groups, train, val = setup()
    kwargs.setdefault("lr", 1e-3)
    freeze(groups)
    before = [p.requires_grad for p in model.parameters()]
    with pytest.raises(ValueError, match=message):
        train_unfrozen(model, groups, train, val, nn.CrossEntropyLoss(), progress=False, **kwargs)
    assert [p.requires_grad for p in model.parameters()] == before  # nothing unfrozen, no range test run


def test_fine_tune_task_rejects_unknown_task():
    with pytest.raises(ValueError, match="get_task: name must be one of .*, got .nope."):
        fine_tune_task("nope", epochs=1)


def test_cli_runs_the_recipe_end_to_end():
    runner = CliRunner()
    out = runner.invoke(app, ["finetune", "--task", "digits-transfer", "--epochs", "1", "--freeze-epochs", "1",
                              "--head-lr", "0.01", "--lr", "0.003", "--gradual-every", "1", "--json",
                              "--no-progress"])
    assert out.exit_code == 0, out.output
    stages = json.loads(out.output)["stages"]
    assert [s["name"] for s in stages] == ["head", "unfrozen"]
    assert [r["trainable_groups"] for s in stages for r in s["history"]] == [1, 2]
    assert 0.0 <= stages[1]["history"][0]["metric"] <= 1.0
    table = runner.invoke(app, ["finetune", "--epochs", "1", "--freeze-epochs", "0", "--lr", "0.003",
                                "--no-progress"])
    assert table.exit_code == 0, table.output
    assert "final metric" in table.output
    bad = runner.invoke(app, ["finetune", "--epochs", "1", "--bn", "eval", "--no-progress"])
    assert bad.exit_code != 0 and "bn" in bad.output


def test_stage_options_and_unknown_keywords():
    model, groups, train, val = setup()
    with pytest.raises(ValueError, match=r"train_head: unknown arguments \['optimiser'\]; allowed: \['optimizer', "):
        train_head(model, groups, train, val, nn.CrossEntropyLoss(), lr=1e-2, optimiser=None)
    options = StageOptions(bn="stats", progress=False)
    stage = train_head(model, groups, train, val, nn.CrossEntropyLoss(), epochs=1, lr=1e-2, options=options,
                       bn="train")  # a keyword overrides the options' field
    assert stage.lr_source == "given" and len(stage.history) == 1
    with pytest.raises(ValueError, match="train_head: options must be a StageOptions or None"):
        train_head(model, groups, train, val, nn.CrossEntropyLoss(), lr=1e-2, options={"bn": "stats"})
