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
import math
from collections.abc import Sequence
from typing import Any, Literal

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lrkit.torch.groups import LayerGroup

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


def _check_bn(bn: str) -> None:
    if bn not in BN_MODES:
        raise ValueError(f"bn: must be one of {BN_MODES}, got {bn!r}")


def _parts(target: Target) -> list[tuple[list[nn.Parameter], list[nn.Module]]]:
    """(parameters, modules) pairs of a module or of each layer group."""
    if isinstance(target, nn.Module):
        return [(list(target.parameters()), [target])]
    if isinstance(target, LayerGroup):
        raise ValueError("target: pass a list of LayerGroups (or a module), not a single LayerGroup")
    parts = []
    for i, group in enumerate(target):
        if not isinstance(group, LayerGroup):
            raise ValueError(f"target[{i}]: expected a LayerGroup, got {type(group).__name__}")
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
    _check_bn(bn)
    parts = _parts(target)
    if isinstance(target, nn.Module):
        if upto is not None:
            raise ValueError(f"upto: only applies to a list of layer groups, got upto={upto!r} with a module")
        upto = 1
    elif upto is None:
        upto = len(parts) - 1
    if isinstance(upto, bool) or not isinstance(upto, int) or not 0 <= upto <= len(parts):
        raise ValueError(f"upto: must be an integer in [0, {len(parts)}] (number of groups to freeze), got {upto!r}")
    for params, modules in parts[upto:]:
        _unfreeze_part(params, modules)
    for params, modules in parts[:upto]:
        _freeze_part(params, modules, bn)


def unfreeze(target: Target) -> None:
    """Make every parameter of a module or of the layer groups trainable again (and let its
    BatchNorm layers follow ``model.train()``/``model.eval()`` again)."""
    for params, modules in _parts(target):
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
        _check_bn(bn)
        self.groups = list(groups)
        _parts(self.groups)
        if not self.groups:
            raise ValueError("groups: expected at least one LayerGroup, got none")
        if isinstance(start, bool) or not isinstance(start, int) or not 1 <= start <= len(self.groups):
            raise ValueError(f"start: must be an integer in [1, {len(self.groups)}] (groups trainable at step 0), got {start!r}")
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
        step = state.get("step_count")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"state['step_count']: must be an integer >= 0, got {step!r}")
        self.step_count = step
        self._apply()


def _period(every: float, steps_per_epoch: int | None) -> int:
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not math.isfinite(every) or every <= 0:
        raise ValueError(f"every: must be a finite number > 0, got {every!r}")
    if steps_per_epoch is None:
        if not isinstance(every, int):
            raise ValueError(f"every: counts optimizer steps and must be an integer without steps_per_epoch, got {every!r}")
        return every
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch: must be an integer >= 1, got {steps_per_epoch!r}")
    steps = every * steps_per_epoch
    if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
        raise ValueError(
            f"every: {every!r} epochs x steps_per_epoch {steps_per_epoch} = {steps} steps; must be a whole number >= 1"
        )
    return int(round(steps))
