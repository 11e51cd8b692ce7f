"""Freezing, unfreezing and gradual unfreezing of layer groups.

A frozen parameter has ``requires_grad=False`` and its ``.grad`` cleared, so it gets no
gradient, hence no update and no optimizer state (torch's optimizers skip parameters whose
``grad`` is None, weight decay included). It may stay in the optimizer's param groups: it
trains again as soon as it is unfrozen.

BatchNorm layers of frozen groups follow the explicit ``bn`` option:

- ``"freeze"`` (default): weights frozen **and** running statistics frozen. The layer runs in
  eval mode during forward even after ``model.train()``: a forward pre-hook switches it to eval
  for the call and a forward hook restores its flag, so ``model.train()``/``model.eval()`` keep
  working and cannot silently undo the freeze. ``unfreeze`` removes both hooks.
- ``"stats"``: weights frozen, running statistics keep updating in train mode.
- ``"train"``: BatchNorm weights stay trainable and statistics update (fastai's ``train_bn=True``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from numbers import Integral
from typing import Any, Literal

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lrkit.torch.groups import LayerGroup
from lrkit.validation import choice, fail, instance, integer, integer_in, positive

__all__ = ["BN_MODES", "GradualUnfreezing", "freeze", "unfreeze"]

log = logging.getLogger(__name__)

BNMode = Literal["freeze", "stats", "train"]
BN_MODES: tuple[str, ...] = ("freeze", "stats", "train")
Target = nn.Module | Sequence[LayerGroup]


def _eval_pre_hook(module: nn.Module, args: Any) -> None:
    module._lrkit_training = module.training  # type: ignore[assignment]
    module.training = False


def _eval_post_hook(module: nn.Module, args: Any, output: Any) -> None:
    module.training = getattr(module, "_lrkit_training", module.training)


def _hold_eval(bn: nn.Module) -> None:
    if not _holds_eval(bn):
        bn.register_forward_pre_hook(_eval_pre_hook)
        bn.register_forward_hook(_eval_post_hook, always_call=True)


def _release_eval(bn: nn.Module) -> None:
    for hooks, fn in ((bn._forward_pre_hooks, _eval_pre_hook), (bn._forward_hooks, _eval_post_hook)):
        for key in [k for k, f in hooks.items() if f is fn]:
            del hooks[key]


def _holds_eval(bn: nn.Module) -> bool:
    """True when `bn`'s running statistics are frozen by `freeze(..., bn="freeze")`."""
    return any(f is _eval_pre_hook for f in bn._forward_pre_hooks.values())


def _parts(owner: str, name: str, target: Target) -> list[tuple[list[nn.Parameter], list[nn.Module]]]:
    """(parameters, modules) pairs of a module or of each layer group (`name` is `target`'s, for errors)."""
    if isinstance(target, nn.Module):
        return [(list(target.parameters()), [target])]
    if isinstance(target, LayerGroup):
        raise fail(owner, name, "a module or a list of LayerGroups, not a single LayerGroup", target)
    parts = []
    for i, group in enumerate(target):
        instance(owner, f"{name}[{i}]", group, LayerGroup, "a LayerGroup")
        parts.append((list(group.params), list(group.modules)))
    return parts


def _batchnorms(modules: Sequence[nn.Module]) -> list[nn.Module]:
    return [m for module in modules for m in module.modules() if isinstance(m, _BatchNorm)]


def _freeze_part(params: Sequence[nn.Parameter], modules: Sequence[nn.Module], bn: str) -> None:
    norms = _batchnorms(modules)
    keep = {id(p) for m in norms for p in m.parameters()} if bn == "train" else set()
    for p in params:
        if id(p) in keep:
            p.requires_grad_(True)
        else:
            p.requires_grad_(False)
            p.grad = None
    for m in norms:
        if bn == "freeze":
            _hold_eval(m)
        else:
            _release_eval(m)


def _unfreeze_part(params: Sequence[nn.Parameter], modules: Sequence[nn.Module]) -> None:
    for p in params:
        p.requires_grad_(True)
    for m in _batchnorms(modules):
        _release_eval(m)


def freeze(target: Target, upto: int | None = None, *, bn: BNMode = "freeze") -> None:
    """Freeze a whole module, or the layer groups ``groups[:upto]`` and unfreeze ``groups[upto:]``.

    For groups, ``upto`` defaults to ``len(groups) - 1`` (everything but the head, as fastai's
    ``freeze``); ``upto=k`` is fastai's ``freeze_to(k)``. ``bn`` sets how BatchNorm layers in
    frozen groups behave (module docstring).
    """
    choice("freeze", "bn", bn, BN_MODES)
    parts = _parts("freeze", "target", target)
    if isinstance(target, nn.Module):
        if upto is not None:
            raise fail("freeze", "upto", "None for a module (it only applies to a list of layer groups)", upto)
        upto = 1
    elif upto is None:
        upto = len(parts) - 1
    integer_in("freeze", "upto", upto, 0, len(parts), "number of groups to freeze")
    for params, modules in parts[upto:]:
        _unfreeze_part(params, modules)
    for params, modules in parts[:upto]:
        _freeze_part(params, modules, bn)


def unfreeze(target: Target) -> None:
    """Make every parameter of a module or of the layer groups trainable again (and let its
    BatchNorm layers follow ``model.train()``/``model.eval()`` again)."""
    for params, modules in _parts("unfreeze", "target", target):
        _unfreeze_part(params, modules)


class GradualUnfreezing:
    """Gradual unfreezing, head first (Howard & Ruder 2018, ULMFiT §3.3).

    With G groups, update number ``step`` (0-based, counting optimizer updates) runs with the last
    ``trainable(step)`` groups trainable:

        trainable(step) = min(G, start + floor(step / period))

    ``period`` is ``every`` optimizer steps, or ``every * steps_per_epoch`` when ``steps_per_epoch``
    is given (then ``every`` counts epochs and may be fractional, as long as the period is a whole
    number of steps). ULMFiT: ``start=1``, ``every=1`` epoch.

    Usage: build it before training (it applies step 0's state at once), call ``step()`` after each
    ``optimizer.step()``; ``state_dict()``/``load_state_dict()`` resume the exact state.
    """

    def __init__(
        self,
        groups: Sequence[LayerGroup],
        every: float,
        *,
        steps_per_epoch: int | None = None,
        start: int = 1,
        bn: BNMode = "freeze",
    ) -> None:
        choice("GradualUnfreezing", "bn", bn, BN_MODES)
        self.groups = list(groups)
        _parts("GradualUnfreezing", "groups", self.groups)
        if not self.groups:
            raise fail("GradualUnfreezing", "groups", "at least one LayerGroup", self.groups)
        integer_in("GradualUnfreezing", "start", start, 1, len(self.groups), "groups trainable at step 0")
        self.period = _period(every, steps_per_epoch)
        self.start = start
        self.bn = bn
        self.step_count = 0
        self._apply()

    def trainable(self, step: int) -> int:
        """Number of trainable groups (counted from the head) for update number `step`."""
        return min(len(self.groups), self.start + step // self.period)

    def step(self) -> None:
        """Record one optimizer update; unfreeze the next group when its step has come."""
        self.step_count += 1
        self._apply()

    def _apply(self) -> None:
        n = self.trainable(self.step_count)
        frozen = len(self.groups) - n
        already = [all(not p.requires_grad for p in g.params) for g in self.groups]
        freeze(self.groups, upto=frozen, bn=self.bn)
        if frozen < len(self.groups) and already[frozen]:
            log.info("gradual unfreezing: step %d, %d of %d groups trainable", self.step_count, n, len(self.groups))

    def state_dict(self) -> dict[str, int]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = integer("GradualUnfreezing.load_state_dict", "state['step_count']", state.get("step_count"),
                                  minimum=0)
        self._apply()


def _period(every: float, steps_per_epoch: int | None) -> int:
    """Optimizer steps between two unfreezings: `every` steps, or `every` epochs of `steps_per_epoch`."""
    positive("GradualUnfreezing", "every", every)
    if steps_per_epoch is None:
        if not isinstance(every, Integral):
            raise fail("GradualUnfreezing", "every", "an integer without steps_per_epoch (it counts optimizer steps)",
                       every)
        return int(every)
    integer("GradualUnfreezing", "steps_per_epoch", steps_per_epoch, minimum=1)
    steps = float(every * steps_per_epoch)
    if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
        raise fail("GradualUnfreezing", "every", f"a whole number >= 1 of steps ({steps_per_epoch} per epoch: "
                   f"{steps:g})", every)
    return round(steps)
