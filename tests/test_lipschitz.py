"""LipschitzLR: LRs checked against hand-computed values of the paper's formulas on tiny models."""

from __future__ import annotations

import io
import logging
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split
from torch import nn

from lrkit.torch import LipschitzLR, find_last_layer, lipschitz_constant

# Most tests call step() after forward passes alone; torch's order warning is checked below.
pytestmark = pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before:UserWarning")

# z = relu(x) enters the last layer: rows (3, 4), (1, 0), (0, 2) have norms 5, 1, 2.
BATCH_A = torch.tensor([[3.0, 4.0], [1.0, 0.0], [-1.0, 2.0]])
# rows (5, 12) and (0, 0): norms 13 and 0, a smaller batch.
BATCH_B = torch.tensor([[5.0, 12.0], [0.0, -3.0]])


def classifier(classes: int = 3) -> nn.Sequential:
    """Linear(2, 2) = identity, ReLU, Linear(2, classes), Softmax-free logits."""
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, classes))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    return model


def lipschitz_lr(*args, **kwargs) -> LipschitzLR:
    """The hand-computed values below use the per-example norm unless a test says otherwise."""
    kwargs.setdefault("norm", "per_example")
    return LipschitzLR(*args, **kwargs)


def sgd(model: nn.Module, **kwargs) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=kwargs.pop("lr", 0.01), **kwargs)


def lr_of(optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


# ---- the formulas --------------------------------------------------------------------------------

def test_lipschitz_constant_formulas_by_hand():
    assert lipschitz_constant("softmax_ce", 5.0, 3, num_classes=3) == pytest.approx(2 / 9 * 5)
    assert lipschitz_constant("softmax_ce", 5.0, 3, num_classes=10) == pytest.approx(9 / 30 * 5)
    assert lipschitz_constant("bce", 10.0, 2) == pytest.approx(2.5)
    assert lipschitz_constant("mse", 5.0, 2, k_a=3.0, k_y=2.0) == pytest.approx(12.5)
    assert lipschitz_constant("bce", 10.0, 2, weight_decay=0.1, max_weight_norm=3.0) == pytest.approx(2.8)


@pytest.mark.parametrize("kwargs, message", [
    (dict(loss="hinge", k_z=1.0, batch_size=2), "loss"),
    (dict(loss="bce", k_z=1.0, batch_size=0), "batch_size"),
    (dict(loss="softmax_ce", k_z=1.0, batch_size=2, num_classes=1), "num_classes"),
    (dict(loss="mse", k_z=1.0, batch_size=2, k_a=1.0), "k_y"),
])
def test_lipschitz_constant_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lipschitz_constant(**kwargs)


# ---- hook collection, per loss -------------------------------------------------------------------

def test_softmax_sgd_per_example_max_over_the_epoch():
    model = classifier()
    opt = sgd(model)
    sched = lipschitz_lr(opt, model, "softmax_ce")
    assert sched.variant == "sgd" and lr_of(opt) == 0.01  # epoch 0 keeps the optimizer's LR
    model(BATCH_A)
    model(BATCH_B)
    sched.step()
    # K_z = 13 (from B), m = 3 (largest batch), k = 3:  L = 2/(3·3)·13
    assert lr_of(opt) == pytest.approx(9 / 26)
    assert sched.last_lipschitz == pytest.approx(26 / 9)
    model(BATCH_A)
    sched.step()  # a fresh epoch: only A counts now
    assert lr_of(opt) == pytest.approx(1 / (2 / 9 * 5))


def test_frobenius_default_is_the_authors_batch_norm():
    model = classifier()
    opt = sgd(model)
    sched = LipschitzLR(opt, model, "softmax_ce")
    assert sched.norm == "frobenius"
    model(BATCH_A)
    model(BATCH_B)
    sched.step()
    # ‖Z_A‖_F = √30, ‖Z_B‖_F = 13 → K_z = 13 still; with only A: √30
    assert lr_of(opt) == pytest.approx(9 / 26)
    model(BATCH_A)
    sched.step()
    assert lr_of(opt) == pytest.approx(9 / (2 * math.sqrt(30)))


def test_validation_passes_in_eval_mode_are_not_collected():
    model = classifier()
    opt = sgd(model)
    sched = lipschitz_lr(opt, model, "softmax_ce")
    model(BATCH_A)
    model.eval()
    with torch.no_grad():
        model(100 * BATCH_B)
    model.train()
    sched.step()
    assert lr_of(opt) == pytest.approx(0.9)


def test_bce_by_hand():
    model = nn.Sequential(nn.Linear(2, 1))
    opt = sgd(model)
    sched = lipschitz_lr(opt, model, "bce")
    model(torch.tensor([[3.0, 4.0], [6.0, 8.0]]))
    sched.step()
    assert lr_of(opt) == pytest.approx(1 / (10 / 4))


def test_mse_by_hand_with_targets_from_the_criterion_and_l2_term():
    model = nn.Sequential(nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        model[0].bias.zero_()
    criterion = nn.MSELoss()
    opt = sgd(model)
    sched = lipschitz_lr(opt, model, "mse", criterion=criterion, weight_decay=0.1)
    x, y = torch.tensor([[3.0, 4.0], [0.0, 1.0]]), torch.tensor([[1.0], [-2.0]])
    criterion(model(x), y)
    sched.step()
    # K_z = 5, K_a = |3| = 3, K_y = 2, m = 2; max‖w‖ = ‖[1, 0]‖ = 1:  L = (3 + 2)·5/2 + 0.1·1
    assert lr_of(opt) == pytest.approx(1 / 12.6)
    criterion(input=model(x), target=3 * y)  # keyword call: K_y = 6
    sched.step()
    assert lr_of(opt) == pytest.approx(1 / ((3 + 6) * 5 / 2 + 0.1))


def test_mse_needs_the_criterion():
    model = nn.Sequential(nn.Linear(2, 1))
    with pytest.raises(ValueError, match="criterion"):
        lipschitz_lr(sgd(model), model, "mse")


def test_conv_last_layer_flattens_examples_and_reads_classes_from_channels():
    model = nn.Sequential(nn.Conv2d(1, 4, kernel_size=1, bias=False), nn.Flatten())
    opt = sgd(model)
    sched = lipschitz_lr(opt, model, "softmax_ce")
    x = torch.zeros(2, 1, 2, 2)
    x[0, 0] = torch.tensor([[1.0, 2.0], [2.0, 4.0]])  # norm 5
    model(x)
    sched.step()
    assert lr_of(opt) == pytest.approx(1 / (3 / (4 * 2) * 5))


# ---- optimizer variants ------------------------------------------------------------------------

L_A = 2 / 9 * 5          # batch A alone
L_B = 2 / 9 * 13         # batch B with m = 3... when seen with A; alone m = 2:
L_B_ALONE = 2 / 6 * 13


def two_epochs(optimizer_factory, **kwargs) -> tuple[list[float], LipschitzLR]:
    model = classifier()
    opt = optimizer_factory(model)
    sched = lipschitz_lr(opt, model, "softmax_ce", **kwargs)
    lrs = []
    for batch in (BATCH_A, BATCH_B):
        model(batch)
        sched.step()
        lrs.append(lr_of(opt))
    return lrs, sched


def test_momentum_ema_of_l():
    lrs, sched = two_epochs(lambda m: sgd(m, momentum=0.9))
    assert sched.variant == "momentum" and sched.betas == (0.9, 0.0)
    k1 = 0.1 * L_A
    assert lrs[0] == pytest.approx(1 / k1)
    k1 = 0.9 * k1 + 0.1 * L_B_ALONE
    assert lrs[1] == pytest.approx(1 / k1)


def test_momentum_authors_first_epoch_handling():
    """The authors' momentum script: fixed LR 0.5 in epoch 0, K1 starting at 0.5."""
    model = classifier()
    opt = sgd(model, momentum=0.9, dampening=0.9)
    sched = lipschitz_lr(opt, model, "softmax_ce", initial_lr=0.5, ema_init=(0.5, 0.0))
    assert lr_of(opt) == 0.5
    model(BATCH_A)
    sched.step()
    assert lr_of(opt) == pytest.approx(1 / (0.9 * 0.5 + 0.1 * L_A))


def test_rmsprop_ema_of_l_squared():
    lrs, sched = two_epochs(lambda m: torch.optim.RMSprop(m.parameters(), lr=0.01, alpha=0.99), eps=1e-7)
    assert sched.variant == "rmsprop" and sched.betas == (0.0, 0.99)
    k2 = 0.01 * L_A ** 2
    assert lrs[0] == pytest.approx(math.sqrt(k2 + 1e-7) / L_A)
    k2 = 0.99 * k2 + 0.01 * L_B_ALONE ** 2
    assert lrs[1] == pytest.approx(math.sqrt(k2 + 1e-7) / L_B_ALONE)


def test_adam_both_emas_with_and_without_bias_correction():
    lrs, sched = two_epochs(lambda m: torch.optim.Adam(m.parameters(), lr=1e-3))
    assert sched.variant == "adam" and sched.betas == (0.9, 0.999)
    k1, k2 = 0.1 * L_A, 0.001 * L_A ** 2
    assert lrs[0] == pytest.approx(math.sqrt(k2 + 1e-7) / k1)
    k1, k2 = 0.9 * k1 + 0.1 * L_B_ALONE, 0.999 * k2 + 0.001 * L_B_ALONE ** 2
    assert lrs[1] == pytest.approx(math.sqrt(k2 + 1e-7) / k1)
    assert (sched.k1, sched.k2, sched.updates) == (pytest.approx(k1), pytest.approx(k2), 2)

    lrs, _ = two_epochs(lambda m: torch.optim.Adam(m.parameters(), lr=1e-3), bias_correction=True, eps=0.0)
    assert lrs[0] == pytest.approx(1.0)  # corrected EMAs of one value are L and L²: √(L²)/L
    k1 = (0.09 * L_A + 0.1 * L_B_ALONE) / (1 - 0.81)
    k2 = (0.000999 * L_A ** 2 + 0.001 * L_B_ALONE ** 2) / (1 - 0.999 ** 2)
    assert lrs[1] == pytest.approx(math.sqrt(k2) / k1)


def test_explicit_variant_and_betas_override_the_optimizer():
    lrs, _ = two_epochs(lambda m: sgd(m), variant="momentum", betas=(0.5, 0.0))
    assert lrs[0] == pytest.approx(1 / (0.5 * L_A))


# ---- the paper's separate full pass --------------------------------------------------------------

def test_full_pass_mode_uses_current_weights_in_eval_mode_and_ignores_training_batches():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.99), nn.ReLU(), nn.Linear(2, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    opt = sgd(model)
    loader = [(BATCH_A, torch.zeros(3, dtype=torch.long))]
    sched = lipschitz_lr(opt, model, "softmax_ce", full_pass_loader=loader)
    assert lr_of(opt) == pytest.approx(0.9)  # computed at construction, dropout off (eval mode)
    assert model.training  # mode restored
    model(100 * BATCH_B)  # training batches are not collected in this mode
    with torch.no_grad():
        model[0].weight.mul_(2.0)  # the next pass sees the new weights: K_z doubles
    sched.step()
    assert lr_of(opt) == pytest.approx(0.45)


def test_full_pass_mse_reads_targets_from_the_loader():
    model = nn.Sequential(nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        model[0].bias.zero_()
    loader = [(torch.tensor([[3.0, 4.0], [0.0, 1.0]]), torch.tensor([[1.0], [-2.0]]))]
    opt = sgd(model)
    lipschitz_lr(opt, model, "mse", full_pass_loader=loader)
    assert lr_of(opt) == pytest.approx(1 / 12.5)


def test_full_pass_loader_must_be_reiterable():
    model = classifier()
    with pytest.raises(ValueError, match="re-iterable"):
        lipschitz_lr(sgd(model), model, "softmax_ce", full_pass_loader=iter([(BATCH_A, None)]))


def test_paper_inverse_lipschitz_constants_are_reproduced_with_the_frobenius_norm():
    """Authors' Table (softmax regression, unscaled data, 70% train split): 1/L = 1.936 (iris), 0.635 (digits)."""
    for loader_fn, paper in ((load_iris, 1.936), (load_digits, 0.635)):
        x, y = loader_fn(return_X_y=True)
        x_train, _, _, _ = train_test_split(x, y, test_size=0.3, random_state=0)
        x_train = torch.tensor(x_train, dtype=torch.float32)
        model = nn.Sequential(nn.Linear(x_train.shape[1], int(y.max()) + 1, bias=False))
        opt = sgd(model)
        lipschitz_lr(opt, model, "softmax_ce", norm="frobenius", full_pass_loader=[(x_train, None)])
        assert lr_of(opt) == pytest.approx(paper, rel=0.03)


# ---- safety, groups, resume ------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_non_finite_activations_leave_the_lr_and_emas_alone(bad, caplog):
    model = classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = lipschitz_lr(opt, model, "softmax_ce")
    model(BATCH_A)
    sched.step()
    before = (lr_of(opt), sched.k1, sched.k2, sched.updates)
    model(torch.tensor([[bad, 1.0]]))
    with caplog.at_level(logging.WARNING, logger="lrkit.torch.lipschitz"):
        sched.step()
    assert "unusable" in caplog.text
    assert (lr_of(opt), sched.k1, sched.k2, sched.updates) == before
    assert sched.skipped == 1


def test_epoch_without_training_batches_keeps_the_lr(caplog):
    model = classifier()
    opt = sgd(model)
    sched = lipschitz_lr(opt, model, "softmax_ce")
    with caplog.at_level(logging.WARNING, logger="lrkit.torch.lipschitz"):
        sched.step()
    assert lr_of(opt) == 0.01 and "no batch" in caplog.text


def test_max_lr_caps_and_groups_keep_their_ratios():
    model = classifier()
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.01},
                           {"params": model[2].parameters(), "lr": 0.1}], lr=0.01)
    sched = lipschitz_lr(opt, model, "softmax_ce", max_lr=0.5)
    model(BATCH_A)
    sched.step()  # 1/L = 0.9, capped at 0.5
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 5.0])
    assert sched.get_last_lr() == pytest.approx([0.5, 5.0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_resume_mid_epoch_continues_identically(dtype):
    a, b = BATCH_A.to(dtype) * 1.1, BATCH_B.to(dtype) * 1.1  # values not exact in float32

    def build():
        model = classifier().to(dtype)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        return model, opt, lipschitz_lr(opt, model, "softmax_ce", max_lr=10.0)

    model, opt, sched = build()
    for batches in ((a,), (b, a)):
        for batch in batches:
            model(batch)
        sched.step()
    expected = lr_of(opt)

    model, opt, sched = build()
    model(a)
    sched.step()
    model(b)  # half of epoch 2, then checkpoint and restart
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    model, opt, sched = build()
    sched.load_state_dict(torch.load(buffer, weights_only=True))
    model(a)
    sched.step()
    assert lr_of(opt) == expected
    assert sched.last_epoch == 2 and sched.updates == 2


def test_remove_hooks_stops_collection():
    model = classifier()
    opt = sgd(model)
    sched = lipschitz_lr(opt, model, "softmax_ce")
    sched.remove_hooks()
    model(BATCH_A)
    sched.step()
    assert lr_of(opt) == 0.01


def test_training_with_lipschitz_lr_reduces_the_loss():
    torch.manual_seed(0)
    x, y = load_iris(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    y = torch.tensor(y)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = sgd(model, lr=0.1)
    sched = lipschitz_lr(opt, model, "softmax_ce", norm="frobenius")
    criterion = nn.CrossEntropyLoss()
    losses = []
    for _ in range(15):
        for i in range(5):
            batch = torch.arange(150)[i::5]
            loss = criterion(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            losses.append(criterion(model(x), y).item())
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]
    assert sched.updates == 15


# ---- last layer detection and validation ---------------------------------------------------------

def test_find_last_layer_skips_parameter_free_tail_and_recurses():
    head = nn.Linear(8, 3)
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Sequential(head, nn.Softmax(dim=1)),
                          nn.Dropout(), nn.Sequential(nn.Identity()))
    assert find_last_layer(model) is head


def test_find_last_layer_refuses_what_it_cannot_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

    with pytest.raises(ValueError, match="last_layer"):
        find_last_layer(Net())
    with pytest.raises(ValueError, match="composite"):
        find_last_layer(nn.Sequential(nn.Linear(2, 2), Net()))
    with pytest.raises(ValueError, match="no layer"):
        find_last_layer(nn.Sequential(nn.ReLU()))


@pytest.mark.parametrize("kwargs, message", [
    (dict(loss="hinge"), "loss"), (dict(norm="l1"), "norm"), (dict(variant="lamb"), "variant"),
    (dict(betas=(0.9, 1.0)), "betas"), (dict(weight_decay=-1.0), "weight_decay"), (dict(max_lr=0.0), "max_lr"),
    (dict(initial_lr=float("inf")), "initial_lr"), (dict(eps=-1.0), "eps"), (dict(ema_init=(1.0,)), "ema_init"),
    (dict(batch_size=0), "batch_size"), (dict(last_layer=nn.Linear(2, 3)), "last_layer"),
    (dict(variant="adam"), "betas"),
])
def test_bad_arguments_name_the_parameter(kwargs, message):
    model = classifier()
    args = dict(loss="softmax_ce") | kwargs
    with pytest.raises(ValueError, match=message):
        lipschitz_lr(sgd(model), model, **args)


def test_unknown_optimizer_needs_an_explicit_variant():
    model = classifier()
    with pytest.raises(ValueError, match="variant"):
        lipschitz_lr(torch.optim.Adagrad(model.parameters()), model, "softmax_ce")


# ---- torch's LRScheduler contract -----------------------------------------------------------------

def test_is_a_torch_scheduler_with_its_counters_and_no_warning_in_a_normal_loop():
    model = classifier()
    opt = sgd(model, lr=0.05)
    criterion = nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched = lipschitz_lr(opt, model, "softmax_ce")
        assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
        assert (sched.last_epoch, sched._step_count, sched.base_lrs) == (0, 1, [0.05])
        for epoch in range(1, 4):
            for batch in (BATCH_A, BATCH_B):
                loss = criterion(model(batch), torch.zeros(len(batch), dtype=torch.long))
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
            assert (sched.last_epoch, sched._step_count) == (epoch, epoch + 1)
            assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
    assert sched.updates == 3


def test_first_epoch_lr_is_torchs_initial_step():
    """Construction is torch's initial step: initial_lr (scaled per group) or the optimizer's LRs."""
    model = classifier()
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.01},
                           {"params": model[2].parameters(), "lr": 0.1}])
    sched = lipschitz_lr(opt, model, "softmax_ce", initial_lr=0.5)
    assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr() == pytest.approx([0.5, 5.0])
    assert (sched.last_epoch, sched.updates) == (0, 0)


def test_step_takes_no_epoch():
    model = classifier()
    sched = lipschitz_lr(sgd(model), model, "softmax_ce")
    with pytest.raises(ValueError, match="LipschitzLR.step: epoch must be None"):
        sched.step(3)


def test_unusable_epochs_warn_once_per_run_and_are_counted(caplog):
    """A run whose activations vanish (K_z = 0, so L = 0) warned once per epoch before (issue 10)."""
    runs = []
    with caplog.at_level(logging.DEBUG, logger="lrkit.torch.lipschitz"):
        for _ in range(2):  # two runs: one warning each
            model = classifier()
            opt = sgd(model)
            sched = lipschitz_lr(opt, model, "softmax_ce")
            for _ in range(5):
                model(torch.zeros(3, 2))  # relu(0) = 0 enters the last layer
                sched.step()
            runs.append(sched)
    warned = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warned) == 2 and "unusable Lipschitz constant L=0.0" in warned[0].getMessage()
    assert "counted in LipschitzLR.skipped" in warned[0].getMessage()
    assert sum(record.levelno == logging.DEBUG for record in caplog.records) == 8
    assert [sched.skipped for sched in runs] == [5, 5] and lr_of(opt) == 0.01
