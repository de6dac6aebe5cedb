"""Creating tensors: constant, zeros, ones, fill, range, eye, linspace, one_hot; shape queries."""

from __future__ import annotations

import numpy as np

from accel import backend, recorder
from accel.dtypes import as_dtype
from accel.errors import InvalidArgumentError
from accel.ops.core import apply, convert, defop
from accel.tensor import Tensor, to_array


def _np_dtype(dtype):
    return None if dtype is None else as_dtype(dtype).dtype


def _shape_arg(shape, opname):
    if isinstance(shape, Tensor):
        shape = recorder.host_value(shape).tolist()
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError("%s: shape must be a list of ints, got %r" % (opname, shape)) from None
    if any(s < 0 for s in shape):
        raise InvalidArgumentError(None, None, "%s: shape %s has a negative dimension" % (opname, list(shape)))
    return shape


def constant(value, dtype=None, shape=None, name=None):
    """A tensor from Python or NumPy data; Python floats become float32, Python ints int32."""
    dt = _np_dtype(dtype)
    if isinstance(value, Tensor):
        t = value if dt is None or value._data.dtype == dt else Tensor(value._data.astype(dt))
        return t if shape is None else Tensor(t._data.reshape(_shape_arg(shape, "constant")))
    if dt is not None and dt.kind in "iub" and not isinstance(value, (np.ndarray, np.generic)):
        try:
            probe = np.asarray(value)
        except ValueError:
            probe = None
        if probe is not None and probe.dtype.kind == "f" and not np.all(probe == np.trunc(probe)):
            raise TypeError("constant: cannot convert %r to a tensor of dtype %s without losing the fraction"
                            % (value, dt))
    data = to_array(value, dt)
    if shape is not None:
        shape = _shape_arg(shape, "constant")
        xp = backend.xp_of(data)
        if data.size == 1:
            data = xp.full(shape, data.reshape(()), data.dtype)
        elif data.size == int(np.prod(shape)):
            data = data.reshape(shape)
        else:
            raise InvalidArgumentError(None, None, "constant: %d values cannot fill shape %s"
                                       % (data.size, list(shape)))
    return Tensor(data)


def convert_to_tensor(value, dtype=None, dtype_hint=None, name=None):
    if isinstance(value, Tensor):
        if dtype is not None and value._data.dtype != as_dtype(dtype).dtype:
            raise ValueError("convert_to_tensor: requested dtype %s for a tensor of dtype %s"
                             % (as_dtype(dtype).name, value.dtype.name))
        if value._is_variable:
            return value.read_value()
        return value
    if hasattr(value, "indices") and hasattr(value, "dense_shape"):  # IndexedSlices
        return convert(value)
    if dtype is None and dtype_hint is not None and not isinstance(value, (np.ndarray, np.generic)):
        try:
            return Tensor(to_array(value, _np_dtype(dtype_hint)))
        except (TypeError, ValueError):
            pass
    return Tensor(to_array(value, _np_dtype(dtype)))


def _xp():
    return backend.current_device().xp


def zeros(shape, dtype=np.float32, name=None, layout=None):
    return Tensor(_xp().zeros(_shape_arg(shape, "zeros"), _np_dtype(dtype)))


def ones(shape, dtype=np.float32, name=None, layout=None):
    return Tensor(_xp().ones(_shape_arg(shape, "ones"), _np_dtype(dtype)))


def fill(dims, value, name=None):
    v = convert(value)
    xp = backend.xp_of(v._data)
    return Tensor(xp.full(_shape_arg(dims, "fill"), v._data.reshape(()), v._data.dtype))


_ones_like = defop("ones_like", lambda xp, x: xp.ones_like(x), save="none")  # the tape's seed on a higher-order pass


def zeros_like(input, dtype=None, name=None, layout=None):  # noqa: A002
    x = convert(input)
    xp = backend.xp_of(x._data)
    return Tensor(xp.zeros(x._data.shape, _np_dtype(dtype) or x._data.dtype))


def ones_like(input, dtype=None, name=None, layout=None):  # noqa: A002
    x = convert(input)
    xp = backend.xp_of(x._data)
    return Tensor(xp.ones(x._data.shape, _np_dtype(dtype) or x._data.dtype))


def range(start, limit=None, delta=1, dtype=None, name="range"):  # noqa: A001
    """Like Python's range (TF's tf.range); ints give int32, floats float32."""
    vals = [recorder.host_value(v).item() if isinstance(v, Tensor) else v for v in (start, limit, delta)]
    start, limit, delta = vals
    if limit is None:
        start, limit = 0, start
    if delta == 0:
        raise InvalidArgumentError(None, None, "range: delta must not be 0")
    if dtype is None:
        is_f = any(isinstance(v, float) or (isinstance(v, np.generic) and np.asarray(v).dtype.kind == "f")
                   for v in (start, limit, delta))
        dtype = np.float32 if is_f else np.int32
    return Tensor(_xp().arange(start, limit, delta, dtype=_np_dtype(dtype)))


def eye(num_rows, num_columns=None, batch_shape=None, dtype=np.float32, name=None):
    for what, n in (("num_rows", num_rows), ("num_columns", num_columns)):
        if n is not None and int(n) < 0:
            raise InvalidArgumentError(None, None, "eye: %s must be >= 0, got %d" % (what, int(n)))
    m = _xp().eye(int(num_rows), None if num_columns is None else int(num_columns), dtype=_np_dtype(dtype))
    if batch_shape is not None:
        m = _xp().broadcast_to(m, tuple(batch_shape) + m.shape).copy()
    return Tensor(m)


def linspace(start, stop, num, name=None, axis=0):
    s = convert(start)
    dt = s._data.dtype if s._data.dtype.kind == "f" else np.float32
    return Tensor(_xp().linspace(float(start), float(stop), int(num), dtype=dt))


def one_hot(indices, depth, on_value=None, off_value=None, axis=None, dtype=None, name=None):
    idx = convert(indices)
    if idx._data.dtype.kind not in "iu":
        raise InvalidArgumentError(None, None, "one_hot: indices must be integers, got %s" % idx._data.dtype)
    depth = int(depth)
    if depth < 0:
        raise InvalidArgumentError(None, None, "one_hot: depth must be >= 0, got %d" % depth)
    nd = idx._data.ndim + 1
    if axis is not None and not -1 <= int(axis) < nd:
        raise InvalidArgumentError(None, None, "one_hot: axis %d is out of range for an output of rank %d "
                                   "(expected -1 <= axis < %d)" % (int(axis), nd, nd))
    dt = _np_dtype(dtype) or (convert(on_value)._data.dtype if on_value is not None else np.dtype(np.float32))
    on = 1 if on_value is None else on_value
    off = 0 if off_value is None else off_value
    on = recorder.host_value(on) if isinstance(on, Tensor) else on
    off = recorder.host_value(off) if isinstance(off, Tensor) else off
    return apply(_one_hot, (idx,), {"depth": depth, "on": on, "off": off, "axis": axis, "dtype": dt})


def _one_hot_fwd(xp, idx, depth, on, off, axis, dtype):
    hot = idx[..., None] == xp.arange(depth)
    out = xp.where(hot, xp.asarray(on, dtype=dtype), xp.asarray(off, dtype=dtype))
    if axis is not None and axis != -1:
        out = xp.moveaxis(out, -1, axis)
    return out


_one_hot = defop("one_hot", _one_hot_fwd, save="none")  # no gradient: integer indices


# ops, not constants: inside accel.function a plan computes them from each call's input (TF's dynamic
# shapes), so a plan derived for a new batch size reads the new size; host arrays, as TF's are
_shape = defop("shape", lambda xp, x, dtype: np.asarray(x.shape, dtype=dtype), save="none")
_size = defop("size", lambda xp, x, dtype: np.asarray(x.size, dtype=dtype), save="none")


def shape(input, out_type=np.int32, name=None):  # noqa: A002
    return apply(_shape, (convert(input),), {"dtype": _np_dtype(out_type)})


def size(input, out_type=np.int32, name=None):  # noqa: A002
    return apply(_size, (convert(input),), {"dtype": _np_dtype(out_type)})


def rank(input, name=None):  # noqa: A002
    return Tensor(np.asarray(convert(input)._data.ndim, dtype=np.int32))


_identity = defop("identity", lambda xp, x: x, lambda F, g, out, x: g, save="none")


def identity(input, name=None):  # noqa: A002
    return apply(_identity, (convert(input),))


_stop_gradient = defop("stop_gradient", lambda xp, x: x, save="none")  # no rule: tapes note the cut


def stop_gradient(input, name=None):  # noqa: A002
    """The same values, cut from every tape: no gradient flows through."""
    return apply(_stop_gradient, (convert(input),))


def _to_device_rule(F, g, out, x, device, source):
    if isinstance(g, Tensor):
        return to_device(g, source)
    return backend.to_device(g, source)


_to_device = defop("to_device", lambda xp, x, device, source: backend.to_device(x, device), _to_device_rule,
                   save="none")


def to_device(x, device):
    """A copy of tensor x on `device` ('cpu' or 'gpu:N'); gradients flow back to x's device."""
    d = backend.parse_device(device)
    t = convert(x)
    src = backend.device_of(t._data)
    if src == d:
        return t
    return apply(_to_device, (t,), {"device": d, "source": src})


def from_dlpack(obj):
    return Tensor(backend.from_dlpack(obj))
