"""TensorFlow-style dtype constants (`accel.float32`, ...) that compare equal to NumPy dtypes."""

from __future__ import annotations

import numpy as np


class DType:
    """A tensor element type. `accel.float32 == np.float32 == "float32"` all hold."""

    __slots__ = ("dtype", "name")

    def __init__(self, np_dtype):
        self.dtype = np.dtype(np_dtype)  # np.dtype(DType) works through this attribute
        self.name = "bool" if self.dtype == np.bool_ else self.dtype.name

    @property
    def as_numpy_dtype(self):
        return self.dtype.type

    @property
    def is_floating(self) -> bool:
        return self.dtype.kind == "f" or self.name == "bfloat16"

    @property
    def is_integer(self) -> bool:
        return self.dtype.kind in "iu"

    @property
    def is_bool(self) -> bool:
        return self.dtype.kind == "b"

    @property
    def base_dtype(self):
        return self

    @property
    def size(self) -> int:
        return self.dtype.itemsize

    @property
    def min(self):
        return np.finfo(self.dtype).min if self.is_floating else np.iinfo(self.dtype).min

    @property
    def max(self):
        return np.finfo(self.dtype).max if self.is_floating else np.iinfo(self.dtype).max

    def __eq__(self, other):
        if isinstance(other, DType):
            return self.dtype == other.dtype
        try:
            return self.dtype == np.dtype(other)
        except TypeError:
            return False

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(self.dtype)

    def __repr__(self):
        return "accel." + self.name

    __str__ = __repr__


float16 = half = DType(np.float16)
float32 = DType(np.float32)
float64 = double = DType(np.float64)
int8 = DType(np.int8)
int16 = DType(np.int16)
int32 = DType(np.int32)
int64 = DType(np.int64)
uint8 = DType(np.uint8)
bool_ = DType(np.bool_)

try:  # bfloat16 is ml_dtypes' NumPy extension type (pip install ml_dtypes; TensorFlow and JAX ship it)
    import ml_dtypes as _ml_dtypes
except ImportError:  # accel.bfloat16 does not exist without it
    _ml_dtypes = None
_EXTRA = ()
if _ml_dtypes is not None:
    bfloat16 = DType(_ml_dtypes.bfloat16)
    _EXTRA = (bfloat16,)

_BY_NUMPY = {d.dtype: d for d in (float16, float32, float64, int8, int16, int32, int64, uint8, bool_) + _EXTRA}
_NAMES = {d.name: d for d in _BY_NUMPY.values()}


def as_dtype(value) -> DType:
    """Converts a DType, NumPy dtype or type, or a name such as 'float32' to a DType."""
    if isinstance(value, DType):
        return value
    if value is float:
        return float32
    if value is int:
        return int32
    if value is bool:
        return bool_
    try:
        nd = np.dtype(value)
    except TypeError:
        raise TypeError("dtype: expected an accel/NumPy dtype or its name, got %r" % (value,)) from None
    d = _BY_NUMPY.get(nd)
    if d is None:
        raise TypeError("dtype: %s is not supported (supported: %s)" % (nd, ", ".join(sorted(_NAMES))))
    return d


def from_numpy(nd) -> DType:
    d = _BY_NUMPY.get(nd)
    return d if d is not None else as_dtype(nd)
