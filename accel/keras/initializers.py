"""Keras weight initializers: `Initializer()(shape, dtype)` returns an accel Tensor.

A seeded initializer (`seed=int`) gives the same values on every call, as in Keras 3; an unseeded one draws
from accel's global random stream (reproducible under `accel.random.set_seed`).
"""

from __future__ import annotations

import math

import numpy as np

import accel
from accel.keras.naming import to_snake_case


class Initializer:
    def __call__(self, shape, dtype=None):
        raise NotImplementedError

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % kv for kv in vars(self).items()))


def _shape(shape):
    return tuple(int(s) for s in shape)


def _dtype(dtype):
    return accel.as_dtype("float32" if dtype is None else dtype)


class Zeros(Initializer):
    def __call__(self, shape, dtype=None):
        return accel.zeros(_shape(shape), dtype=_dtype(dtype))


class Ones(Initializer):
    def __call__(self, shape, dtype=None):
        return accel.ones(_shape(shape), dtype=_dtype(dtype))


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=None):
        return accel.fill(_shape(shape), accel.cast(accel.constant(self.value), _dtype(dtype)))


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype=None):
        return accel.random.normal(_shape(shape), self.mean, self.stddev, dtype=_dtype(dtype), seed=self.seed)


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def __call__(self, shape, dtype=None):
        return accel.random.uniform(
            _shape(shape), self.minval, self.maxval, dtype=_dtype(dtype), seed=self.seed
        )


class TruncatedNormal(Initializer):
    """Normal samples redrawn outside two standard deviations of the mean."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype=None):
        return accel.random.truncated_normal(
            _shape(shape), self.mean, self.stddev, dtype=_dtype(dtype), seed=self.seed
        )


def compute_fans(shape):
    """(fan_in, fan_out) as Keras: a conv kernel (..., in, out) multiplies both by its receptive field."""
    shape = _shape(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


class VarianceScaling(Initializer):
    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        if scale <= 0:
            raise ValueError("VarianceScaling: scale must be positive, got %r" % (scale,))
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError("VarianceScaling: mode must be fan_in, fan_out or fan_avg, got %r" % (mode,))
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(
                "VarianceScaling: distribution must be truncated_normal, untruncated_normal or "
                "uniform, got %r" % (distribution,)
            )
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        dt = _dtype(dtype)
        if self.distribution == "truncated_normal":
            # the std of a unit normal truncated to [-2, 2], so the samples have the target variance
            stddev = math.sqrt(variance) / 0.87962566103423978
            return accel.random.truncated_normal(_shape(shape), 0.0, stddev, dtype=dt, seed=self.seed)
        if self.distribution == "untruncated_normal":
            return accel.random.normal(_shape(shape), 0.0, math.sqrt(variance), dtype=dt, seed=self.seed)
        limit = math.sqrt(3.0 * variance)
        return accel.random.uniform(_shape(shape), -limit, limit, dtype=dt, seed=self.seed)


class GlorotUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "uniform", seed)


class GlorotNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)


class HeNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "truncated_normal", seed)


class HeUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "uniform", seed)


class LecunNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "truncated_normal", seed)


class LecunUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "uniform", seed)


class Orthogonal(Initializer):
    """Keras 3's orthogonal initializer: Q of the QR decomposition of a normal matrix, signs fixed by diag(R)."""

    def __init__(self, gain=1.0, seed=None):
        self.gain, self.seed = gain, seed

    def __call__(self, shape, dtype=None):
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2:
            raise ValueError("Orthogonal: the shape must have rank >= 2, got %s" % (shape,))
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = accel.random.normal((max(rows, cols), min(rows, cols)), dtype=accel.float64, seed=self.seed)
        q, r = np.linalg.qr(np.asarray(a.numpy()))
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        dt = accel.as_dtype("float32" if dtype is None else dtype)
        return accel.constant((self.gain * q).reshape(shape), dtype=dt)


_CLASSES = (
    Zeros,
    Ones,
    Constant,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    VarianceScaling,
    GlorotUniform,
    GlorotNormal,
    HeNormal,
    HeUniform,
    LecunNormal,
    LecunUniform,
    Orthogonal,
)


_BY_NAME = {c.__name__: c for c in _CLASSES}
_BY_NAME.update({to_snake_case(c.__name__): c for c in _CLASSES})
_BY_NAME.update({"zero": Zeros, "one": Ones, "normal": RandomNormal, "uniform": RandomUniform})


def get(identifier):
    """An initializer from a name ('glorot_uniform', 'GlorotUniform'), a class, an instance or a callable."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        try:
            return _BY_NAME[identifier]()
        except KeyError:
            raise ValueError(
                "Unknown initializer %r; known names: %s" % (identifier, ", ".join(sorted(_BY_NAME)))
            ) from None
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(
        "Could not interpret initializer %r: expected a name, an Initializer or a callable" % (identifier,)
    )
