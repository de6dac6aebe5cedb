"""Learning-rate schedules with Keras 3's formulas, computed in the initial rate's dtype (float32 for
Python floats, as Keras does) and returned as scalar tensors.

    lr = ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.96, staircase=True)
    float(lr(2500))   # 0.1 * 0.96 ** 2
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from accel import backend
from accel.tensor import Tensor


def _dtype_of(value):
    """Keras' convert_to_tensor dtype: float32 for Python floats, int32 for Python ints."""
    if isinstance(value, Tensor):
        return value._data.dtype
    if isinstance(value, (np.ndarray, np.generic)):
        return value.dtype
    if isinstance(value, bool):
        return np.dtype(np.bool_)
    return np.dtype(np.int32 if isinstance(value, int) else np.float32)


def _lr_dtype(value):
    """The dtype a schedule computes in: the initial rate's float dtype, float32 for Python numbers."""
    dt = _dtype_of(value)
    return dt if dt.kind == "f" else np.dtype(np.float32)


def _scalar(value, dtype):
    if isinstance(value, Tensor):
        value = backend.to_numpy(value._data)
    return np.asarray(value).astype(dtype)[()]


def _out(value, dtype):
    return Tensor(np.asarray(value, dtype=dtype))


class LearningRateSchedule:
    """Base class: subclasses implement `__call__(step)` and `get_config()` (a schedule declared with
    @_dataclass has its constructor arguments as its config)."""

    def __call__(self, step):
        raise NotImplementedError(
            "Learning rate schedule '%s' must override `__call__(self, step)`." % type(self).__name__
        )

    def get_config(self):
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        raise NotImplementedError(
            "Learning rate schedule '%s' must override `get_config()` in order to be "
            "serializable." % type(self).__name__
        )

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# A schedule whose constructor arguments are stored as attributes of the same names: the dataclass
# writes __init__, and LearningRateSchedule.get_config returns the fields. Equality and hashing stay by
# identity and repr stays object's, as in Keras.
_dataclass = dataclasses.dataclass(eq=False, repr=False)


def _check_steps(name, value):
    if value <= 0:
        raise ValueError("Argument `%s` must be > 0. Received: %s=%s" % (name, name, value))


@_dataclass
class _RateDecay(LearningRateSchedule):
    """The decays of initial_learning_rate by decay_rate over step / decay_steps (floored with staircase)."""

    initial_learning_rate: float
    decay_steps: int
    decay_rate: float
    staircase: bool = False
    name: str | None = None

    def __post_init__(self):
        _check_steps("decay_steps", self.decay_steps)
        self.name = self.name or type(self).__name__

    def _progress(self, step, dt):
        p = _scalar(step, dt) / _scalar(self.decay_steps, dt)
        return np.floor(p) if self.staircase else p



class ExponentialDecay(_RateDecay):
    """initial_learning_rate * decay_rate ^ (step / decay_steps); staircase: the exponent is floored."""

    def __call__(self, step):
        dt = _lr_dtype(self.initial_learning_rate)
        p = self._progress(step, dt)
        return _out(_scalar(self.initial_learning_rate, dt) * _scalar(self.decay_rate, dt) ** p, dt)


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[i] while boundaries[i-1] < step <= boundaries[i],
    values[-1] after the last boundary."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of values. Received: "
                "boundaries=%s of length %d, and values=%s of length %d."
                % (boundaries, len(boundaries), values, len(values))
            )
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step):
        step = _scalar(step, _dtype_of(step))
        i = 0
        while i < len(self.boundaries) and step > self.boundaries[i]:
            i += 1
        dt = _dtype_of(self.values[0])
        return _out(_scalar(self.values[i], dt), dt)

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


@_dataclass
class PolynomialDecay(LearningRateSchedule):
    """(initial - end) * (1 - min(step, decay_steps) / decay_steps) ^ power + end; with cycle, decay_steps
    grows to the first multiple of itself that is >= step."""

    initial_learning_rate: float
    decay_steps: int
    end_learning_rate: float = 0.0001
    power: float = 1.0
    cycle: bool = False
    name: str = "PolynomialDecay"

    def __post_init__(self):
        _check_steps("decay_steps", self.decay_steps)

    def __call__(self, step):
        dt = _lr_dtype(self.initial_learning_rate)
        lr0 = _scalar(self.initial_learning_rate, dt)
        end = _scalar(self.end_learning_rate, dt)
        s = _scalar(step, dt)
        steps = _scalar(self.decay_steps, dt)
        if self.cycle:
            steps = steps * (dt.type(1) if s == 0 else np.ceil(s / steps))
        else:
            s = min(s, steps)
        p = s / steps
        return _out((lr0 - end) * (dt.type(1) - p) ** _scalar(self.power, dt) + end, dt)



class InverseTimeDecay(_RateDecay):
    """initial_learning_rate / (1 + decay_rate * step / decay_steps); staircase floors step / decay_steps."""

    def __call__(self, step):
        dt = _lr_dtype(self.initial_learning_rate)
        denom = dt.type(1) + _scalar(self.decay_rate, dt) * self._progress(step, dt)
        return _out(_scalar(self.initial_learning_rate, dt) / denom, dt)


@_dataclass
class CosineDecay(LearningRateSchedule):
    """Optional linear warmup from initial_learning_rate to warmup_target over warmup_steps, then
    from_lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(s, decay_steps) / decay_steps)) + alpha), where
    from_lr is warmup_target (or initial_learning_rate without warmup) and s counts steps after warmup."""

    initial_learning_rate: float
    decay_steps: int
    alpha: float = 0.0
    name: str = "CosineDecay"
    warmup_target: float | None = None
    warmup_steps: int = 0

    def __post_init__(self):
        _check_steps("decay_steps", self.decay_steps)

    def _decay(self, step, decay_steps, from_lr, dt):
        cosine = 0.5 * (1.0 + np.cos(dt.type(math.pi) * (step / decay_steps)))
        return from_lr * ((1 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        dt = _lr_dtype(self.initial_learning_rate)
        lr0 = _scalar(self.initial_learning_rate, dt)
        steps = _scalar(self.decay_steps, dt)
        s = _scalar(step, dt)
        if self.warmup_target is None:
            return _out(self._decay(min(s, steps), steps, lr0, dt), dt)
        target = _scalar(self.warmup_target, dt)
        warmup = _scalar(self.warmup_steps, dt)
        s = min(s, steps + warmup)
        if s < warmup:
            return _out((target - lr0) * (s / warmup) + lr0, dt)
        return _out(self._decay(s - warmup, steps, target, dt), dt)



@_dataclass
class CosineDecayRestarts(LearningRateSchedule):
    """SGDR: cosine decay from 1 to alpha over first_decay_steps, then restarts; period i lasts
    first_decay_steps * t_mul^i steps and starts at m_mul^i times the initial rate."""

    initial_learning_rate: float
    first_decay_steps: int
    t_mul: float = 2.0
    m_mul: float = 1.0
    alpha: float = 0.0
    name: str = "SGDRDecay"

    def __post_init__(self):
        _check_steps("first_decay_steps", self.first_decay_steps)

    def __call__(self, step):
        dt = _lr_dtype(self.initial_learning_rate)
        one = dt.type(1)
        alpha = _scalar(self.alpha, dt)
        t_mul = _scalar(self.t_mul, dt)
        m_mul = _scalar(self.m_mul, dt)
        frac = _scalar(step, dt) / _scalar(self.first_decay_steps, dt)
        if t_mul == 1:
            i_restart = np.floor(frac)
            frac = frac - i_restart
        else:
            i_restart = np.floor(np.log(one - frac * (one - t_mul)) / np.log(t_mul))
            sum_r = (one - t_mul**i_restart) / (one - t_mul)
            frac = (frac - sum_r) / t_mul**i_restart
        cosine = 0.5 * m_mul**i_restart * (1.0 + np.cos(dt.type(math.pi) * frac))
        return _out(_scalar(self.initial_learning_rate, dt) * ((one - alpha) * cosine + alpha), dt)


_BUILTIN = {
    c.__name__: c
    for c in (
        ExponentialDecay,
        PiecewiseConstantDecay,
        PolynomialDecay,
        InverseTimeDecay,
        CosineDecay,
        CosineDecayRestarts,
    )
}


def keras_form(module, obj):
    """Keras' serialized form of obj (a schedule or an optimizer): {"module", "class_name", "config",
    "registered_name"}."""
    return {"module": module, "class_name": type(obj).__name__, "config": obj.get_config(), "registered_name": None}


def serialize(learning_rate_schedule):
    """Keras' serialized form: {"module", "class_name", "config", "registered_name"}."""
    return keras_form("keras.optimizers.schedules", learning_rate_schedule)


def deserialize(config, custom_objects=None):
    """The schedule serialize() (or Keras) described; custom_objects maps class names to classes."""
    name = config.get("class_name")
    cls = (custom_objects or {}).get(name) or _BUILTIN.get(name)
    if cls is None:
        raise ValueError(
            "Unknown learning rate schedule %r; known: %s (pass custom_objects for others)"
            % (name, sorted(_BUILTIN))
        )
    return cls.from_config(config["config"])
