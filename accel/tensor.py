"""Tensor: an immutable wrapper of one backend array, with TensorFlow's Python protocol.

The operators call accel's ops (bound by `accel.ops` at import); no math lives here.
"""

from __future__ import annotations

import itertools
import numbers

import numpy as np

from accel import backend, dtypes
from accel.recorder import leaving as _warn_leaving_tape
from accel.recorder import hooks as _hooks
from accel.recorder import state as _rec_state

_next_id = itertools.count(1).__next__
_OPS = {}  # name -> op function, bound by bind_operators
_SCALARS = (np.generic, bool, int, float, complex)


class TensorShape(tuple):
    """A tuple of ints that also compares equal to lists and has TF's helpers."""

    def __eq__(self, other):
        if isinstance(other, (list, tuple)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    __hash__ = tuple.__hash__

    def as_list(self):
        if self.unknown_rank:
            raise ValueError("as_list() is not defined on an unknown TensorShape")
        return list(self)

    @property
    def rank(self):
        return None if self.unknown_rank else len(self)

    ndims = rank

    unknown_rank = False  # TensorShape(None): not even the rank is known (a TensorSpec's shape)

    def __new__(cls, dims=()):
        if dims is None:
            shape = super().__new__(cls, ())
            shape.unknown_rank = True
            return shape
        return super().__new__(cls, dims)

    def num_elements(self):
        if not self.is_fully_defined():
            return None
        n = 1
        for d in self:
            n *= d
        return n

    def is_fully_defined(self):
        return not self.unknown_rank and None not in self

    def is_compatible_with(self, other):
        """True when some shape matches both (None matches any size; an unknown rank matches any rank)."""
        other = other if isinstance(other, TensorShape) else TensorShape(other)
        if self.unknown_rank or other.unknown_rank:
            return True
        return len(self) == len(other) and all(a is None or b is None or a == b for a, b in zip(self, other))

    def __repr__(self):
        return "TensorShape(None)" if self.unknown_rank else "TensorShape(%s)" % list(self)

    def __str__(self):
        if self.unknown_rank:
            return "<unknown>"
        return "(" + ", ".join(str(d) for d in self) + ("," if len(self) == 1 else "") + ")"


class _WatchedShape(TensorShape):
    """The shape of a traced tensor inside accel.function: every dimension the Python code reads is noted
    on the trace (by index where it indexes one, else all of them), so that a plan derived for a new
    concrete shape is only used where the Python did not see a dimension that changed. len() (the rank)
    is not a read of a size."""

    def __new__(cls, dims, note):
        shape = super().__new__(cls, dims)
        shape._note = note
        return shape

    def _all(self):
        self._note(None)
        return TensorShape(tuple.__iter__(self))

    def __getitem__(self, i):
        if isinstance(i, slice):
            self._note(range(len(self))[i])
            return TensorShape(tuple.__getitem__(self, i))
        try:
            k = i.__index__()
        except AttributeError:
            self._note(None)
            return tuple.__getitem__(self, i)
        self._note((k % len(self),) if -len(self) <= k < len(self) else None)
        return tuple.__getitem__(self, k)

    def __iter__(self):
        self._note(None)
        return tuple.__iter__(self)

    def __reversed__(self):
        self._note(None)
        return reversed(tuple(tuple.__iter__(self)))

    def __eq__(self, other):
        return self._all() == other

    def __ne__(self, other):
        return self._all() != other

    def __hash__(self):
        return hash(self._all())

    def __lt__(self, other):
        return self._all() < other

    def __le__(self, other):
        return self._all() <= other

    def __gt__(self, other):
        return self._all() > other

    def __ge__(self, other):
        return self._all() >= other

    def __contains__(self, x):
        return x in self._all()

    def __add__(self, other):
        return self._all() + other

    def __radd__(self, other):
        return other + self._all()

    def __mul__(self, n):
        return self._all() * n

    __rmul__ = __mul__

    def count(self, x):
        return self._all().count(x)

    def index(self, *args):
        return self._all().index(*args)

    def as_list(self):
        return self._all().as_list()

    def num_elements(self):
        return self._all().num_elements()

    def is_compatible_with(self, other):
        return self._all().is_compatible_with(other)

    def __repr__(self):
        return repr(self._all())

    def __str__(self):
        return str(self._all())

    def __format__(self, spec):
        return format(self._all(), spec)

    def __reduce__(self):
        return (TensorShape, (tuple(self._all()),))

    def __copy__(self):
        return self._all()

    def __deepcopy__(self, memo):
        return self._all()


class TensorSpec:
    """The shape and dtype of a tensor, as tf.TensorSpec: `TensorSpec(shape=[None, 784], dtype=accel.float32)`.
    A None dimension matches any size; `shape=None` matches any shape."""

    __slots__ = ("_shape", "_dtype", "_name")

    def __init__(self, shape, dtype=dtypes.float32, name=None):
        if shape is not None:
            if isinstance(shape, (int, np.integer)):
                shape = (shape,)
            try:
                dims = tuple(None if d is None else int(d) for d in shape)
            except (TypeError, ValueError):
                raise TypeError("TensorSpec: shape must be a list of ints or None, got %r" % (shape,)) from None
            for d in dims:
                if d is not None and d < 0:
                    raise ValueError("TensorSpec: dimension %d of shape %r must be >= 0 or None" % (d, shape))
            shape = dims
        self._shape = TensorShape(shape)
        self._dtype = dtypes.as_dtype(dtype)
        self._name = name

    @classmethod
    def from_tensor(cls, tensor, name=None):
        return cls(tensor.shape, tensor.dtype, name)

    shape = property(lambda self: self._shape)
    dtype = property(lambda self: self._dtype)
    name = property(lambda self: self._name)

    def is_compatible_with(self, spec_or_tensor):
        other = spec_or_tensor
        if not isinstance(other, (TensorSpec, Tensor)):
            other = Tensor(to_array(other))
        return self._dtype == other.dtype and self._shape.is_compatible_with(other.shape)

    def __eq__(self, other):
        return (isinstance(other, TensorSpec) and self._dtype == other._dtype and self._name == other._name
                and self._shape.unknown_rank == other._shape.unknown_rank and tuple(self._shape) == tuple(other._shape))

    def __hash__(self):
        return hash((tuple(self._shape), self._shape.unknown_rank, self._dtype.name, self._name))

    def __repr__(self):
        return "TensorSpec(shape=%s, dtype=accel.%s, name=%r)" % (self._shape, self._dtype.name, self._name)


class Tensor:
    """An immutable n-dimensional array on the CPU (NumPy) or a GPU (CuPy).

    >>> x = accel.constant([1.0, 2.0]); (x * 2).numpy()
    array([2., 4.], dtype=float32)
    """

    __slots__ = ("_data", "_id", "__weakref__")
    __array_priority__ = 100  # NumPy defers `ndarray + Tensor` to Tensor.__radd__
    # what the recorder asks of an input (accel.recorder): a Variable overrides both
    _is_variable = False  # saved as a snapshot of its current array
    _trainable = False  # watched by a tape that watches accessed variables when an op reads it

    def __init__(self, data):
        # NumPy returns scalars (np.float32) from ufuncs and reductions on 0-d arrays; a tensor always
        # holds an array, so every path that makes one (ops, casts, Variable writes) gets 0-d right
        if type(data) is not np.ndarray and isinstance(data, _SCALARS):
            data = np.asarray(data)
        self._data = data
        self._id = _next_id()

    # --- properties ---------------------------------------------------------------------
    @property
    def shape(self) -> TensorShape:
        trace = _rec_state.trace if _hooks.active else None  # active: some thread traces, profiles or checks
        if trace is not None:
            note = trace.watch_shape(self)
            if note is not None:
                return _WatchedShape(self._data.shape, note)
        return TensorShape(self._data.shape)

    @property
    def dtype(self) -> dtypes.DType:
        return dtypes.from_numpy(self._data.dtype)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def device(self) -> str:
        return str(backend.device_of(self._data))

    @property
    def backing_device(self) -> str:
        return self.device

    def get_shape(self):
        return self.shape

    def numpy(self) -> np.ndarray:
        """A host NumPy array with this tensor's values (a copy from the GPU)."""
        _warn_leaving_tape(self, "numpy()")
        a = backend.to_numpy(self._data)
        return a if a.ndim else a[()]

    def ref(self):
        return _TensorRef(self)

    def experimental_ref(self):
        return _TensorRef(self)

    # --- Python protocol ----------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        _warn_leaving_tape(self, "__array__")
        a = backend.to_numpy(self._data)
        return a.astype(dtype, copy=False) if dtype is not None else a

    def __dlpack__(self, *args, **kwargs):
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def _scalar(self, what):
        if self._data.size != 1:
            raise TypeError(
                "%s: only a tensor with exactly one element converts to a Python scalar; "
                "this one has shape %s" % (what, tuple(self._data.shape))
            )
        _warn_leaving_tape(self, what)
        return backend.to_numpy(self._data).reshape(())[()]

    def __float__(self):
        return float(self._scalar("float()"))

    def __int__(self):
        return int(self._scalar("int()"))

    def __index__(self):
        if self.dtype.is_integer:
            return int(self._scalar("index"))
        raise TypeError("only an integer tensor can be used as an index, this one is %s" % self.dtype.name)

    def __bool__(self):
        return bool(self._scalar("bool()"))

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a scalar tensor")
        return self.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("cannot iterate over a scalar tensor")
        for i in range(self.shape[0]):
            yield self[i]

    def __hash__(self):
        raise TypeError("Tensor is unhashable (== compares elementwise). Use tensor.ref() as a key instead.")

    def __repr__(self):
        return "<accel.Tensor: shape=%s, dtype=%s, numpy=%s>" % (
            TensorShape(self._data.shape), self.dtype.name, _array_repr(self._data))

    def __str__(self):
        return "accel.Tensor(%s, shape=%s, dtype=%s)" % (
            np.array2string(backend.to_numpy(self._data)), TensorShape(self._data.shape), self.dtype.name)

    def __format__(self, spec):
        if self._data.ndim == 0:
            return format(backend.to_numpy(self._data)[()], spec)
        return format(str(self), spec)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return Tensor(self._data.copy())

    def __reduce__(self):
        return (_rebuild, (backend.to_numpy(self._data),))

    # --- operators (math in accel.ops) ---------------------------------------------------
    def __add__(self, other):
        return _OPS["add"](self, other)

    def __radd__(self, other):
        return _OPS["add"](other, self)

    def __sub__(self, other):
        return _OPS["subtract"](self, other)

    def __rsub__(self, other):
        return _OPS["subtract"](other, self)

    def __mul__(self, other):
        return _OPS["multiply"](self, other)

    def __rmul__(self, other):
        return _OPS["multiply"](other, self)

    def __truediv__(self, other):
        return _OPS["truediv"](self, other)

    def __rtruediv__(self, other):
        return _OPS["truediv"](other, self)

    def __floordiv__(self, other):
        return _OPS["floordiv"](self, other)

    def __rfloordiv__(self, other):
        return _OPS["floordiv"](other, self)

    def __mod__(self, other):
        return _OPS["mod"](self, other)

    def __rmod__(self, other):
        return _OPS["mod"](other, self)

    def __pow__(self, other):
        return _OPS["pow"](self, other)

    def __rpow__(self, other):
        return _OPS["pow"](other, self)

    def __matmul__(self, other):
        return _OPS["matmul"](self, other)

    def __rmatmul__(self, other):
        return _OPS["matmul"](other, self)

    def __neg__(self):
        return _OPS["negative"](self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _OPS["abs"](self)

    def __invert__(self):
        return _OPS["logical_not"](self)

    def __and__(self, other):
        return _OPS["logical_and"](self, other)

    def __rand__(self, other):
        return _OPS["logical_and"](other, self)

    def __or__(self, other):
        return _OPS["logical_or"](self, other)

    def __ror__(self, other):
        return _OPS["logical_or"](other, self)

    def __xor__(self, other):
        return _OPS["logical_xor"](self, other)

    def __eq__(self, other):
        return _OPS["equal"](self, other)

    def __ne__(self, other):
        return _OPS["not_equal"](self, other)

    def __lt__(self, other):
        return _OPS["less"](self, other)

    def __le__(self, other):
        return _OPS["less_equal"](self, other)

    def __gt__(self, other):
        return _OPS["greater"](self, other)

    def __ge__(self, other):
        return _OPS["greater_equal"](self, other)

    def __getitem__(self, key):
        return _OPS["getitem"](self, key)

    # TF-style conveniences
    def __array_namespace__(self, api_version=None):
        raise TypeError("accel tensors are not array-API arrays; call .numpy() first")


class _TensorRef:
    __slots__ = ("_t",)

    def __init__(self, t):
        self._t = t

    def deref(self):
        return self._t

    def __hash__(self):
        return self._t._id

    def __eq__(self, other):
        return isinstance(other, _TensorRef) and other._t is self._t


def _rebuild(a):
    return Tensor(backend.asarray_on(a, backend.current_device()))


def _array_repr(data):
    a = backend.to_numpy(data)
    if a.ndim == 0:
        return str(a[()])
    return np.array_repr(a)


# the forward arithmetic operators are the op functions themselves (one Python frame less on the hottest path)
_DIRECT_OPERATORS = {"__add__": "add", "__sub__": "subtract", "__mul__": "multiply", "__truediv__": "truediv",
                     "__matmul__": "matmul"}


def bind_operators(ops):
    """Connects Tensor's operators to the ops, {name: function}: Tensor sits below the ops, so accel's
    package init hands them over once they exist."""
    _OPS.update(ops)
    for method, name in _DIRECT_OPERATORS.items():
        setattr(Tensor, method, ops[name])


# --- conversion --------------------------------------------------------------------------


def _infer_dtype(value):
    """TensorFlow's dtype for Python and NumPy data: Python floats -> float32, ints -> int32."""
    if isinstance(value, (np.ndarray, np.generic)):
        dt = value.dtype
        if dt.kind == "f" or dt.kind == "b" or dt in (np.int32, np.int64, np.uint8, np.int8, np.int16):
            return dt
        if dt.kind in "iu":
            return np.dtype(np.int64)
        if dt.kind == "O":
            return None
        raise TypeError("dtype %s is not supported" % dt)
    if isinstance(value, bool):
        return np.dtype(np.bool_)
    if isinstance(value, numbers.Integral):
        return np.dtype(np.int32)
    if isinstance(value, numbers.Real):
        return np.dtype(np.float32)
    return None


def _nested_dtype(value):
    """Dtype of a (possibly nested) Python list, following TF: any float makes float32."""
    kinds = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, Tensor):
            return v._data.dtype
        elif isinstance(v, (np.ndarray, np.generic)):
            return v.dtype if v.dtype.kind == "f" else np.dtype(np.float32 if "f" in kinds else v.dtype)
        elif isinstance(v, bool):
            kinds.add("b")
        elif isinstance(v, numbers.Integral):
            kinds.add("i")
        elif isinstance(v, numbers.Real):
            kinds.add("f")
        else:
            raise TypeError(
                "convert_to_tensor: cannot convert an element of type %s (%r) to a tensor; "
                "expected numbers, nested lists of numbers, NumPy arrays or tensors" % (type(v).__name__, v))
    if "f" in kinds:
        return np.dtype(np.float32)
    if "i" in kinds:
        return np.dtype(np.int32)
    if "b" in kinds:
        return np.dtype(np.bool_)
    return np.dtype(np.float32)  # empty list


def to_array(value, dtype=None, device=None):
    """Backend array for `value` with TF's dtype inference, on `device` (default: the current one)."""
    dev = device or backend.current_device()
    if isinstance(value, Tensor):
        data = value._data
        if dtype is not None and data.dtype != dtype:
            raise TypeError("expected a %s tensor, got %s" % (np.dtype(dtype).name, data.dtype.name))
        return data
    if backend.is_cupy_array(value):
        data = value if dev.kind == "gpu" else backend.to_numpy(value)
        return data if dtype is None else data.astype(dtype, copy=False)
    if hasattr(type(value), "__tf_tensor__"):  # TF's conversion protocol (a KerasTensor refuses there)
        return to_array(value.__tf_tensor__(dtype, None), dtype, device)
    if dtype is None:
        dtype = _infer_dtype(value)
        if dtype is None:
            if isinstance(value, (list, tuple)):
                dtype = _nested_dtype(value)
                value = _unwrap_nested(value)
            else:
                raise TypeError(
                    "convert_to_tensor: cannot convert %s (%r) to a tensor; expected a number, a nested "
                    "list of numbers, a NumPy array or a tensor" % (type(value).__name__, value))
    elif isinstance(value, (list, tuple)):
        value = _unwrap_nested(value)
    try:
        arr = np.asarray(value, dtype=dtype) if dev.kind == "cpu" else backend.asarray_on(value, dev, dtype)
    except ValueError as e:
        raise ValueError("convert_to_tensor: %s (ragged nested lists are not tensors)" % e) from None
    if arr.dtype.kind == "O":
        raise TypeError("convert_to_tensor: %r does not convert to a numeric tensor" % (value,))
    if dev.kind == "cpu" and arr is value:
        arr = arr.copy()  # tensors never alias the caller's NumPy buffer
    return arr


def _unwrap_nested(value):
    if isinstance(value, Tensor):
        return backend.to_numpy(value._data)
    if isinstance(value, (list, tuple)):
        return [_unwrap_nested(v) for v in value]
    return value
