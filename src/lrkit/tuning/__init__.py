"""`tune_lr`: the LR for a whole training run, bought with short real runs under successive halving.

`tune` holds the procedure, `plan` the budget arithmetic, `schedule` what a short run of a
schedule is, `runs` one trial, `result` the `TuneResult`.
"""

from lrkit.tuning.result import TuneResult, TuneTrial
from lrkit.tuning.tune import tune_lr

__all__ = ["TuneResult", "TuneTrial", "tune_lr"]
