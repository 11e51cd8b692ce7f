"""The Lipschitz learning rate of Yedida, Saha & Prashanth, "LipschitzLR" (arXiv 1902.07399).

The LR is the inverse of a Lipschitz constant ``L`` of the loss with respect to the last
layer's weights, recomputed every epoch from the activations ``z`` entering that layer
(``K_z`` bounds their norm), for a mini-batch of ``m`` examples:

    softmax cross-entropy, k classes:   L = (k − 1)/(k·m) · K_z
    binary cross-entropy with sigmoid:  L = K_z / (2m)
    mean squared error:                 L = (K_a + K_y) · K_z / m     (K_a, K_y: outputs, targets)
    with an L2 term λ/2·‖w‖²:           L += λ · max‖w‖

and the LR of each optimizer (the paper's section on other optimizers; EMAs over epochs):

    SGD:       α = 1/L
    momentum:  K₁ ← β₁K₁ + (1 − β₁)L,                          α = 1/K₁
    RMSprop:   K₂ ← β₂K₂ + (1 − β₂)L²,                         α = √(K₂ + ε)/L
    Adam:      K₁ ← β₁K₁ + (1 − β₁)L,  K₂ ← β₂K₂ + (1 − β₂)L², α = √(K₂ + ε)/K₁
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lrkit.torch._group_lrs import current_lrs, group_scales, write_lrs
from lrkit.validation import choice, fail, flag, in_range, instance, integer, non_negative, optional, positive

logger = logging.getLogger(__name__)

LOSSES = ("softmax_ce", "bce", "mse")
VARIANTS = ("sgd", "momentum", "rmsprop", "adam")
NORMS = ("per_example", "frobenius")


def lipschitz_constant(loss: str, k_z: float, batch_size: int, *, num_classes: int | None = None,
                       k_a: float | None = None, k_y: float | None = None, weight_decay: float = 0.0,
                       max_weight_norm: float = 0.0) -> float:
    """The paper's Lipschitz constant ``L`` of `loss` (formulas in the module docstring).

    `k_z` bounds the norm of the last layer's inputs, `batch_size` is ``m``; softmax needs
    `num_classes` (k ≥ 2), MSE needs `k_a` (outputs) and `k_y` (targets). The L2 term adds
    ``weight_decay · max_weight_norm``.
    """
    owner = "lipschitz_constant"
    choice(owner, "loss", loss, LOSSES)
    integer(owner, "batch_size", batch_size, minimum=1)
    if loss == "softmax_ce":
        classes = integer(owner, "num_classes (softmax_ce)", num_classes, minimum=2)
        value = (classes - 1) / (classes * batch_size) * k_z
    elif loss == "bce":
        value = k_z / (2 * batch_size)
    else:
        if k_a is None or k_y is None:
            raise fail(owner, "(k_a, k_y)", "two numbers for loss='mse'", (k_a, k_y))
        value = (k_a + k_y) * k_z / batch_size
    return value + weight_decay * max_weight_norm


def find_last_layer(model: nn.Module) -> nn.Module:
    """The last layer with parameters of an ``nn.Sequential`` (nested ones searched from the end).

    Parameter-free trailing modules (activations, Flatten, Dropout, Softmax) are skipped.
    Other models have no reliable execution order: name the layer with ``last_layer=``.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"find_last_layer: cannot find the last layer of a {type(model).__name__} automatically "
                         "(only nn.Sequential runs its children in order); pass last_layer=the module whose "
                         "input is the penultimate activation")
    for child in reversed(model):
        if isinstance(child, nn.Sequential):
            if any(True for _ in child.parameters()):
                return find_last_layer(child)
            continue
        if any(True for _ in child.parameters()):
            if any(True for _ in child.children()):
                raise ValueError(f"find_last_layer: the last child with parameters, {type(child).__name__}, is a "
                                 "composite module; pass last_layer= explicitly")
            return child
    raise ValueError("find_last_layer: the model has no layer with parameters")


def _batch_norm(t: Tensor, norm: str) -> Tensor:
    """Largest per-example L2 norm of a batch, or the Frobenius norm of the whole batch."""
    t = t.detach()
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()  # integer targets, and half precision whose squares overflow
    if t.ndim < 2:
        t = t.reshape(-1, 1)
    return t.flatten(1).norm(dim=1).amax() if norm == "per_example" else t.norm()


@dataclass
class _EpochStats:
    """Running maxima over one epoch (kept as tensors: no device sync per batch)."""

    k_z: Tensor | None = None
    k_a: Tensor | None = None
    k_y: Tensor | None = None
    batch_size: int = 0
    num_classes: int = 0

    def observe_layer(self, z: Tensor, output: Tensor, norm: str, outputs_norm: bool) -> None:
        self.k_z = _running_max(self.k_z, _batch_norm(z, norm))
        if outputs_norm:
            self.k_a = _running_max(self.k_a, _batch_norm(output, norm))
        self.batch_size = max(self.batch_size, int(z.shape[0]) if z.ndim else 1)
        self.num_classes = max(self.num_classes, int(output.shape[1]) if output.ndim > 1 else 1)

    def observe_targets(self, y: Tensor, norm: str) -> None:
        self.k_y = _running_max(self.k_y, _batch_norm(y, norm))

    def as_floats(self) -> dict[str, Any]:
        return {"k_z": _to_float(self.k_z), "k_a": _to_float(self.k_a), "k_y": _to_float(self.k_y),
                "batch_size": self.batch_size, "num_classes": self.num_classes}

    @classmethod
    def from_floats(cls, state: dict[str, Any]) -> _EpochStats:
        def tensor(value):
            return None if value is None else torch.tensor(float(value), dtype=torch.float64)
        return cls(tensor(state["k_z"]), tensor(state["k_a"]), tensor(state["k_y"]),
                   int(state["batch_size"]), int(state["num_classes"]))


def _running_max(current: Tensor | None, value: Tensor) -> Tensor:
    return value if current is None else torch.maximum(current.to(value.device), value)


def _to_float(value: Tensor | None) -> float | None:
    return None if value is None else float(value)


class LipschitzLR(LRScheduler):
    """Set the LR to the paper's inverse Lipschitz constant after every epoch (call `step()` then).

    ``K_z`` is collected by a forward hook on `last_layer` **during the training epoch** (only
    while that layer is in training mode, so validation passes do not count): the LR for epoch
    t+1 comes from the activations seen while training epoch t, at no extra pass over the data.
    Epoch 0 runs at `initial_lr` (or the optimizer's LR when None). Give `full_pass_loader` to
    reproduce the paper instead: a separate no-grad, eval-mode pass over that loader computes
    ``K_z`` with the current weights at construction (unless `initial_lr` is given) and at
    every `step()`, so each epoch's LR comes from the weights at its start.

    **Which norm.** The authors' code (github.com/yrahul3910/adaptive-lr-dnn, ``lr_schedule``)
    takes ``np.linalg.norm`` of the whole batch activation matrix: the Frobenius norm ``‖Z‖_F``
    of each mini-batch, maximised over the batches (``norm="frobenius"``, the default; their
    draft writes the classical-model constant as ``(k − 1)/(k·m)·‖X‖`` of the data matrix). The
    arXiv text reads ``K_z`` as the largest norm of one activation vector, ``max_i ‖z_i‖`` over
    the examples (``norm="per_example"``), which is about √m times smaller and gives an LR about
    √m times larger. We default to the authors' code because it reproduces their published
    inverse-L values (iris 1.936, digits 0.635, with ``batch_size`` = the training-set size)
    and because the per-example LR diverged where the Frobenius one trained (docs/lipschitz.md).
    Neither bounds the mean gradient's Lipschitz constant strictly (that needs
    ``(k − 1)/k · max_i ‖z_i‖``, without the 1/m); `max_lr` caps what the rule proposes.
    ``K_a`` (MSE outputs) and ``K_y`` (MSE targets) use the same norm.

    **Optimizer variants.** `variant` (inferred from the optimizer when None: SGD without /
    with momentum, RMSprop, Adam/AdamW) picks the rule; `betas` = (β₁, β₂) default to the
    optimizer's (SGD ``momentum``, RMSprop ``alpha`` as β₂, Adam ``betas``). The paper's
    momentum is the EMA form v ← βv + (1 − β)g; torch's SGD momentum matches it with
    ``dampening=momentum``. `ema_init` = (K₁, K₂) before the first update (the authors' Adam and
    RMSprop scripts start at 0, their momentum script at 0.5 after a fixed first epoch);
    `bias_correction` divides by (1 − βᵗ) as Adam does (the paper does not). The authors'
    RMSprop script divides by ``K_z`` rather than ``L`` and their K₂ uses ‖z∘z‖ rather than
    ‖z‖²; we implement the formulas above.

    **L2 term.** `weight_decay` λ adds ``λ · max‖w‖`` (max Frobenius norm over the model's
    parameter tensors, as the authors' code does). **MSE** needs `criterion` (the ``nn.Module``
    loss, hooked to see the targets) unless `full_pass_loader` yields (input, target). The
    formula is the paper's for ``1/(2m)·Σ‖a − y‖²``; ``nn.MSELoss()`` with d outputs has a
    gradient 2/d times that.

    **Safety.** A non-finite or non-positive L or LR leaves the LR unchanged (and the EMAs
    untouched); the first such epoch of a run logs a warning, later ones are logged at DEBUG
    level and counted in `skipped` (a run whose activations vanish would otherwise warn once per
    epoch). `max_lr` caps the LR. Param groups keep their initial LR
    ratios. `state_dict` holds the EMAs, the epoch and the partial epoch's maxima.

    **Torch's contract.** The constructor ends with torch's ``LRScheduler.__init__`` and `step`
    calls ``LRScheduler.step`` (rather than copying their attributes): torch's initial step sets
    epoch 0's LR (``last_epoch`` −1 → 0), each later `step()` computes the next epoch's ``α`` and
    torch writes `get_lr` (``scale_g·α``) to the groups, so ``_step_count``, ``base_lrs``,
    `get_last_lr` and the "``scheduler.step()`` before ``optimizer.step()``" warning are torch's own.
    """

    def __init__(self, optimizer: Optimizer, model: nn.Module, loss: str, *, last_layer: nn.Module | None = None,
                 criterion: nn.Module | None = None, variant: str | None = None,
                 betas: tuple[float, float] | None = None, norm: str = "frobenius", weight_decay: float = 0.0,
                 max_lr: float | None = None, initial_lr: float | None = None,
                 ema_init: tuple[float, float] = (0.0, 0.0), bias_correction: bool = False, eps: float = 1e-7,
                 batch_size: int | None = None, full_pass_loader: Iterable | None = None):
        owner = "LipschitzLR"
        instance(owner, "optimizer", optimizer, Optimizer, "a torch.optim.Optimizer")
        instance(owner, "model", model, nn.Module, "an nn.Module")
        choice(owner, "loss", loss, LOSSES)
        choice(owner, "norm", norm, NORMS)
        variant = choice(owner, "variant", _infer_variant(optimizer) if variant is None else variant, VARIANTS)
        betas = _optimizer_betas(optimizer, variant) if betas is None else betas
        _check_pair(owner, "betas", betas, "two numbers in [0, 1)")
        for beta in betas:
            in_range(owner, "each of betas", beta, 0.0, 1.0, open_high=True)
        non_negative(owner, "weight_decay", weight_decay)
        optional(positive, owner, "max_lr", max_lr)
        optional(positive, owner, "initial_lr", initial_lr)
        _check_pair(owner, "ema_init", ema_init, "a pair (K1, K2) of numbers >= 0")
        for value in ema_init:
            non_negative(owner, "each of ema_init", value)
        flag(owner, "bias_correction", bias_correction)
        non_negative(owner, "eps", eps)
        optional(integer, owner, "batch_size", batch_size, minimum=1)
        if full_pass_loader is not None and iter(full_pass_loader) is full_pass_loader:
            raise fail(owner, "full_pass_loader", "re-iterable every epoch (a DataLoader or a list), not a one-shot "
                       "iterator", full_pass_loader)
        if loss == "mse" and full_pass_loader is None and not isinstance(criterion, nn.Module):
            raise fail(owner, "criterion", "the nn.Module loss when loss='mse' is collected during training (its "
                       "targets enter K_y)", criterion)
        if last_layer is None:
            last_layer = find_last_layer(model)
        elif not any(module is last_layer for module in model.modules()):
            raise fail(owner, "last_layer", "a submodule of the model", last_layer)

        self.model = model
        self.loss = loss
        self.last_layer = last_layer
        self.variant = variant
        self.betas = (float(betas[0]), float(betas[1]))
        self.norm = norm
        self.weight_decay = float(weight_decay)
        self.max_lr = None if max_lr is None else float(max_lr)
        self.initial_lr = None if initial_lr is None else float(initial_lr)
        self.bias_correction = bias_correction
        self.eps = float(eps)
        self.batch_size = batch_size
        self.full_pass_loader = full_pass_loader
        self.k1, self.k2 = float(ema_init[0]), float(ema_init[1])
        self.updates = 0  # EMA updates made
        self.skipped = 0  # epochs whose L or LR was unusable
        self._warned = False  # about an unusable epoch: once per run
        self.last_lipschitz: float | None = None
        self.scales = group_scales(owner, optimizer)
        self._lrs = [float(group["lr"]) for group in optimizer.param_groups]  # what get_lr returns
        self._stats = _EpochStats()
        self._in_full_pass = False
        self._handles = [last_layer.register_forward_hook(self._layer_hook)]
        if loss == "mse" and criterion is not None:
            self._handles.append(criterion.register_forward_hook(self._criterion_hook, with_kwargs=True))
        super().__init__(optimizer)  # its initial step sets epoch 0's LR (see `step`)

    # ---- collection ---------------------------------------------------------------------------
    def _collecting(self) -> bool:
        return self._in_full_pass or (self.full_pass_loader is None and self.last_layer.training)

    def _layer_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        if args and isinstance(output, Tensor) and self._collecting():
            with torch.no_grad():
                self._stats.observe_layer(args[0], output, self.norm, outputs_norm=self.loss == "mse")

    def _criterion_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        target = args[1] if len(args) > 1 else kwargs.get("target")
        if isinstance(target, Tensor) and self._collecting():
            with torch.no_grad():
                self._stats.observe_targets(target, self.norm)

    def _full_pass(self, loader: Iterable) -> None:
        """The paper's separate pass: eval mode, no grad, the current weights."""
        was_training = self.model.training
        device = next(self.model.parameters()).device
        self.model.eval()
        self._in_full_pass = True
        try:
            with torch.no_grad():
                for batch in loader:
                    inputs, targets = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
                    self.model(inputs.to(device))
                    if self.loss == "mse":
                        if targets is None:
                            raise ValueError("LipschitzLR: loss='mse' needs full_pass_loader to yield (input, target)")
                        self._stats.observe_targets(targets, self.norm)
        finally:
            self._in_full_pass = False
            self.model.train(was_training)

    # ---- the rule -----------------------------------------------------------------------------
    def step(self, epoch: int | None = None) -> None:
        """End of an epoch: compute the next epoch's LR from this epoch's activations.

        Torch's constructor makes the first call (``last_epoch`` −1 → 0): it sets epoch 0's LR,
        `initial_lr`, else one from a full pass when `full_pass_loader` is given, else the
        optimizer's own. ``LRScheduler.step`` then writes `get_lr` and keeps torch's counters.
        """
        if epoch is not None:
            raise fail("LipschitzLR.step", "epoch", "None (epochs advance one at a time)", epoch)
        if self.last_epoch >= 0:
            self._end_epoch()
        elif self.initial_lr is not None:
            self._set_lr(self.initial_lr)
        elif self.full_pass_loader is not None:
            self._end_epoch()
        super().step()

    def _end_epoch(self) -> None:
        if self.full_pass_loader is not None:
            self._stats = _EpochStats()
            self._full_pass(self.full_pass_loader)
        self._update_from_stats()

    def _update_from_stats(self) -> None:
        stats, self._stats = self._stats, _EpochStats()
        k_z = _to_float(stats.k_z)
        if k_z is None:
            self._skip("no batch reached the last layer in training mode during epoch %d", self.last_epoch)
            return
        lipschitz = self._lipschitz(stats, k_z)
        if not math.isfinite(lipschitz) or lipschitz <= 0:
            self._skip("unusable Lipschitz constant L=%r at epoch %d (K_z=%r)", lipschitz, self.last_epoch, k_z)
            return
        k1, k2, updates = self._ema(lipschitz)
        lr = self._lr_rule(lipschitz, k1, k2, updates)
        if not math.isfinite(lr) or lr <= 0:
            self._skip("unusable LR %r at epoch %d (L=%r)", lr, self.last_epoch, lipschitz)
            return
        self.k1, self.k2, self.updates, self.last_lipschitz = k1, k2, updates, lipschitz
        if self.max_lr is not None and lr > self.max_lr:
            logger.info("LipschitzLR: LR %.4g capped at max_lr=%.4g", lr, self.max_lr)
            lr = self.max_lr
        self._set_lr(lr)

    def _skip(self, reason: str, *args: object) -> None:
        """Count an epoch that leaves the LR as it is; warn about the first one of this scheduler only."""
        self.skipped += 1
        message = "LipschitzLR: " + reason + "; LR left at %s"
        if self._warned:
            logger.debug(message, *args, self._lrs)
            return
        self._warned = True
        logger.warning(message + " (further such epochs of this run: logged at DEBUG level, counted in "
                       "LipschitzLR.skipped)", *args, self._lrs)

    def _lipschitz(self, stats: _EpochStats, k_z: float) -> float:
        max_weight_norm = 0.0
        if self.weight_decay > 0:
            with torch.no_grad():
                max_weight_norm = max(float(p.detach().norm()) for p in self.model.parameters())
        k_y = _to_float(stats.k_y)
        if self.loss == "mse" and k_y is None:
            raise RuntimeError("LipschitzLR: loss='mse' saw no targets this epoch; call the criterion "
                               "passed as criterion= on the model's outputs")
        return lipschitz_constant(self.loss, k_z, self.batch_size or stats.batch_size,
                                  num_classes=stats.num_classes, k_a=_to_float(stats.k_a), k_y=k_y,
                                  weight_decay=self.weight_decay, max_weight_norm=max_weight_norm)

    def _ema(self, lipschitz: float) -> tuple[float, float, int]:
        beta1, beta2 = self.betas
        k1 = beta1 * self.k1 + (1 - beta1) * lipschitz
        k2 = beta2 * self.k2 + (1 - beta2) * lipschitz ** 2
        return k1, k2, self.updates + 1

    def _lr_rule(self, lipschitz: float, k1: float, k2: float, updates: int) -> float:
        if self.bias_correction:
            k1 = k1 / (1 - self.betas[0] ** updates)
            k2 = k2 / (1 - self.betas[1] ** updates)
        if self.variant == "sgd":
            return 1.0 / lipschitz
        if self.variant == "momentum":
            return 1.0 / k1
        if self.variant == "rmsprop":
            return math.sqrt(k2 + self.eps) / lipschitz
        return math.sqrt(k2 + self.eps) / k1

    def _set_lr(self, lr: float) -> None:
        self._lrs = [scale * lr for scale in self.scales]

    def get_lr(self) -> list[float | Tensor]:
        """The LRs of the epoch starting now: ``scale_g · α`` from the rule (no closed form: it needs
        activations), or the optimizer's own until the rule gives a usable α."""
        return list(self._lrs)

    def remove_hooks(self) -> None:
        """Detach the forward hooks (the scheduler stops collecting)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ---- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """EMAs, counters, current LRs and the partial epoch's maxima (tensor-free)."""
        return {"epoch": self.last_epoch, "k1": self.k1, "k2": self.k2, "updates": self.updates,
                "skipped": self.skipped, "last_lipschitz": self.last_lipschitz, "lrs": list(self._lrs),
                "stats": self._stats.as_floats()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the saved run: same EMAs, same LRs, same partial-epoch maxima.

        Epoch −1 is a scheduler not started yet (a later member of a ``SequentialLR``): the
        optimizer's LRs, which belong to the running member, are left alone.
        """
        owner = "LipschitzLR.load_state_dict"
        try:
            lrs = [float(lr) for lr in state_dict["lrs"]]
            stats = _EpochStats.from_floats(state_dict["stats"])
            epoch, updates = int(state_dict["epoch"]), int(state_dict["updates"])
            k1, k2, skipped = float(state_dict["k1"]), float(state_dict["k2"]), int(state_dict["skipped"])
            last = state_dict["last_lipschitz"]
        except (KeyError, TypeError, ValueError):
            raise fail(owner, "state_dict", "a state saved by LipschitzLR.state_dict()", state_dict) from None
        groups = len(self.optimizer.param_groups)
        if len(lrs) != groups:
            raise fail(owner, "lrs", f"one LR per param group ({groups})", lrs)
        self.last_epoch, self.k1, self.k2, self.updates, self.skipped = epoch, k1, k2, updates, skipped
        self.last_lipschitz = None if last is None else float(last)
        self._stats = stats
        self._lrs = lrs
        if epoch >= 0:
            write_lrs(self.optimizer, self.get_lr())
            self._last_lr = current_lrs(self.optimizer)


def _infer_variant(optimizer: Optimizer) -> str:
    if isinstance(optimizer, torch.optim.SGD):
        return "momentum" if optimizer.param_groups[0].get("momentum", 0) > 0 else "sgd"
    if isinstance(optimizer, torch.optim.RMSprop):
        return "rmsprop"
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return "adam"
    raise fail("LipschitzLR", "variant", f"one of {', '.join(map(repr, VARIANTS))} (it cannot be inferred for "
               f"{type(optimizer).__name__})", None)


def _optimizer_betas(optimizer: Optimizer, variant: str) -> tuple[float, float]:
    group = optimizer.param_groups[0]
    if variant == "momentum" and "momentum" in group:
        return float(group["momentum"]), 0.0
    if variant == "rmsprop" and "alpha" in group:
        return 0.0, float(group["alpha"])
    if variant == "adam" and "betas" in group:
        return float(group["betas"][0]), float(group["betas"][1])
    if variant == "sgd":
        return 0.0, 0.0
    raise fail("LipschitzLR", "betas", f"given as (beta1, beta2) for variant={variant!r} on "
               f"{type(optimizer).__name__} (its groups do not hold them)", None)


def _check_pair(owner: str, name: str, value: Any, allowed: str) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise fail(owner, name, allowed, value)
