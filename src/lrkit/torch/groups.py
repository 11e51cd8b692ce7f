"""Layer groups and discriminative (per-group) learning rates.

A *layer group* is a contiguous run of a model's modules, in module order, from the input
side (group 0) to the head (last group). Fine-tuning gives each group its own learning rate
and freezes / unfreezes whole groups (Howard & Ruder 2018, "Universal Language Model
Fine-tuning for Text Classification", ULMFiT §3.2 and §3.3).

Every parameter of the model belongs to exactly one group; concatenating the groups'
parameters gives the order of ``model.parameters()`` (tied parameters count once, in the
first group that reaches them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from torch import nn

from lrkit.validation import fail, integer, integer_in, positive

__all__ = ["LayerGroup", "discriminative_param_groups", "layer_groups"]

_CONTAINERS = (nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True, eq=False)
class LayerGroup:
    """One layer group: its modules (with qualified names) and the parameters it owns."""

    names: tuple[str, ...]
    modules: tuple[nn.Module, ...]
    params: tuple[nn.Parameter, ...]

    def parameters(self) -> Iterable[nn.Parameter]:
        return iter(self.params)

    def __repr__(self) -> str:
        count = sum(p.numel() for p in self.params)
        return f"LayerGroup(names={list(self.names)}, params={len(self.params)} tensors / {count} values)"


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _units(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The model's splittable units, in module order.

    Units are the direct children that hold parameters or buffers, except that
    ``nn.ModuleList`` / ``nn.ModuleDict`` containers (stacks of transformer blocks, name spaces)
    are opened into their items, and a module with a single stateful child is descended into.
    A ResNet's stages (``nn.Sequential``) stay whole units; a ``nn.Sequential`` model yields its layers.
    """
    children = [(name, child) for name, child in module.named_children() if _has_state(child)]
    own = any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))
    if len(children) == 1 and not own:
        name, child = children[0]
        return _units(child, f"{prefix}{name}.")
    units: list[tuple[str, nn.Module]] = []
    for name, child in children:
        if isinstance(child, _CONTAINERS):
            units.extend(_units(child, f"{prefix}{name}."))
        else:
            units.append((f"{prefix}{name}", child))
    return units


def _fresh(units: list[tuple[str, nn.Module]]) -> list[list[tuple[str, nn.Module]]]:
    """Units as lists of (name, module); a unit that owns no new parameter (a head tied to the
    input embedding, a BatchNorm without affine weights) joins the unit before it (or after it)."""
    seen: set[int] = set()
    merged: list[list[tuple[str, nn.Module]]] = []
    pending: list[tuple[str, nn.Module]] = []
    for name, module in units:
        new = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in new)
        if new:
            merged.append([*pending, (name, module)])
            pending = []
        elif merged:
            merged[-1].append((name, module))
        else:
            pending.append((name, module))
    return merged


def _chunks(count: int, n_groups: int) -> list[int]:
    """Sizes of `n_groups` contiguous chunks of `count` units: the head is the last unit alone,
    the body is split as evenly as possible, earlier chunks taking the remainder."""
    if n_groups == 1:
        return [count]
    body, parts = count - 1, n_groups - 1
    base, extra = divmod(body, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)] + [1]


def _build(model: nn.Module, members: Sequence[Sequence[tuple[str, nn.Module]]]) -> list[LayerGroup]:
    """Assign each parameter to the first group that reaches it; parameters reached by no
    group (set directly on a parent module, e.g. a ViT's ``pos_embedding``) join group 0."""
    seen: set[int] = set()
    params_of: list[list[nn.Parameter]] = []
    for group in members:
        owned: list[nn.Parameter] = []
        for _, module in group:
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    owned.append(p)
        params_of.append(owned)
    stray = [p for p in model.parameters() if id(p) not in seen]
    params_of[0] = stray + params_of[0]
    empty = [[n for n, _ in group] for group, owned in zip(members, params_of) if not owned]
    if empty:
        raise fail("layer_groups", "split", "groups that each own a parameter; these own none (all tied to "
                   "earlier groups, or none)", empty)
    order = {id(p): i for i, p in enumerate(model.parameters())}
    groups = []
    for group, owned in zip(members, params_of):
        owned.sort(key=lambda p: order[id(p)])
        groups.append(LayerGroup(tuple(n for n, _ in group), tuple(m for _, m in group), tuple(owned)))
    return groups


def _by_names(model: nn.Module, split: Sequence[str]) -> list[list[tuple[str, nn.Module]]]:
    units = _fresh(_units(model))
    names = [[n for n, _ in unit] for unit in units]
    starts = []
    for boundary in split:
        hits = [i for i, unit in enumerate(names) if any(n == boundary or n.startswith(boundary + ".") for n in unit)]
        if not hits:
            raise fail("layer_groups", "each name in split", f"a unit name or a prefix of one (units: {names})",
                       boundary)
        starts.append(hits[0])
    if any(b <= a for a, b in pairwise(starts)) or starts[0] == 0:
        raise fail("layer_groups", "split", f"names that start groups strictly after the first unit, in module "
                   f"order (they start units {starts} of {names})", list(split))
    bounds = [0, *starts, len(units)]
    return [[m for unit in units[a:b] for m in unit] for a, b in pairwise(bounds)]


def _by_callable(model: nn.Module, split: Callable[[nn.Module], Sequence[Any]]) -> list[list[tuple[str, nn.Module]]]:
    name_of = {id(m): n for n, m in model.named_modules()}
    members = []
    for item in split(model):
        modules = [item] if isinstance(item, nn.Module) else list(item)
        for m in modules:
            if id(m) not in name_of:
                raise fail("layer_groups", "each module in split(model)", "a part of the model", m)
        members.append([(name_of[id(m)], m) for m in modules])
    if not members:
        raise fail("layer_groups", "split(model)", "a non-empty list of groups", members)
    covered: set[int] = set()
    for group in members:
        ids = {id(p) for _, m in group for p in m.parameters()}
        if ids & covered:
            raise fail("layer_groups", "split(model)", "groups that do not overlap (this group repeats parameters "
                       "of earlier groups)", [n for n, _ in group])
        covered |= ids
    missing = [n for n, p in model.named_parameters() if id(p) not in covered]
    if missing:
        raise fail("layer_groups", "split(model)", "groups that cover every parameter (these are missed)", missing)
    return members


def layer_groups(
    model: nn.Module,
    n_groups: int | None = None,
    *,
    split: Sequence[str] | Callable[[nn.Module], Sequence[Any]] | None = None,
) -> list[LayerGroup]:
    """Split `model` into ordered layer groups (input side first, head last).

    - ``n_groups=k``: automatic, by module order. The model's units (see ``_units``: the layers
      of a ``nn.Sequential``; a ResNet's stem layers, stages and head; a transformer's embeddings,
      each block of its ``nn.ModuleList`` and its head) are cut into k contiguous groups: the last
      unit (the head) alone, the other units spread evenly over the first k-1 groups.
    - ``n_groups=None`` and no ``split``: one group per unit.
    - ``split=["layer3", "fc"]``: explicit, each name starts a new group (a unit or a prefix of
      unit names); ``split=callable``: ``callable(model)`` returns the groups as modules or
      lists of modules (fastai's ``splitter``), which must cover every parameter exactly once.
    """
    if n_groups is not None and split is not None:
        raise fail("layer_groups", "split", "None when n_groups is given (give one, not both)", split)
    if not any(True for _ in model.parameters()):
        raise fail("layer_groups", "model", "a module with parameters", model)
    if callable(split):
        return _build(model, _by_callable(model, split))
    if split is not None:
        if isinstance(split, str) or not split:
            raise fail("layer_groups", "split", "a non-empty list of module names or a callable", split)
        return _build(model, _by_names(model, split))
    units = _fresh(_units(model)) or [[("", model)]]
    if n_groups is None:
        return _build(model, units)
    integer_in("layer_groups", "n_groups", n_groups, 1, len(units), "this model's units")
    members, start = [], 0
    for size in _chunks(len(units), n_groups):
        members.append([m for unit in units[start : start + size] for m in unit])
        start += size
    return _build(model, members)


def discriminative_lrs(
    n_groups: int,
    lr: float | tuple[float, float] | slice | None = None,
    *,
    factor: float = 2.6,
    lrs: Sequence[float] | None = None,
) -> list[float]:
    """Per-group learning rates, group 0 (input side) to the head.

    - ``lr`` a number: ULMFiT's discriminative rule (Howard & Ruder 2018, §3.2, eq. 2 with
      η^{l-1} = η^l / 2.6):  ``lr_g = lr / factor ** (n_groups - 1 - g)``  (the head gets ``lr``).
    - ``lr=(lo, hi)`` or ``slice(lo, hi)``: geometric spread as fastai's ``even_mults``:
      ``lr_g = lo * (hi / lo) ** (g / (n_groups - 1))``.
    - ``lrs=[...]``: one explicit value per group.
    """
    owner = "discriminative_lrs"
    integer(owner, "n_groups", n_groups, minimum=1)
    if (lr is None) == (lrs is None):
        raise fail(owner, "(lr, lrs)", "one value and one None (give exactly one of lr and lrs)", (lr, lrs))
    if lrs is not None:
        values = [float(positive(owner, f"lrs[{i}]", v)) for i, v in enumerate(lrs)]
        if len(values) != n_groups:
            raise fail(owner, "lrs", f"one value per group ({n_groups} values)", list(lrs))
        return values
    if isinstance(lr, slice):
        if lr.step is not None:
            raise fail(owner, "lr", "a slice with no step", lr)
        lr = (lr.start, lr.stop)
    if isinstance(lr, tuple):
        if len(lr) != 2:
            raise fail(owner, "lr", "a range (lo, hi) of two numbers", lr)
        lo, hi = float(positive(owner, "lr[0] (lo)", lr[0])), float(positive(owner, "lr[1] (hi)", lr[1]))
        if lo > hi:
            raise fail(owner, "lr", "a range (lo, hi) with lo <= hi", lr)
        if n_groups == 1:
            return [hi]
        return [lo * (hi / lo) ** (g / (n_groups - 1)) for g in range(n_groups)]
    head = float(positive(owner, "lr", lr))
    step = float(positive(owner, "factor", factor))
    return [head / step ** (n_groups - 1 - g) for g in range(n_groups)]


def discriminative_param_groups(
    groups: Sequence[LayerGroup],
    lr: float | tuple[float, float] | slice | None = None,
    *,
    factor: float = 2.6,
    lrs: Sequence[float] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Optimizer param groups, one per layer group, with discriminative learning rates
    (see ``discriminative_lrs`` for the rule). ``options`` (e.g. ``weight_decay``) go into every
    group. Frozen parameters are included: they get no gradient, hence no update and no
    optimizer state, and start training as soon as they are unfrozen.

    ``lrkit.torch.ScheduledLR`` keeps the ratios: group g gets ``lr_g / lr_0 * schedule(step)``.
    """
    if not groups:
        raise fail("discriminative_param_groups", "groups", "at least one LayerGroup", groups)
    if "params" in options or "lr" in options:
        raise fail("discriminative_param_groups", "options", "free of 'params' and 'lr' (set per group)",
                   sorted(options))
    values = discriminative_lrs(len(groups), lr, factor=factor, lrs=lrs)
    return [{"params": list(g.params), "lr": value, **options} for g, value in zip(groups, values)]
