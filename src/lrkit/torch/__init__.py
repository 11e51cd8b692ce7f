"""The PyTorch adapters: the only lrkit code that drives torch optimizers."""

from lrkit.torch.scheduler import ScheduledLR

__all__ = ["ScheduledLR"]
