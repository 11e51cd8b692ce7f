"""Learning-rate schedules as pure, torch-free functions of the step.

Every schedule is a frozen dataclass: ``sched(step) -> lr`` for a scalar step (a float) or a
numpy array of steps (an array), validated at construction, serialisable with
``to_dict``/``from_dict`` and as a textual spec (``to_spec``/`parse`). The lower-case names
are the public constructors; their parameters follow the framework that made each formula
known (PyTorch, TensorFlow/Keras, timm, the original papers). `from_hf` and `from_timm` build,
by name, the schedules of ``transformers.get_scheduler`` and ``timm``'s
``create_scheduler_v2`` as compositions of these (docs/schedules-by-name.md).
"""

from lrkit.schedules.base import Schedule, registered_names
from lrkit.schedules.combinators import (
    Clip,
    FromFunction,
    InEpochs,
    Join,
    Scale,
    Shift,
    Warmup,
    register_function,
)
from lrkit.schedules.cosine import SGDR, Cosine, CosineWave, LinearCosine, NoisyLinearCosine
from lrkit.schedules.cyclic import (
    ExpRange,
    OneCycle,
    OneCycleMomentum,
    SlantedTriangular,
    Triangular,
    Triangular2,
)
from lrkit.schedules.decay import (
    Constant,
    Exponential,
    InverseTime,
    MultiStepDecay,
    NaturalExp,
    Piecewise,
    Polynomial,
    StepDecay,
)
from lrkit.schedules.hf import HF_SCHEDULES, from_hf
from lrkit.schedules.shape import schedule_kind
from lrkit.schedules.spec import parse
from lrkit.schedules.templates import TEMPLATE_FIELDS, fill_template, template_fields
from lrkit.schedules.timm import TIMM_SCHEDULES, TimmCosine, TimmPoly, TimmTanh, from_timm, timm_warmup
from lrkit.schedules.transformer import WSD, InverseSqrt

from_dict = Schedule.from_dict

constant = Constant
step = StepDecay
multistep = MultiStepDecay
piecewise = Piecewise
exponential = Exponential
natural_exp = NaturalExp
inverse_time = InverseTime
polynomial = Polynomial
cosine = Cosine
cosine_wave = CosineWave
linear_cosine = LinearCosine
noisy_linear_cosine = NoisyLinearCosine
sgdr = SGDR
triangular = Triangular
triangular2 = Triangular2
exp_range = ExpRange
one_cycle = OneCycle
one_cycle_momentum = OneCycleMomentum
slanted_triangular = SlantedTriangular
inverse_sqrt = InverseSqrt
wsd = WSD
timm_cosine = TimmCosine
timm_tanh = TimmTanh
timm_poly = TimmPoly
warmup = Warmup
join = Join
scale = Scale
shift = Shift
clip = Clip
in_epochs = InEpochs
from_function = FromFunction
lambda_ = FromFunction

__all__ = [
    "HF_SCHEDULES",
    "TEMPLATE_FIELDS",
    "TIMM_SCHEDULES",
    "Schedule",
    "clip",
    "constant",
    "cosine",
    "cosine_wave",
    "exp_range",
    "exponential",
    "fill_template",
    "from_dict",
    "from_function",
    "from_hf",
    "from_timm",
    "in_epochs",
    "inverse_sqrt",
    "inverse_time",
    "join",
    "lambda_",
    "linear_cosine",
    "multistep",
    "natural_exp",
    "noisy_linear_cosine",
    "one_cycle",
    "one_cycle_momentum",
    "parse",
    "piecewise",
    "polynomial",
    "register_function",
    "registered_names",
    "scale",
    "schedule_kind",
    "sgdr",
    "shift",
    "slanted_triangular",
    "step",
    "template_fields",
    "timm_cosine",
    "timm_poly",
    "timm_tanh",
    "timm_warmup",
    "triangular",
    "triangular2",
    "warmup",
    "wsd",
]
