"""LR-free and schedule-free optimizers: built from the optimizer table, trained, and evaluated at
the schedule-free average x (not at the gradient point y) by lrkit's own loops."""

import dadaptation
import prodigyopt
import pytest
import schedulefree
import torch
from torch import nn

from lrkit.experiments import training
from lrkit.experiments.strategies import LR_FREE_STRATEGIES, WARMUP, known_strategies
from lrkit.experiments.training import Trial, train_trial
from lrkit.torch import freeze
from lrkit.torch.evaluation import evaluate, evaluation_point, has_eval_switch
from lrkit.torch.optimizers import OPTIMIZERS, make_optimizer

# name -> (package class, its default LR: the value the authors recommend)
LR_FREE = {
    "schedule-free-adamw": (schedulefree.AdamWScheduleFree, 0.0025),
    "schedule-free-sgd": (schedulefree.SGDScheduleFree, 1.0),
    "prodigy": (prodigyopt.Prodigy, 1.0),
    "dadapt-adam": (dadaptation.DAdaptAdam, 1.0),
    "dadapt-sgd": (dadaptation.DAdaptSGD, 1.0),
}


def problem(seed=0, rows=256):
    """A small synthetic 4-class problem and an MLP for it."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 10, generator=generator)
    y = (x @ torch.randn(10, 4, generator=generator)).argmax(1)
    torch.manual_seed(seed)
    return x, y, nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))


def full_batch_steps(model, optimizer, x, y, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_the_table_lists_each_lr_free_optimizer_with_its_kind():
    for name, (cls, _) in LR_FREE.items():
        assert OPTIMIZERS[name].cls is cls
        assert OPTIMIZERS[name].kind == ("schedule-free" if name.startswith("schedule-free") else "lr-free")
    assert {s.name for s in LR_FREE_STRATEGIES} == set(LR_FREE)
    assert all(s.optimizer == s.name and s.lr == "default" for s in LR_FREE_STRATEGIES)


@pytest.mark.parametrize("name", LR_FREE)
def test_each_lr_free_optimizer_builds_at_its_authors_lr_and_trains(name):
    x, y, model = problem()
    optimizer = make_optimizer(name, model.parameters())
    cls, lr = LR_FREE[name]
    assert type(optimizer) is cls and optimizer.param_groups[0]["lr"] == lr
    before = nn.functional.cross_entropy(model(x), y).item()
    full_batch_steps(model, optimizer, x, y, 30)
    with evaluation_point(model, optimizer):
        after = nn.functional.cross_entropy(model(x), y).item()
    assert after < 0.85 * before


def test_dadapt_sgd_has_the_momentum_of_lrkits_sgd():
    assert make_optimizer("dadapt-sgd", [torch.zeros(1, requires_grad=True)]).param_groups[0]["momentum"] == 0.9


def test_a_schedule_free_optimizer_comes_ready_to_step():
    _, _, model = problem()
    raw = schedulefree.SGDScheduleFree(model.parameters())
    model(torch.zeros(1, 10)).sum().backward()
    with pytest.raises(Exception, match="not in train mode"):
        raw.step()  # the package builds it in eval mode
    optimizer = make_optimizer("schedule-free-sgd", model.parameters())
    assert optimizer.param_groups[0]["train_mode"] is True
    optimizer.step()
    assert has_eval_switch(optimizer) and not has_eval_switch(make_optimizer("sgd", model.parameters(), lr=0.1))


def test_evaluation_point_moves_the_model_to_the_average_x_and_back_to_y():
    x, y, model = problem()
    optimizer = make_optimizer("schedule-free-sgd", model.parameters(), lr=0.5)
    full_batch_steps(model, optimizer, x, y, 20)
    params = list(model.parameters())
    at_y = [p.detach().clone() for p in params]
    beta = optimizer.param_groups[0]["momentum"]
    # y = (1 - beta) z + beta x, so x = (y - (1 - beta) z) / beta
    expected_x = [(p.detach() - (1 - beta) * optimizer.state[p]["z"]) / beta for p in params]
    loss_at_y = evaluate(model, [(x, y)], nn.CrossEntropyLoss(), lambda out, target: 0.0)[0]
    with evaluation_point(model, optimizer):
        assert optimizer.param_groups[0]["train_mode"] is False
        for p, want in zip(params, expected_x):
            torch.testing.assert_close(p.detach(), want, rtol=1e-5, atol=1e-6)
        loss_at_x = evaluate(model, [(x, y)], nn.CrossEntropyLoss(), lambda out, target: 0.0)[0]
    assert abs(loss_at_x - loss_at_y) > 1e-3  # the two points give different evaluations
    assert optimizer.param_groups[0]["train_mode"] is True
    for p, want in zip(params, at_y):
        torch.testing.assert_close(p.detach(), want, rtol=1e-5, atol=1e-6)


def test_training_after_an_evaluation_continues_as_if_none_had_happened():
    x, y, evaluated = problem()
    _, _, plain = problem()
    opt_evaluated = make_optimizer("schedule-free-adamw", evaluated.parameters(), lr=0.01)
    opt_plain = make_optimizer("schedule-free-adamw", plain.parameters(), lr=0.01)
    for _ in range(4):
        full_batch_steps(evaluated, opt_evaluated, x, y, 5)
        with evaluation_point(evaluated, opt_evaluated):
            evaluate(evaluated, [(x, y)], nn.CrossEntropyLoss(), lambda out, target: 0.0)
        full_batch_steps(plain, opt_plain, x, y, 5)
    for a, b in zip(evaluated.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_training_loop_evaluates_at_x_and_trains_at_y(monkeypatch):
    built, at_x, at_y = [], [], []

    def recording_make_optimizer(*args, **kwargs):
        built.append(make_optimizer(*args, **kwargs))
        return built[-1]

    def recording_evaluate(model, loader, criterion, metric, device=None):
        optimizer = built[-1]
        at_x.append((optimizer.param_groups[0]["train_mode"], evaluate(model, loader, criterion, metric)))
        optimizer.train()  # the same model at y, for comparison
        at_y.append(evaluate(model, loader, criterion, metric))
        optimizer.eval()
        return at_x[-1][1]

    monkeypatch.setattr(training, "make_optimizer", recording_make_optimizer)
    monkeypatch.setattr(training, "evaluate", recording_evaluate)
    run = train_trial(Trial("digits-mlp", known_strategies()["schedule-free-sgd"], seed=0, epochs=2, batch_size=64))
    assert [in_train_mode for in_train_mode, _ in at_x] == [False, False]  # evaluated at x
    assert run.epoch_val_loss == [loss for _, (loss, _) in at_x]
    assert all(abs(x_loss - y_loss) > 1e-4 for (_, (x_loss, _)), (y_loss, _) in zip(at_x, at_y))
    assert built[-1].param_groups[0]["train_mode"] is True  # back at y after the last evaluation
    assert built[-1].param_groups[0]["warmup_steps"] == round(WARMUP * 2 * run.steps_per_epoch)
    assert run.status == "complete" and run.epoch_metric[-1] > 0.8


def bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16), nn.BatchNorm1d(16),
                         nn.ReLU(), nn.Linear(16, 4))


def test_batchnorm_statistics_are_recomputed_at_x_and_frozen_ones_kept():
    x, y, _ = problem(rows=192)
    model = bn_model()
    freeze(model[4])  # its statistics are held (lrkit.torch.freeze, bn="freeze")
    loader = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 192, 64)]
    optimizer = make_optimizer("schedule-free-adamw", [p for p in model.parameters() if p.requires_grad], lr=0.05)
    full_batch_steps(model, optimizer, x, y, 10)
    frozen = (model[4].running_mean.clone(), model[4].running_var.clone())
    with evaluation_point(model, optimizer, loader, bn_batches=2):
        with torch.no_grad():
            features = [model[0](xb) for xb, _ in loader[:2]]
        mean = torch.stack([f.mean(0) for f in features]).mean(0)
        var = torch.stack([f.var(0) for f in features]).mean(0)  # torch keeps the unbiased batch variance
        torch.testing.assert_close(model[1].running_mean, mean)
        torch.testing.assert_close(model[1].running_var, var)
    assert model[1].momentum == 0.1  # restored
    assert torch.equal(model[4].running_mean, frozen[0]) and torch.equal(model[4].running_var, frozen[1])


def test_an_optimizer_without_the_switch_changes_nothing():
    x, y, _ = problem()
    model = bn_model()
    optimizer = make_optimizer("sgd", model.parameters(), lr=0.1)
    full_batch_steps(model, optimizer, x, y, 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with evaluation_point(model, optimizer, [(x, y)]):
        pass
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_fine_tuning_trains_a_schedule_free_optimizer_at_y_and_evaluates_it_at_x(monkeypatch):
    from lrkit import finetune
    from lrkit.torch import layer_groups

    x, y, model = problem()
    built, modes = [], []

    def factory(param_groups):
        built.append(schedulefree.AdamWScheduleFree(param_groups))  # in eval mode, as the package builds it
        return built[-1]

    def recording_evaluate(*args, **kwargs):
        modes.append(built[-1].param_groups[0]["train_mode"])
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(finetune, "evaluate", recording_evaluate)
    loader = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 256, 64)]
    result = finetune.train_unfrozen(model, layer_groups(model, 2), loader, loader, nn.CrossEntropyLoss(), epochs=2,
                                     lr=0.01, factor=1.0, optimizer=factory, progress=False)
    assert modes == [False, False] and built[-1].param_groups[0]["train_mode"] is True
    assert result.history[-1].train_loss < result.history[0].train_loss
