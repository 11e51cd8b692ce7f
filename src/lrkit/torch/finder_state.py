"""Snapshot and exact restore of everything an LR range test changes (in memory, no files).

A range test trains: it moves the parameters, buffers (BatchNorm statistics), gradients and
train/eval flags of the model, the optimizer's state and hyper-parameters, a GradScaler's scale,
the torch (CPU and CUDA), numpy and Python random generators, and the generators of the data
loaders it draws from. `TrainingSnapshot.take` deep-copies all of it; `restore` puts every bit back.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


def loader_generators(loaders: Iterable[Any]) -> list[torch.Generator]:
    """The torch generators that drive the order of these loaders (DataLoader, its samplers)."""
    found: dict[int, torch.Generator] = {}
    for loader in loaders:
        holders = [loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                   getattr(getattr(loader, "batch_sampler", None), "sampler", None)]
        for holder in holders:
            generator = getattr(holder, "generator", None)
            if isinstance(generator, torch.Generator):
                found[id(generator)] = generator
    return list(found.values())


@dataclass
class TrainingSnapshot:
    """Deep copies of the training state; `restore()` may be called any number of times."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    model_state: dict[str, Any]
    grads: list[tuple[nn.Parameter, torch.Tensor | None]]
    modes: list[tuple[nn.Module, bool]]
    optimizer_state: dict[str, Any]
    scaler: Any
    scaler_state: dict[str, Any] | None
    rng: dict[str, Any]
    generators: list[tuple[torch.Generator, torch.Tensor]]

    @classmethod
    def take(cls, model: nn.Module, optimizer: torch.optim.Optimizer, *, loaders: Iterable[Any] = (),
             grad_scaler: Any = None) -> TrainingSnapshot:
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        return cls(
            model=model,
            optimizer=optimizer,
            model_state=copy.deepcopy(model.state_dict()),
            grads=[(p, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()],
            modes=[(module, module.training) for module in model.modules()],
            optimizer_state=copy.deepcopy(optimizer.state_dict()),
            scaler=grad_scaler,
            scaler_state=None if grad_scaler is None else copy.deepcopy(grad_scaler.__dict__),
            rng={"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if cuda else None,
                 "numpy": np.random.get_state(), "python": random.getstate()},
            generators=[(g, g.get_state()) for g in loader_generators(loaders)],
        )

    def restore(self) -> None:
        """Put every snapshotted value back, bit for bit (the snapshot itself stays intact)."""
        with torch.no_grad():
            self.model.load_state_dict(self.model_state)  # copies into the existing tensors
            for param, grad in self.grads:
                param.grad = None if grad is None else grad.clone()
        for module, training in self.modes:
            module.training = training
        # load_state_dict keeps the tensors it is given: hand it a fresh copy each time.
        self.optimizer.load_state_dict(copy.deepcopy(self.optimizer_state))
        if self.scaler is not None:
            self.scaler.__dict__.clear()
            self.scaler.__dict__.update(copy.deepcopy(self.scaler_state))
        torch.set_rng_state(self.rng["torch"])
        if self.rng["cuda"] is not None:
            torch.cuda.set_rng_state_all(self.rng["cuda"])
        np.random.set_state(self.rng["numpy"])
        random.setstate(self.rng["python"])
        for generator, state in self.generators:
            generator.set_state(state)
