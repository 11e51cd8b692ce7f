"""The PyTorch adapters: the only lrkit code that drives torch optimizers."""

from lrkit.torch.finder import FinderResult, find_group_lrs, find_lr
from lrkit.torch.freezing import GradualUnfreezing, freeze, unfreeze
from lrkit.torch.groups import LayerGroup, discriminative_lrs, discriminative_param_groups, layer_groups
from lrkit.torch.lipschitz import LipschitzLR, find_last_layer, lipschitz_constant
from lrkit.torch.plateau import ReduceLROnPlateau
from lrkit.torch.scheduler import ScheduledLR

__all__ = ["ScheduledLR", "LayerGroup", "layer_groups", "discriminative_lrs", "discriminative_param_groups",
           "freeze", "unfreeze", "GradualUnfreezing", "ReduceLROnPlateau",
           "LipschitzLR", "lipschitz_constant", "find_last_layer", "find_lr", "find_group_lrs", "FinderResult"]
