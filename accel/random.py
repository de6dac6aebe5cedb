"""Seeded random tensors: `accel.random.set_seed(0)` makes every stream reproducible per backend."""

from __future__ import annotations

import numpy as np

from accel import backend
from accel.dtypes import as_dtype
from accel.errors import InvalidArgumentError
from accel.tensor import Tensor

_global_seed = None
_generators = {}  # device -> generator for the global stream


def set_seed(seed):
    """Resets every device's global random stream to `seed` (as tf.random.set_seed)."""
    global _global_seed
    _global_seed = None if seed is None else int(seed)
    _generators.clear()


def _rng(seed):
    dev = backend.current_device()
    if seed is not None:
        s = (int(seed), _global_seed or 0)
        return _new_rng(dev, s)
    g = _generators.get(dev)
    if g is None:
        g = _generators[dev] = _new_rng(dev, _global_seed)
    return g


def _new_rng(dev, seed):
    if dev.kind == "cpu":
        return np.random.default_rng(seed)
    cp = backend.cupy()
    if isinstance(seed, tuple):
        seed = seed[0] * 1_000_003 + seed[1]
    return cp.random.default_rng(seed)


def _shape(shape, fn="random"):
    if isinstance(shape, Tensor):
        shape = shape.numpy().tolist()
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise InvalidArgumentError(None, None, "random.%s: shape %s has a negative dimension" % (fn, list(shape)))
    return shape


def _float_dtype(dtype, fn):
    dt = as_dtype(dtype).dtype
    if dt.kind != "f":
        raise ValueError("random.%s: dtype must be a float type, got %s" % (fn, dt))
    return dt


def normal(shape, mean=0.0, stddev=1.0, dtype=np.float32, seed=None, name=None):
    dt = _float_dtype(dtype, "normal")
    z = _rng(seed).standard_normal(_shape(shape, "normal"), dtype=np.float32 if dt == np.float16 else dt)
    return Tensor((z * stddev + mean).astype(dt, copy=False))


def uniform(shape, minval=0, maxval=None, dtype=np.float32, seed=None, name=None):
    dt = as_dtype(dtype).dtype
    g = _rng(seed)
    if dt.kind in "iu":
        if maxval is None:
            raise ValueError("random.uniform: maxval is required for integer dtypes")
        return Tensor(g.integers(int(minval), int(maxval), size=_shape(shape, "uniform"), dtype=dt))
    maxval = 1.0 if maxval is None else maxval
    u = g.random(_shape(shape, "uniform"), dtype=np.float32 if dt == np.float16 else dt)
    return Tensor((u * (maxval - minval) + minval).astype(dt, copy=False))


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=np.float32, seed=None, name=None):
    """Normal samples redrawn until within two standard deviations of the mean."""
    dt = _float_dtype(dtype, "truncated_normal")
    shp = _shape(shape, "truncated_normal")
    g = _rng(seed)
    xp = backend.current_device().xp
    z = g.standard_normal(shp, dtype=np.float32 if dt == np.float16 else dt)
    bad = xp.abs(z) > 2
    while bool(bad.any()):
        z = xp.where(bad, g.standard_normal(shp, dtype=z.dtype), z)
        bad = xp.abs(z) > 2
    return Tensor((z * stddev + mean).astype(dt, copy=False))


def shuffle(value, seed=None, name=None):
    from accel.ops.shape import gather  # noqa: PLC0415

    t = value if isinstance(value, Tensor) else Tensor(np.asarray(value))
    n = t._data.shape[0]
    perm = np.random.default_rng(None if seed is None else int(seed)).permutation(n)
    return gather(t, Tensor(backend.to_device(perm, backend.device_of(t._data))))
