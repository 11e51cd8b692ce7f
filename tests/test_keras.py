"""lrkit.keras: an lrkit schedule as a Keras 3 LearningRateSchedule, on Keras's torch backend.

Values are checked against Keras's own built-ins, which compute in float32 (the dtype of
their ``initial_learning_rate`` tensor), so the tolerance is float32's: lrkit computes in
float64 and hands over float32.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

# No other test imports keras, so choosing its backend here cannot clash with another choice.
os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import lrkit.keras as lk  # noqa: E402
import lrkit.schedules as S  # noqa: E402
from lrkit.keras import KerasSchedule, to_keras  # noqa: E402

#: Keras's torch backend converts tensors with np.array(tensor), which numpy 2 warns about
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

KS = keras.optimizers.schedules
#: float32 tolerance: Keras's built-ins round every operation to float32 (measured worst: 5e-8)
ATOL, RTOL = 1e-7, 1e-6


def _steps(*boundaries: int) -> list[int]:
    """Steps 0..1600 every 37, plus both sides of each boundary."""
    near = {b + d for b in boundaries for d in (-1, 0, 1)}
    return sorted(set(range(0, 1600, 37)) | {0, 1, 2} | near)


#: id -> (Keras built-in, the lrkit schedule it should equal, steps to compare at)
BUILT_INS = {
    # the seeds' example: keras.io's ExponentialDecay with staircase
    "exponential_staircase": (KS.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.96, staircase=True),
                              S.exponential(0.1, 100, 0.96, staircase=True), _steps(100, 200, 1000)),
    "exponential": (KS.ExponentialDecay(0.1, 100, 0.96), S.exponential(0.1, 100, 0.96), _steps(100)),
    "piecewise": (KS.PiecewiseConstantDecay([100, 200], [0.1, 0.05, 0.01]),
                  S.piecewise([100, 200], [0.1, 0.05, 0.01]), _steps(100, 200)),
    "polynomial": (KS.PolynomialDecay(0.1, 100, end_learning_rate=0.001, power=2.0),
                   S.polynomial(0.1, 100, end_lr=0.001, power=2.0), _steps(100)),
    "polynomial_cycle": (KS.PolynomialDecay(0.1, 100, end_learning_rate=0.001, power=0.5, cycle=True),
                         S.polynomial(0.1, 100, end_lr=0.001, power=0.5, cycle=True), _steps(100, 200, 300)),
    "inverse_time": (KS.InverseTimeDecay(0.1, 100, 0.5), S.inverse_time(0.1, 100, 0.5), _steps(100)),
    "inverse_time_staircase": (KS.InverseTimeDecay(0.1, 100, 0.5, staircase=True),
                               S.inverse_time(0.1, 100, 0.5, staircase=True), _steps(100, 200)),
    "cosine": (KS.CosineDecay(0.1, 100, alpha=0.1), S.cosine(0.1, 100, alpha=0.1), _steps(100)),
    # Keras's warmup: linear from initial_learning_rate to warmup_target, then the cosine from there
    "cosine_warmup": (KS.CosineDecay(0.01, 100, alpha=0.1, warmup_target=0.1, warmup_steps=20),
                      S.warmup(S.cosine(0.1, 100, alpha=0.1), steps=20, start_lr=0.01), _steps(20, 120)),
    "sgdr": (KS.CosineDecayRestarts(0.1, 100, t_mul=2.0, m_mul=0.9, alpha=0.1),
             S.sgdr(0.1, 100, t_mul=2.0, m_mul=0.9, alpha=0.1), _steps(100, 300, 700, 1500)),
    "sgdr_t_mul_1": (KS.CosineDecayRestarts(0.1, 100, t_mul=1.0, m_mul=0.9, alpha=0.1),
                     S.sgdr(0.1, 100, t_mul=1.0, m_mul=0.9, alpha=0.1), _steps(100, 200, 300)),
    "sgdr_t_mul_3": (KS.CosineDecayRestarts(0.1, 10, t_mul=3.0), S.sgdr(0.1, 10, t_mul=3.0),
                     _steps(10, 40, 130, 400, 1210)),
}


def _iteration(k: int):
    """A step as the optimizer passes it: a tensor of `optimizer.iterations`' integer dtype."""
    return keras.ops.convert_to_tensor(k, dtype=keras.optimizers.SGD().iterations.dtype)


def _value(schedule, k: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(_iteration(k))))


@pytest.mark.parametrize("name", list(BUILT_INS))
def test_equals_the_keras_built_in(name):
    built_in, schedule, steps = BUILT_INS[name]
    ours = to_keras(schedule)
    expected = [_value(built_in, k) for k in steps]
    got = [_value(ours, k) for k in steps]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(got, schedule(np.asarray(steps)), rtol=1e-7, atol=1e-9)  # float32 of float64


def test_value_is_a_floatx_tensor():
    value = to_keras(S.cosine(0.1, 100))(_iteration(3))
    assert keras.ops.is_tensor(value)
    assert keras.backend.standardize_dtype(value.dtype) == keras.backend.floatx()
    assert tuple(value.shape) == ()


def _unit_gradient_model(optimizer):
    """A one-weight model whose loss has gradient exactly 1: each update subtracts the LR used."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=optimizer, loss=lambda y_true, y_pred: y_pred)
    return model


class _Record(keras.callbacks.Callback):
    """Per batch: the optimizer's iteration count, its learning rate and the weight before the batch."""

    def __init__(self):
        super().__init__()
        self.iterations, self.lrs, self.weights = [], [], []

    def _weight(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.layers[0].kernel)[0, 0])

    def on_train_batch_begin(self, batch, logs=None):
        self.iterations.append(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))
        self.lrs.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        self.weights.append(self._weight())

    def used_lrs(self) -> np.ndarray:
        """The LR each batch applied: the weight's decrease (the gradient is 1)."""
        return -np.diff([*self.weights, self._weight()])


def _fit(model, batches: int, epochs: int) -> _Record:
    record = _Record()
    x = np.ones((4 * batches, 1), dtype="float32")
    model.fit(x, np.zeros_like(x), batch_size=4, epochs=epochs, shuffle=False, verbose=0, callbacks=[record])
    return record


def test_model_fit_uses_schedule_k_at_update_k():
    """Keras reads the LR with `iterations` before incrementing it (BaseOptimizer.apply): the first
    update uses step 0, and the count runs on across epochs."""
    schedule = S.warmup(S.cosine(0.1, 10), steps=3, start_lr=0.01)  # a different value at every step
    record = _fit(_unit_gradient_model(keras.optimizers.SGD(learning_rate=to_keras(schedule))), batches=4, epochs=2)
    k = np.arange(8)
    assert record.iterations == list(k)
    np.testing.assert_allclose(record.lrs, schedule(k), rtol=1e-7)  # optimizer.learning_rate at batch k
    np.testing.assert_allclose(record.used_lrs(), schedule(k), atol=1e-7)  # what the update applied


def test_gradient_accumulation_passes_the_batch_count():
    """With gradient_accumulation_steps=n Keras calls the schedule with the batch count (its documented
    behaviour), so update j uses schedule(j*n + n - 1)."""
    schedule = S.exponential(0.1, 1, 0.8)
    optimizer = keras.optimizers.SGD(learning_rate=to_keras(schedule), gradient_accumulation_steps=2)
    record = _fit(_unit_gradient_model(optimizer), batches=6, epochs=1)
    used = record.used_lrs()
    np.testing.assert_allclose(used[1::2], schedule(np.array([1, 3, 5])), atol=1e-7)
    np.testing.assert_array_equal(used[0::2], 0.0)  # gradients accumulated, weights untouched


def test_config_round_trips_every_family(schedule_example):
    ours = to_keras(schedule_example)
    config = json.loads(json.dumps(ours.get_config()))
    assert config == {"schedule": schedule_example.to_dict()}
    assert KerasSchedule.from_config(config).schedule == schedule_example
    restored = KS.deserialize(json.loads(json.dumps(KS.serialize(ours))))
    assert isinstance(restored, KerasSchedule)
    assert restored.schedule == schedule_example
    for k in (0, 1, 57, 400):
        assert _value(restored, k) == _value(ours, k)


def test_serialize_names_the_registered_class():
    assert KS.serialize(to_keras(S.constant(0.1)))["registered_name"] == "lrkit>KerasSchedule"
    assert keras.saving.get_registered_object("lrkit>KerasSchedule") is KerasSchedule


def test_model_saves_and_loads_with_its_schedule(tmp_path):
    schedule = S.warmup(S.cosine(0.1, 100, alpha=0.1), steps=10, start_lr=0.0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=to_keras(schedule)), loss="mse")
    model.fit(np.ones((12, 3), "float32"), np.zeros((12, 1), "float32"), batch_size=4, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer._learning_rate, KerasSchedule)
    assert loaded.optimizer._learning_rate.schedule == schedule
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 3
    assert float(keras.ops.convert_to_numpy(loaded.optimizer.learning_rate)) == pytest.approx(schedule(3), rel=1e-7)


@pytest.mark.parametrize("bad", ["cosine(lr=0.1, decay_steps=10)", {"name": "cosine"}, None, 0.1])
def test_to_keras_refuses_anything_but_a_schedule(bad):
    with pytest.raises(ValueError, match=r"to_keras: schedule must be a schedule, got"):
        to_keras(bad)


@pytest.mark.parametrize("config", [{}, {"schedule": {"name": "no_such"}}, ["schedule"]])
def test_from_config_refuses_a_bad_config(config):
    with pytest.raises(ValueError, match=r"from_config|from_dict"):
        KerasSchedule.from_config(config)


def test_the_module_gets_the_real_keras():
    """`import keras` inside lrkit/keras.py is absolute: the framework, not the module itself."""
    assert lk.keras is sys.modules["keras"]
    assert lk.KerasSchedule.__mro__[1] is KS.LearningRateSchedule


def test_lrkit_and_its_schedules_never_import_keras():
    code = "import sys, lrkit, lrkit.schedules; assert 'keras' not in sys.modules, 'keras imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow is installed")
def test_a_missing_backend_is_named_in_the_import_error():
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, "-c", "import lrkit.keras"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError: lrkit.keras: Keras's backend 'tensorflow' is not installed" in result.stderr
    assert "set KERAS_BACKEND" in result.stderr
