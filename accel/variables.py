"""Variable: trainable, mutable state. Assignments are in place and never recorded on a tape."""

from __future__ import annotations

import sys

import numpy as np

from accel import backend, sites
from accel._readonly import read_only
from accel.dtypes import as_dtype
from accel.errors import InvalidArgumentError
from accel.ops.core import apply, defop
from accel.recorder import note_exit, state as _rec
from accel.tensor import Tensor, TensorShape, to_array


class Variable(Tensor):
    """A mutable tensor that GradientTape watches automatically when trainable.

    >>> w = accel.Variable([1.0, 2.0], name="w")
    >>> w.assign_sub([0.5, 0.5]).numpy()
    array([0.5, 1.5], dtype=float32)
    """

    __slots__ = ("_trainable", "_name", "_aggregation", "_constraint", "_site")
    _is_variable = True

    def __init__(self, initial_value=None, trainable=True, name=None, dtype=None, shape=None,
                 constraint=None, synchronization=None, aggregation=None, validate_shape=True,
                 caching_device=None, import_scope=None, experimental_enable_variable_lifting=None):
        if initial_value is None:
            raise ValueError("Variable: initial_value must be given")
        if _rec.trace is not None:
            _rec.trace.variable_created()
        if callable(initial_value) and not isinstance(initial_value, Tensor):
            initial_value = initial_value()
        dt = None if dtype is None else as_dtype(dtype).dtype
        if isinstance(initial_value, Tensor):
            data = initial_value._data
            data = data.astype(dt) if dt is not None and data.dtype != dt else data.copy()
        else:
            data = to_array(initial_value, dt)
            if data is initial_value:
                data = data.copy()
        if type(data) is np.ndarray and not data.flags.writeable:
            data = data.copy()
        super().__init__(data)
        self._trainable = bool(trainable) if data.dtype.kind == "f" else bool(trainable) and False
        self._name = name or "Variable"  # as in TF eager, names need not be unique
        scopes = sys.modules.get("accel.module")  # no name_scope can be open before accel.module loads
        if scopes is not None:
            self._name = scopes.current_name_scope() + self._name
        self._constraint = constraint
        self._aggregation = aggregation
        self._site = sites.user_site()  # where it was created, for gradient diagnostics
        dist = sys.modules.get("accel.distribute")  # under a strategy's scope new variables are mirrored
        if dist is not None:
            dist.variable_created(self)

    # --- metadata -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name + ":0"

    trainable = read_only("_trainable")
    constraint = read_only("_constraint")

    @property
    def handle(self):
        return self

    @property
    def initial_value(self):
        return Tensor(self._data.copy())

    def value(self):
        return self.read_value()

    def read_value(self):
        """A snapshot of the current value; later assignments do not change it. An op, so a tape passes
        gradients through it to the variable and accel.function reads the variable on every call."""
        return apply(_read_value, (self,))

    def get_shape(self):
        return TensorShape(self._data.shape)

    def numpy(self):
        """A copy of the current value (later assignments do not change it)."""
        if _rec.tapes:
            note_exit(self, "Variable.numpy()")
        a = backend.to_numpy(self._data)
        a = a.copy() if a is self._data else a
        return a if a.ndim else a[()]

    def __repr__(self):
        return "<accel.Variable '%s' shape=%s dtype=%s, numpy=%s>" % (
            self.name, TensorShape(self._data.shape), self.dtype.name,
            np.array_repr(backend.to_numpy(self._data)) if self._data.ndim else repr(backend.to_numpy(self._data)[()]))

    def __deepcopy__(self, memo):
        return Variable(self._data.copy(), trainable=self._trainable, name=self._name)

    def __hash__(self):
        return id(self)

    def ref(self):
        return self

    def deref(self):
        return self

    def _snapshot(self):
        """A Tensor holding the current array under this variable's id: what a tape saves for the
        backward pass, so a later assign does not change it (accel.recorder.record)."""
        t = Tensor.__new__(Tensor)
        t._data = self._data
        t._id = self._id
        return t

    # --- assignment ------------------------------------------------------------------------
    def _coerce(self, value, what):
        if isinstance(value, Tensor):
            data = value._data
            if data.dtype != self._data.dtype:
                raise InvalidArgumentError(None, None, "%s: variable %s has dtype %s, value has dtype %s"
                                           % (what, self.name, self._data.dtype, data.dtype))
            if type(data) is not type(self._data):
                data = backend.to_device(data, backend.device_of(self._data))
        else:
            try:
                data = backend.asarray_on(value, backend.device_of(self._data))
            except (ValueError, TypeError) as e:
                raise ValueError("%s: cannot convert %r to a value for variable %s (%s %s): %s"
                                 % (what, value, self.name, self._data.dtype, tuple(self._data.shape), e)) from None
            if data.dtype.kind in "USOV":
                raise TypeError("%s: %r is not numeric; variable %s holds %s %s"
                                % (what, value, self.name, self._data.dtype, tuple(self._data.shape)))
            if data.dtype.kind == "f" and self._data.dtype.kind in "iub":
                raise InvalidArgumentError(None, None, "%s: variable %s has dtype %s, value has dtype %s"
                                           % (what, self.name, self._data.dtype, data.dtype))
            data = data.astype(self._data.dtype, copy=False)
        if tuple(data.shape) != tuple(self._data.shape):
            raise ValueError("%s: cannot assign a value of shape %s to variable %s of shape %s"
                             % (what, tuple(data.shape), self.name, tuple(self._data.shape)))
        return data

    def _write(self, new):
        if type(new) is not type(self._data):
            new = np.asarray(new)  # a 0-d NumPy sum (self._data + delta) is a NumPy scalar
        if _rec.tapes:
            self._warn_if_watched()
            # a tape may hold the current array for its backward pass: give it a fresh one
            self._data = new.copy() if new is self._data else new
            if not self._data.flags.c_contiguous:
                self._data = self._data.copy()
        else:
            xp = backend.xp_of(self._data)
            xp.copyto(self._data, new)

    def assign(self, value, use_locking=None, name=None, read_value=True):
        data = self._coerce(value, "assign")
        if _rec.trace is not None:
            _rec.trace.assign(self, "assign", value if isinstance(value, Tensor) else data)
        self._write(data if data is not self._data else data.copy())
        return self if read_value else None

    # what an accel.function plan runs for a recorded assign (the value is an array of the right
    # dtype and shape: the trace checked it)
    def _assign_assign(self, a):
        np.copyto(self._data, a)

    def _assign_add(self, a):
        np.add(self._data, a, out=self._data)

    def _assign_sub(self, a):
        np.subtract(self._data, a, out=self._data)

    def _warn_if_watched(self):
        for t in _rec.tapes:
            if t._recording and self._id in t._tracked:
                sites.warn_once(
                    "assigning to Variable %r while a GradientTape watches it: assignments are not "
                    "differentiable, so the path through the new value is cut (apply updates after the "
                    "`with` block)" % self.name)
                return

    def assign_add(self, delta, use_locking=None, name=None, read_value=True):
        data = self._coerce(delta, "assign_add")
        if _rec.trace is not None:
            _rec.trace.assign(self, "add", delta if isinstance(delta, Tensor) else data)
        if _rec.tapes:
            self._write(self._data + data)
        else:
            self._data += data
        return self if read_value else None

    def assign_sub(self, delta, use_locking=None, name=None, read_value=True):
        data = self._coerce(delta, "assign_sub")
        if _rec.trace is not None:
            _rec.trace.assign(self, "sub", delta if isinstance(delta, Tensor) else data)
        if _rec.tapes:
            self._write(self._data - data)
        else:
            self._data -= data
        return self if read_value else None

    def scatter_nd_update(self, indices, updates):
        raise NotImplementedError("Variable.scatter_nd_update is not supported yet")


_read_value = defop("read_value", lambda xp, x: x.copy(), lambda F, g, out, x: g, save="none")
