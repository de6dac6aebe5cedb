"""Seeded random tensors: `accel.random.set_seed(0)` makes every stream reproducible per backend."""

from __future__ import annotations

import numpy as np

from accel import backend, recorder
from accel.dtypes import as_dtype
from accel.errors import InvalidArgumentError
from accel.ops.shape import gather
from accel.recorder import state as _rec
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
        shape = recorder.host_value(shape).tolist()
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


def _drawn(make):
    """A random draw; inside accel.function a host step that draws again on every call, as TF's stateful
    random ops do (make() runs now and on every replay)."""
    trace = _rec.trace
    return make() if trace is None else trace.host_value(make)


def normal(shape, mean=0.0, stddev=1.0, dtype=np.float32, seed=None, name=None):
    return _drawn(lambda: Generator._normal(_rng(seed), shape, mean, stddev, dtype, "normal"))


def uniform(shape, minval=0, maxval=None, dtype=np.float32, seed=None, name=None):
    return _drawn(lambda: Generator._uniform(_rng(seed), shape, minval, maxval, dtype, "uniform"))


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=np.float32, seed=None, name=None):
    """Normal samples redrawn until within two standard deviations of the mean."""
    return _drawn(lambda: _truncated(_rng(seed), shape, mean, stddev, dtype, "truncated_normal"))


def _truncated(g, shape, mean, stddev, dtype, fn):
    dt = _float_dtype(dtype, fn)
    shp = _shape(shape, fn)
    xp = backend.current_device().xp
    z = g.standard_normal(shp, dtype=np.float32 if dt == np.float16 else dt)
    bad = xp.abs(z) > 2
    while bool(bad.any()):
        z = xp.where(bad, g.standard_normal(shp, dtype=z.dtype), z)
        bad = xp.abs(z) > 2
    return Tensor((z * stddev + mean).astype(dt, copy=False))


def shuffle(value, seed=None, name=None):
    t = value if isinstance(value, Tensor) else Tensor(np.asarray(value))
    n = t._data.shape[0]
    perm = np.random.default_rng(None if seed is None else int(seed)).permutation(n)
    return gather(t, Tensor(backend.to_device(perm, backend.device_of(t._data))))


def _seed_pair(seed, fn):
    try:
        s = [int(v) for v in (recorder.host_value(seed).tolist() if isinstance(seed, Tensor) else seed)]
    except TypeError:
        raise ValueError("random.%s: seed must be a shape [2] integer tensor or pair, got %r" % (fn, seed)) from None
    if len(s) != 2:
        raise ValueError("random.%s: seed must have shape [2], got %d values" % (fn, len(s)))
    return s


def _stateless_rng(seed, fn):
    a, b = _seed_pair(seed, fn)
    return _new_rng(backend.current_device(), ((a & 0xFFFFFFFF) << 32) | (b & 0xFFFFFFFF))


def stateless_normal(shape, seed, mean=0.0, stddev=1.0, dtype=np.float32, name=None, alg="auto_select"):
    """Normal samples that depend only on `seed` (a pair): the same seed gives the same values on a device.
    The values are not TF's (TF uses its own Philox stream)."""
    return Generator._normal(_stateless_rng(seed, "stateless_normal"), shape, mean, stddev, dtype, "stateless_normal")


def stateless_uniform(shape, seed, minval=0, maxval=None, dtype=np.float32, name=None, alg="auto_select"):
    return Generator._uniform(_stateless_rng(seed, "stateless_uniform"), shape, minval, maxval, dtype,
                              "stateless_uniform")


class Generator:
    """tf.random.Generator: an independent random stream with its own state.

    `g = accel.random.Generator.from_seed(1); g.normal([2, 3])`. Streams are reproducible per seed and
    device, but they are not TF's bit for bit (TF's Philox counter layout is its own)."""

    def __init__(self, copy_from=None, state=None, alg=None):
        if copy_from is not None:
            self._seed = copy_from._seed
            self._counter = copy_from._counter
        elif state is not None:
            vals = [int(v) for v in np.asarray(state.numpy() if isinstance(state, Tensor) else state).ravel()]
            self._seed, self._counter = (vals + [0, 0])[:2]
        else:
            raise ValueError("random.Generator: use Generator.from_seed(seed) or "
                             "Generator.from_non_deterministic_state()")

    @classmethod
    def from_seed(cls, seed, alg=None):
        return cls(state=[int(seed), 0], alg=alg)

    @classmethod
    def from_non_deterministic_state(cls, alg=None):
        return cls(state=[int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1), 0], alg=alg)

    @classmethod
    def from_state(cls, state, alg=None):
        return cls(state=state, alg=alg)

    def reset_from_seed(self, seed):
        self._seed, self._counter = int(seed), 0

    @property
    def state(self):
        """[seed, number of draws]: Generator.from_state(g.state) makes the same draws g makes next."""
        return Tensor(np.array([self._seed, self._counter], np.int64))

    @property
    def algorithm(self):
        return 1  # Philox, as TF's default

    def _rng(self):
        # one stream per draw, keyed by (seed, draw count): Generator.from_state(g.state) continues g exactly
        g = _new_rng(backend.current_device(), (self._seed, self._counter))
        self._counter += 1
        return g

    @staticmethod
    def _normal(g, shape, mean, stddev, dtype, fn):
        dt = _float_dtype(dtype, fn)
        z = g.standard_normal(_shape(shape, fn), dtype=np.float32 if dt == np.float16 else dt)
        return Tensor((z * stddev + mean).astype(dt, copy=False))

    @staticmethod
    def _uniform(g, shape, minval, maxval, dtype, fn):
        dt = as_dtype(dtype).dtype
        shp = _shape(shape, fn)
        if dt.kind in "iu":
            if maxval is None:
                raise ValueError("random.%s: maxval is required for integer dtypes" % fn)
            if int(maxval) <= int(minval):
                raise InvalidArgumentError(None, None, "random.%s: need minval < maxval, got %r and %r"
                                           % (fn, minval, maxval))
            return Tensor(g.integers(int(minval), int(maxval), size=shp, dtype=dt))
        if dt.kind != "f":
            raise ValueError("random.%s: dtype must be a float or integer type, got %s" % (fn, dt))
        maxval = 1.0 if maxval is None else maxval
        u = g.random(shp, dtype=np.float32 if dt == np.float16 else dt)
        return Tensor((u * (maxval - minval) + minval).astype(dt, copy=False))

    def normal(self, shape, mean=0.0, stddev=1.0, dtype=np.float32, name=None):
        return _drawn(lambda: self._normal(self._rng(), shape, mean, stddev, dtype, "Generator.normal"))

    def uniform(self, shape, minval=0, maxval=None, dtype=np.float32, name=None):
        return _drawn(lambda: self._uniform(self._rng(), shape, minval, maxval, dtype, "Generator.uniform"))

    def truncated_normal(self, shape, mean=0.0, stddev=1.0, dtype=np.float32, name=None):
        return _drawn(lambda: _truncated(self._rng(), shape, mean, stddev, dtype, "Generator.truncated_normal"))

    def uniform_full_int(self, shape, dtype=np.int64, name=None):
        dt = as_dtype(dtype).dtype
        if dt.kind not in "iu":
            raise ValueError("random.Generator.uniform_full_int: dtype must be an integer type, got %s" % dt)
        info = np.iinfo(dt)
        return Tensor(self._rng().integers(info.min, info.max, size=_shape(shape), dtype=dt, endpoint=True))

    def make_seeds(self, count=1):
        """A [2, count] int64 tensor of seeds for the stateless functions."""
        return Tensor(np.asarray(self._rng().integers(0, 2**62, size=(2, int(count)), dtype=np.int64)))

    def split(self, count=1):
        """`count` new independent generators seeded from this one."""
        seeds = backend.to_numpy(self.make_seeds(count)._data)
        return [Generator(state=[int(seeds[0, i]), int(seeds[1, i]) % 2**31]) for i in range(int(count))]


_global_generator = None


def get_global_generator():
    global _global_generator
    if _global_generator is None:
        _global_generator = Generator.from_seed(_global_seed) if _global_seed is not None else \
            Generator.from_non_deterministic_state()
    return _global_generator


def set_global_generator(generator):
    global _global_generator
    _global_generator = generator
