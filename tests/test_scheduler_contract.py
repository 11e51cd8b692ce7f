"""torch's ``LRScheduler`` contract, as the frameworks read it, for lrkit's three schedulers.

Lightning, the HF Trainer and Accelerate touch a scheduler through torch's names: ``optimizer``,
``last_epoch``, ``_step_count`` (Accelerate adds to it), ``base_lrs``, ``_last_lr`` /
``get_last_lr()``, torch's "``scheduler.step()`` before ``optimizer.step()``" warning, and
``state_dict``/``load_state_dict`` through ``torch.save``/``torch.load(weights_only=True)`` (the
Trainer's ``scheduler.pt``, Accelerate's ``scheduler.bin``). ``ScheduledLR`` and ``LipschitzLR``
get them from ``LRScheduler.__init__``/``step`` themselves; ``ReduceLROnPlateau`` has exactly the
attributes of torch's own class (which never calls ``LRScheduler.__init__``). The composers,
``ChainedScheduler`` and ``SequentialLR``, are checked against the numbers ScheduledLR's docstring
states, resume included.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import ChainedScheduler, ExponentialLR, LRScheduler, SequentialLR

import lrkit.schedules as S
from lrkit.torch import LipschitzLR, ReduceLROnPlateau, ScheduledLR

GROUP_LRS = [0.05, 0.01]
SCHEDULE = S.warmup(S.cosine(0.05, 30), 4, start_lr=0.005)
METRICS = [1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.85, 0.85, 0.7, 0.7, 0.7, 0.7]  # stalls: cuts at patience=1
KINDS = ["ScheduledLR", "LipschitzLR", "ReduceLROnPlateau"]
TORCH_SCHEDULERS = ["ScheduledLR", "LipschitzLR"]  # the two built through LRScheduler.__init__
ORDER_WARNING = r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"


@dataclass
class Rig:
    """A tiny classifier, its two-group SGD and one of lrkit's schedulers, stepped as in a training loop."""

    kind: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    updates: int = 0

    def train_batch(self) -> None:
        """One optimizer update on batch number `updates` (the same batches in every rig)."""
        g = torch.Generator().manual_seed(self.updates)
        x, y = torch.randn(6, 2, generator=g), torch.randint(0, 3, (6,), generator=g)
        loss = nn.functional.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.updates += 1

    def step_scheduler(self) -> None:
        if self.kind == "ReduceLROnPlateau":
            self.scheduler.step(METRICS[self.scheduler.last_epoch])
        else:
            self.scheduler.step()

    def advance(self) -> None:
        self.train_batch()
        self.step_scheduler()

    def lrs(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]


def make_rig(kind: str, lr: Callable[[float], Any] = float) -> Rig:
    """The same model and data for every kind; `lr` builds each group's LR (a float or a tensor)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": lr(GROUP_LRS[0])},
                                 {"params": model[2].parameters(), "lr": lr(GROUP_LRS[1])}], momentum=0.0)
    scheduler: Any
    if kind == "ScheduledLR":
        scheduler = ScheduledLR(optimizer, SCHEDULE)
    elif kind == "LipschitzLR":
        scheduler = LipschitzLR(optimizer, model, "softmax_ce", max_lr=1.0)
    else:
        scheduler = ReduceLROnPlateau(optimizer, patience=1, factor=0.5)
    return Rig(kind, model, optimizer, scheduler)


def through_disk(state: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def is_plain(value: Any) -> bool:
    """True for Python scalars, strings, None and lists/tuples/dicts of them: no tensor, no object."""
    if isinstance(value, (list, tuple)):
        return all(is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and is_plain(item) for key, item in value.items())
    return value is None or isinstance(value, (bool, int, float, str))


# ---- attributes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", TORCH_SCHEDULERS)
def test_construction_is_torchs_initial_step(kind):
    rig = make_rig(kind)
    scheduler = rig.scheduler
    assert isinstance(scheduler, LRScheduler)
    assert scheduler.optimizer is rig.optimizer
    assert (scheduler.last_epoch, scheduler._step_count) == (0, 1)
    assert scheduler.base_lrs == GROUP_LRS == [group["initial_lr"] for group in rig.optimizer.param_groups]
    assert scheduler.get_last_lr() == scheduler._last_lr == rig.lrs()
    assert getattr(rig.optimizer.step, "_wrapped_by_lr_sched", False)  # torch's order check is armed


@pytest.mark.parametrize("kind", TORCH_SCHEDULERS)
def test_counters_follow_each_step(kind):
    rig = make_rig(kind)
    for n in range(1, 8):
        rig.advance()
        assert (rig.scheduler.last_epoch, rig.scheduler._step_count) == (n, n + 1)
        assert rig.scheduler.get_last_lr() == rig.scheduler._last_lr == rig.lrs()
    assert rig.scheduler.base_lrs == GROUP_LRS  # the initial LRs, never updated
    if kind == "ScheduledLR":
        assert rig.lrs() == [lr / GROUP_LRS[0] * SCHEDULE(7) for lr in GROUP_LRS]


@pytest.mark.parametrize("kind", TORCH_SCHEDULERS)
def test_accelerates_step_count_increment_is_harmless(kind):
    """Accelerate's gradient-accumulation path does ``scheduler._step_count += 1`` on skipped updates."""
    rig, reference = make_rig(kind), make_rig(kind)
    for _ in range(4):
        rig.scheduler._step_count += 1
        rig.advance()
        reference.advance()
    assert rig.lrs() == reference.lrs()
    assert (rig.scheduler.last_epoch, rig.scheduler._step_count) == (4, reference.scheduler._step_count + 4)


def test_reduce_lr_on_plateau_has_exactly_torchs_attributes():
    """Torch's ReduceLROnPlateau skips LRScheduler.__init__: no _step_count, no base_lrs, in either class."""
    ours, theirs = make_rig("ReduceLROnPlateau"), make_rig("ReduceLROnPlateau")
    theirs.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs.optimizer, patience=1, factor=0.5)
    assert set(vars(ours.scheduler)) == set(vars(theirs.scheduler)) | {"nan_reports"}
    assert not hasattr(ours.scheduler, "_step_count") and not hasattr(ours.scheduler, "base_lrs")
    assert ours.scheduler.optimizer is ours.optimizer and ours.scheduler.last_epoch == 0
    for n in range(1, len(METRICS)):
        for rig in (ours, theirs):
            rig.advance()
        assert ours.scheduler.last_epoch == theirs.scheduler.last_epoch == n  # one count per metric
        assert ours.scheduler.get_last_lr() == theirs.scheduler.get_last_lr() == ours.lrs() == theirs.lrs()
    assert ours.lrs() == [lr * 0.5**4 for lr in GROUP_LRS]  # four stalls of patience + 1 reports, four cuts


@pytest.mark.parametrize("kind", TORCH_SCHEDULERS)
def test_tensor_lrs_are_filled_in_place_and_reported_as_copies(kind):
    """Torch's rule for a tensor ``lr``: the group keeps its tensor; get_last_lr() holds clones."""
    rig = make_rig(kind, lr=torch.tensor)
    tensors = [group["lr"] for group in rig.optimizer.param_groups]
    float_rig = make_rig(kind)
    for _ in range(3):
        rig.advance()
        float_rig.advance()
    assert [group["lr"] for group in rig.optimizer.param_groups] == tensors  # the same tensor objects
    last = rig.scheduler.get_last_lr()
    assert all(isinstance(lr, torch.Tensor) and lr is not t for lr, t in zip(last, tensors))
    assert [float(lr) for lr in last] == pytest.approx(float_rig.lrs(), rel=1e-6)


# ---- torch's order warning ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", TORCH_SCHEDULERS)
def test_no_warning_in_a_normal_loop(kind):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rig = make_rig(kind)
        for _ in range(5):
            rig.advance()
        if kind == "ScheduledLR":
            rig.scheduler.step(20)  # an explicit jump is not torch's deprecated epoch argument


@pytest.mark.parametrize("kind", TORCH_SCHEDULERS)
def test_scheduler_step_before_optimizer_step_warns(kind):
    rig = make_rig(kind)
    with pytest.warns(UserWarning, match=ORDER_WARNING):
        rig.step_scheduler()


@pytest.mark.parametrize("kind", TORCH_SCHEDULERS)
def test_optimizer_step_replaced_after_construction_warns(kind):
    """What torch says when a wrapper (e.g. Accelerate's AcceleratedOptimizer) replaces optimizer.step."""
    rig = make_rig(kind)
    plain_step = type(rig.optimizer).step
    rig.optimizer.step = lambda closure=None: plain_step(rig.optimizer, closure)
    rig.train_batch()
    with pytest.warns(UserWarning, match=r"`optimizer.step\(\)` has been overridden"):
        rig.step_scheduler()


# ---- state_dict through torch.save / torch.load(weights_only=True) --------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stop", [0, 5])
def test_state_round_trip_resumes_the_identical_sequence(kind, stop):
    total = 11
    full = make_rig(kind)
    expected = []
    for _ in range(total):
        full.advance()
        expected.append(full.lrs())

    first = make_rig(kind)
    got = []
    for _ in range(stop):
        first.advance()
        got.append(first.lrs())
    state = first.scheduler.state_dict()
    assert is_plain(state), state  # loads with weights_only=True, on any device
    saved = through_disk({"model": first.model.state_dict(), "optimizer": first.optimizer.state_dict(),
                          "scheduler": state})
    resumed = make_rig(kind)
    resumed.model.load_state_dict(saved["model"])
    resumed.optimizer.load_state_dict(saved["optimizer"])
    resumed.scheduler.load_state_dict(saved["scheduler"])
    resumed.updates = stop
    assert resumed.scheduler.last_epoch == first.scheduler.last_epoch == stop
    assert resumed.scheduler.get_last_lr() == first.scheduler.get_last_lr() == resumed.lrs()
    for _ in range(total - stop):
        resumed.advance()
        got.append(resumed.lrs())
    assert got == expected  # exact
    assert resumed.scheduler.state_dict() == full.scheduler.state_dict()
    if kind != "ReduceLROnPlateau":  # _step_count counts this object's step() calls; it is not saved
        assert resumed.scheduler._step_count == 1 + total - stop


# ---- ChainedScheduler and SequentialLR, as ScheduledLR's docstring states --------------------------

SCALES = [lr / GROUP_LRS[0] for lr in GROUP_LRS]
GAMMA = 0.9


def _chained(order: str) -> tuple[Rig, ChainedScheduler]:
    rig = make_rig("ScheduledLR")
    exponential = ExponentialLR(rig.optimizer, GAMMA)
    members = [rig.scheduler, exponential] if order == "scheduled_first" else [exponential, rig.scheduler]
    rig.scheduler = ChainedScheduler(members)
    return rig, rig.scheduler


def test_chained_with_exponential_after_multiplies_once_per_step():
    """``scale_g·schedule(k)·γ`` from step 1 on, not ``·γᵏ``: the closed form is set first, then ·γ."""
    rig, chain = _chained("scheduled_first")
    assert rig.lrs() == [s * SCHEDULE(0) for s in SCALES]
    for k in range(1, 12):
        rig.advance()
        assert rig.lrs() == [s * SCHEDULE(k) * GAMMA for s in SCALES]
        assert chain.get_last_lr() == rig.lrs()


def test_chained_with_exponential_before_has_no_effect():
    rig, _ = _chained("exponential_first")
    for k in range(1, 12):
        rig.advance()
        assert rig.lrs() == [s * SCHEDULE(k) for s in SCALES]


@pytest.mark.parametrize("order", ["scheduler_state_first", "optimizer_state_first"])
def test_chained_resume(order):
    """The chain's state survives weights_only; loading the ScheduledLR sets scale·schedule(k) without ·γ,
    so the optimizer state loaded after it restores the exact LR, loaded before it leaves one update without γ."""
    full, _ = _chained("scheduled_first")
    expected = []
    for _ in range(9):
        full.advance()
        expected.append(full.lrs())
    first, chain = _chained("scheduled_first")
    for _ in range(4):
        first.advance()
    saved = through_disk({"model": first.model.state_dict(), "optimizer": first.optimizer.state_dict(),
                          "scheduler": chain.state_dict()})
    resumed, resumed_chain = _chained("scheduled_first")
    resumed.model.load_state_dict(saved["model"])
    if order == "optimizer_state_first":
        resumed.optimizer.load_state_dict(saved["optimizer"])
    resumed_chain.load_state_dict(saved["scheduler"])
    if order == "scheduler_state_first":
        resumed.optimizer.load_state_dict(saved["optimizer"])
    resumed.updates = 4
    now = resumed.lrs()
    if order == "scheduler_state_first":
        assert now == expected[3]
    else:
        assert now == [s * SCHEDULE(4) for s in SCALES] == [lr / GAMMA for lr in expected[3]]
    got = []
    for _ in range(5):
        resumed.advance()
        got.append(resumed.lrs())
    assert got == expected[4:]  # from the next step on, identical either way


MILESTONE = 6
SECOND = S.exponential(0.02, 5, 0.5)


def _sequential(with_momentum: bool = False, second: str = "ScheduledLR") -> tuple[Rig, SequentialLR]:
    """ScheduledLR(SCHEDULE) until MILESTONE, then `second`: a ScheduledLR(SECOND) or a LipschitzLR."""
    rig = make_rig("ScheduledLR")
    optimizer = torch.optim.SGD([{"params": rig.model[0].parameters(), "lr": GROUP_LRS[0]},
                                 {"params": rig.model[2].parameters(), "lr": GROUP_LRS[1]}], momentum=0.9)
    momenta = (S.constant(0.8), S.exponential(0.95, 4, 0.9)) if with_momentum else (None, None)
    first = ScheduledLR(optimizer, SCHEDULE, momentum=momenta[0])
    later: LRScheduler
    if second == "ScheduledLR":
        later = ScheduledLR(optimizer, SECOND, momentum=momenta[1])
    else:
        later = LipschitzLR(optimizer, rig.model, "softmax_ce", variant="sgd", max_lr=1.0)
    rig.optimizer = optimizer
    rig.scheduler = SequentialLR(optimizer, [first, later], milestones=[MILESTONE])
    return rig, rig.scheduler


def _expected_sequential(k: int) -> list[float]:
    value = SCHEDULE(k) if k < MILESTONE else SECOND(k - MILESTONE)
    return [s * value for s in SCALES]


def test_sequential_runs_each_member_in_local_time_momentum_included():
    rig, sequence = _sequential(with_momentum=True)
    for k in range(16):
        assert rig.lrs() == _expected_sequential(k)
        assert sequence.get_last_lr() == rig.lrs()
        momentum = 0.8 if k < MILESTONE else S.exponential(0.95, 4, 0.9)(k - MILESTONE)
        assert [group["momentum"] for group in rig.optimizer.param_groups] == [momentum, momentum]
        rig.advance()


@pytest.mark.parametrize("second", ["ScheduledLR", "LipschitzLR"])
@pytest.mark.parametrize("stop", [0, 3, MILESTONE - 1, MILESTONE, 11])
def test_sequential_resumes_identically_at_any_step(stop, second):
    """A member not started yet saves step −1 and its load leaves the running member's LRs alone."""
    full, _ = _sequential(second=second)
    expected = []
    for _ in range(16):
        expected.append(full.lrs())
        full.advance()
    if second == "ScheduledLR":
        assert expected == [_expected_sequential(k) for k in range(16)]

    first, sequence = _sequential(second=second)
    for _ in range(stop):
        first.advance()
    saved = through_disk({"model": first.model.state_dict(), "optimizer": first.optimizer.state_dict(),
                          "scheduler": sequence.state_dict()})
    pending = saved["scheduler"]["_schedulers"][1]
    assert pending["step" if second == "ScheduledLR" else "epoch"] == (-1 if stop < MILESTONE else stop - MILESTONE)
    resumed, resumed_sequence = _sequential(second=second)
    resumed.model.load_state_dict(saved["model"])
    resumed.optimizer.load_state_dict(saved["optimizer"])
    resumed_sequence.load_state_dict(saved["scheduler"])
    resumed.updates = stop
    got = [expected[k] for k in range(stop)]
    for _ in range(stop, 16):
        got.append(resumed.lrs())
        resumed.advance()
    assert got == expected  # exact


@pytest.mark.parametrize("composer", [ChainedScheduler, SequentialLR])
def test_composers_refuse_reduce_lr_on_plateau_by_torchs_own_check(composer):
    rig = make_rig("ReduceLROnPlateau")
    args = ([rig.scheduler],) if composer is ChainedScheduler else (rig.optimizer, [rig.scheduler], [])
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        composer(*args)
