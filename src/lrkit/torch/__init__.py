"""The PyTorch adapters: the only lrkit code that drives torch optimizers."""

from lrkit.torch.finder import FinderOptions, FinderResult, find_group_lrs, find_lr
from lrkit.torch.finder_check import CheckResult
from lrkit.torch.freezing import GradualUnfreezing, freeze, unfreeze
from lrkit.torch.groups import LayerGroup, discriminative_lrs, discriminative_param_groups, layer_groups
from lrkit.torch.lipschitz import LipschitzLR, find_last_layer, lipschitz_constant
from lrkit.torch.plateau import PlateauFactor, ReduceLROnPlateau
from lrkit.torch.scheduler import ScheduledLR

__all__ = ["CheckResult", "FinderOptions", "FinderResult", "GradualUnfreezing", "LayerGroup", "LipschitzLR",
           "PlateauFactor", "ReduceLROnPlateau", "ScheduledLR", "discriminative_lrs", "discriminative_param_groups",
           "find_group_lrs", "find_last_layer", "find_lr", "freeze", "layer_groups", "lipschitz_constant", "unfreeze"]
