"""An lrkit schedule as a Keras 3 ``LearningRateSchedule``: ``to_keras(schedule)``.

``keras.optimizers.SGD(learning_rate=to_keras(schedule))`` trains with ``schedule(k)`` at update
``k``: Keras's optimizer calls its schedule with ``optimizer.iterations`` before incrementing it,
so the first update sees step 0, as in lrkit (``BaseOptimizer._get_current_learning_rate`` and
``apply``; https://keras.io/api/optimizers/learning_rate_schedules/). The value is computed by
the schedule itself, in numpy and float64, then handed to Keras in ``keras.backend.floatx()``;
lrkit never restates a formula in ``keras.ops``.

How the numpy value reaches each backend (``keras.backend.backend()`` chooses):

- torch: eagerly, ``keras.ops.convert_to_numpy(step)`` then the schedule; tested through
  ``model.fit``. Keras's torch backend trains eagerly unless the model is compiled with
  ``jit_compile=True``; under that ``torch.compile`` the values stay right, but dynamo traces
  into the numpy code and recompiles for each step until its recompile limit (16 steps of a
  one-weight model took about a minute on a CPU): leave ``jit_compile`` at its default there.
- jax (``jax.pure_callback``) and tensorflow (``tf.numpy_function``): a host callback, so the
  schedule also runs inside ``jax.jit`` / ``tf.function``, where the step is a traced value. A
  ``tf.numpy_function`` cannot be XLA-compiled: with TensorFlow, compile the model with
  ``jit_compile=False`` (Keras's ``"auto"`` turns XLA on when a GPU is present). These two
  branches are not covered by lrkit's tests, which run Keras on torch only; they were checked
  by hand once, on a CPU, with jax 0.10.2 and TensorFlow 2.21 (Keras 3.15.1): ``model.fit``
  with and without jit used ``schedule(k)`` at update ``k``, and XLA with TensorFlow failed as
  said. GPUs and TPUs are untested with every backend.

With ``gradient_accumulation_steps=n`` Keras passes the count of batches, not of updates (its
documented behaviour), so update ``j`` uses ``schedule(j * n + n - 1)``.

Saving: the class is registered as ``"lrkit>KerasSchedule"`` and its config is the schedule's
``to_dict()`` (rebuilt with ``Schedule.from_dict``, never ``eval``), so a model compiled with it
saves to ``.keras`` and loads back once ``lrkit.keras`` has been imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lrkit.schedules.base import Schedule, schedule_arg
from lrkit.validation import fail

try:
    import keras
except ModuleNotFoundError as err:  # pragma: no cover - depends on the environment
    missing = (err.name or "").partition(".")[0]
    if missing == "keras":
        raise ImportError("lrkit.keras needs Keras 3: pip install 'lrkit[keras]'") from err
    if missing in ("tensorflow", "jax", "torch"):  # the backend Keras was told to use
        raise ImportError(
            f"lrkit.keras: Keras's backend {missing!r} is not installed (Keras takes its backend from the "
            "environment variable KERAS_BACKEND, else from ~/.keras/keras.json, else tensorflow); set "
            "KERAS_BACKEND to an installed one of torch, jax, tensorflow before importing keras or lrkit.keras"
        ) from err
    raise

__all__ = ["KerasSchedule", "to_keras"]


@keras.saving.register_keras_serializable(package="lrkit")
class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A Keras ``LearningRateSchedule`` whose value at step ``k`` is ``schedule(k)``.

    See https://keras.io/api/optimizers/learning_rate_schedules/ for the protocol: ``__call__(step)``
    with the optimizer's iteration count, ``get_config``/``from_config`` for saving.
    """

    def __init__(self, schedule: Schedule):
        super().__init__()
        self.schedule = schedule_arg("KerasSchedule", "schedule", schedule)

    def _host_lr(self, step: Any) -> np.ndarray:
        return np.asarray(self.schedule(np.asarray(step)), dtype=_host_dtype())

    def __call__(self, step: Any) -> Any:
        step = keras.ops.convert_to_tensor(step)  # a Keras Variable (optimizer.iterations) -> its value
        backend = keras.backend.backend()
        if backend == "jax":
            import jax  # type: ignore[import,unused-ignore]

            value = jax.pure_callback(self._host_lr, jax.ShapeDtypeStruct((), _host_dtype()), step)
        elif backend == "tensorflow":
            import tensorflow as tf  # type: ignore[import,unused-ignore]

            value = tf.ensure_shape(tf.numpy_function(self._host_lr, [step], _host_dtype(), stateful=False), [])
        else:
            value = self._host_lr(keras.ops.convert_to_numpy(step))
        return keras.ops.cast(value, keras.backend.floatx())

    def get_config(self) -> dict[str, Any]:
        return {"schedule": self.schedule.to_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KerasSchedule:
        if not isinstance(config, dict) or "schedule" not in config:
            raise fail("KerasSchedule.from_config", "config", "a dict with a 'schedule' key", config)
        return cls(Schedule.from_dict(config["schedule"]))

    def __repr__(self) -> str:
        return f"KerasSchedule({self.schedule.to_spec()})"


def _host_dtype() -> str:
    """The numpy dtype the value leaves the host in: float64 if Keras's floatx is, else float32."""
    return "float64" if keras.backend.floatx() == "float64" else "float32"


def to_keras(schedule: Schedule) -> KerasSchedule:
    """`schedule` as a Keras 3 ``LearningRateSchedule``: ``keras.optimizers.SGD(learning_rate=to_keras(s))``
    uses ``s(k)`` at update ``k`` (``k`` from 0, ``optimizer.iterations``), on any optimizer."""
    return KerasSchedule(schedule_arg("to_keras", "schedule", schedule))
