"""The op machinery: `defop` declares an op's forward and gradient rules side by side.

A rule is `rule(F, g, out, *inputs, **attrs) -> cotangent for one input`. `F` is the
array namespace the rule computes with: NumPy or CuPy on raw arrays when nothing needs
to record the backward pass, or accel's own differentiable ops on Tensors when an
outer GradientTape records it (higher-order gradients). So each rule is written once,
with operators and the small vocabulary below, and serves both.
"""

from __future__ import annotations

import functools

import numpy as np

from accel import backend
from accel.errors import InvalidArgumentError
from accel.recorder import hooks as _hooks, note_cut as _note_cut, record as _record, state as _state
from accel.tensor import Tensor, to_array


def cut(opname, inputs, out):
    """Tells active tapes that a non-differentiable op consumed these inputs (for explain())."""
    if _state.tapes:
        _note_cut(opname, inputs, out)
    return out
_NUMPY = np  # the xp for host arrays (tests swap in a recording proxy to check CuPy's namespace)


_SAVES = {"inputs": (True, False), "out": (False, True), "inputs+out": (True, True), "none": (False, False)}
_DTYPE_POLICIES = {"any": None, "float": "f", "bool": "b"}


class Op:
    """An op as data: its forward on arrays, one gradient rule per input (None: no gradient), what
    the rules read (`save`), the input dtypes it takes, whether it is elementwise (the kernel
    generator and accel.function read that), and an optional fused backward hook."""

    __slots__ = ("name", "forward", "rules", "save_inputs", "save_out", "multi_out", "fused", "fused_small",
                 "elementwise", "dtypes", "cut_label")

    def __init__(self, name, forward, save="inputs", multi_out=False, elementwise=False, dtypes="any",
                 fused=None, fused_small=False, cut_label=None):
        if save not in _SAVES:
            raise ValueError("defop(%r): save must be one of %s, got %r" % (name, ", ".join(_SAVES), save))
        if dtypes not in _DTYPE_POLICIES:
            raise ValueError("defop(%r): dtypes must be one of %s, got %r" % (name, ", ".join(_DTYPE_POLICIES), dtypes))
        self.name = name
        self.forward = forward
        self.rules = None
        self.save_inputs, self.save_out = _SAVES[save]
        self.save_out = self.save_out or multi_out
        self.multi_out = multi_out
        self.elementwise = elementwise
        self.dtypes = dtypes
        self.fused = fused  # hook for a fused backward (accel/ops/fusion.py): (xp, g, out, *inputs, **attrs)
        # True where the generic rule takes many passes, so the CPU twin wins at any size (fused mode
        # "auto" otherwise keeps host arrays under fusion.CPU_MIN_SIZE elements on NumPy)
        self.fused_small = fused_small
        self.cut_label = cut_label  # attrs -> what explain() calls this op where it cuts a gradient path

    def defvjp(self, *rules):
        self.rules = rules
        return self

    def check_dtype(self, t):
        """Raises TF's error when Tensor t's dtype is outside this op's policy."""
        kind = _DTYPE_POLICIES[self.dtypes]
        if kind is not None and t._data.dtype.kind != kind:
            what = {"f": "a floating-point tensor (float16/32/64)", "b": "bool tensors"}[kind]
            hint = "; cast it with accel.cast(x, accel.float32)" if kind == "f" else ""
            raise InvalidArgumentError(None, None, "%s: expected %s, got %s%s" % (self.name, what, t._data.dtype, hint))

    def __repr__(self):
        return "Op(%s)" % self.name


REGISTRY: dict[str, Op] = {}


def defop(name, forward=None, *rules, **options):
    """The one way to declare an op: `defop(name, forward, *rules, save=..., ...)` registers and returns
    the Op. forward(xp, *arrays, **attrs) -> array; rule(F, g, out, *inputs, **attrs) -> the cotangent
    of one input (None for an input without a gradient). Options are Op's: save ("inputs", "out",
    "inputs+out", "none": what the rules read), multi_out, elementwise, dtypes ("any", "float", "bool"),
    fused, fused_small. Without `forward` it is a decorator: `@defop("tanh", save="out")`."""
    if forward is None:
        return lambda f: defop(name, f, *rules, **options)
    if name in REGISTRY:
        raise ValueError("defop: an op named %r is already declared" % name)
    op = Op(name, forward, **options)
    if rules:
        op.defvjp(*rules)
    bind = getattr(op.fused, "bind", None)  # a fused hook that needs its op (fusion.Generated)
    if bind is not None:
        bind(op)
    REGISTRY[name] = op
    return op


def _xp_of_datas(datas, opname):
    """The array module for the op's inputs; mixing devices is an error."""
    t0 = type(datas[0])
    if t0 is np.ndarray:
        for d in datas:
            if type(d) is not np.ndarray:
                _device_mismatch(datas, opname)
        return _NUMPY
    cp = backend.cupy()
    if cp is None or not isinstance(datas[0], cp.ndarray):
        raise TypeError("%s: unsupported array type %s" % (opname, t0.__name__))
    dev = datas[0].device.id
    for d in datas:
        if not isinstance(d, cp.ndarray) or d.device.id != dev:
            _device_mismatch(datas, opname)
    return cp


def _device_mismatch(datas, opname):
    devs = ", ".join("#%d on %s" % (i, backend.device_of(d).short_name) for i, d in enumerate(datas))
    raise InvalidArgumentError(
        None, None,
        "%s: all inputs must be on one device, got inputs %s; move them with accel.to_device(t, 'cpu') "
        "or accel.to_device(t, 'gpu:0')" % (opname, devs))


def apply(op: Op, inputs, attrs=None):
    """Runs op's forward on Tensors `inputs`, wraps the result, and records it on active tapes."""
    n = len(inputs)
    if not _hooks.active and n <= 2 and not op.multi_out:
        # the hot path: host arrays, no thread has a profiler or numerics check (errors go the slow way below)
        a = inputs[0]._data
        b = inputs[1]._data if n == 2 else a
        if type(a) is np.ndarray and type(b) is np.ndarray:
            args = (a, b) if n == 2 else (a,)
            try:
                res = op.forward(_NUMPY, *args, **attrs) if attrs else op.forward(_NUMPY, *args)
            except Exception:
                res = None
            if type(res) is np.ndarray:
                if inputs[0]._is_variable or inputs[n - 1]._is_variable:
                    res = _detached(res, inputs)
                out = Tensor(res)
                tapes = _state.tapes
                if tapes:
                    if op.rules is not None:
                        _record(op, inputs, out, attrs, tapes)
                    else:
                        _note_cut(op.name if op.cut_label is None else op.cut_label(attrs), inputs, out)
                return out
    if len(inputs) == 1:
        datas = (inputs[0]._data,)
        xp = _NUMPY if type(datas[0]) is np.ndarray else _xp_of_datas(datas, op.name)
    elif len(inputs) == 2:
        datas = (inputs[0]._data, inputs[1]._data)
        xp = _NUMPY if type(datas[0]) is np.ndarray and type(datas[1]) is np.ndarray else \
            _xp_of_datas(datas, op.name)
    else:
        datas = [t._data for t in inputs]
        xp = _xp_of_datas(datas, op.name)
    prof = check = trace = None
    if _hooks.active:  # some thread observes: this thread's profiler, numerics check and trace, if any
        prof = _hooks.profile
        check = _hooks.numerics_check
        trace = _state.trace
    if prof is not None:
        datas = [prof.counted(d) for d in datas]
        prof.label = op.name
    try:
        res = op.forward(xp, *datas, **attrs) if attrs else op.forward(xp, *datas)
    except (ValueError, TypeError, IndexError) as e:
        if isinstance(e, InvalidArgumentError):
            raise
        raise InvalidArgumentError(None, None, "%s: %s (inputs: %s)" % (
            op.name, e, ", ".join("%s %s" % (d.dtype, tuple(d.shape)) for d in datas))) from None
    if prof is not None:
        res = prof.plain(res) if not op.multi_out else [prof.plain(r) for r in res]
    if any(t._is_variable for t in inputs):
        res = _detached(res, inputs) if not op.multi_out else [_detached(r, inputs) for r in res]
    if op.multi_out:
        out = tuple(Tensor(as_array(r)) for r in res)
    else:
        out = Tensor(res if type(res) is np.ndarray else as_array(res))
    if _state.tapes:
        _record_or_cut(op, inputs, out, attrs)
    if trace is not None:
        trace.op(op, inputs, attrs, out)
    if check is not None:
        check(op.name, [o._data for o in out] if op.multi_out else [out._data], "the output")
    return out


def _detached(res, inputs):
    return detached(res, [t._data for t in inputs if t._is_variable])


def detached(res, var_arrays):
    """res, copied when it is one of var_arrays (Variables' arrays) or a view into one (a reshape, transpose,
    identity or slice): a tensor read from a Variable keeps the value read, as in TF, however the Variable is
    assigned later (assigns write its array in place)."""
    for a in var_arrays:
        if res is a or (getattr(res, "base", None) is not None and backend.may_share_memory(res, a)):
            return res.copy()
    return res


def _record_or_cut(op, inputs, out, attrs):
    if op.rules is not None:
        _record(op, inputs, out, attrs, _state.tapes)
    else:
        _note_cut(op.name if op.cut_label is None else op.cut_label(attrs), inputs, out)


def as_array(r):
    """NumPy reductions return scalars (np.float32); tensors always hold arrays."""
    if isinstance(r, np.generic):
        return np.asarray(r)
    return r


# --- converting arguments ------------------------------------------------------------------

def convert(x, dtype=None):
    """A Tensor for x (Tensors pass through; Python and NumPy data get TF's default dtypes)."""
    if isinstance(x, Tensor):
        return x
    if hasattr(x, "indices") and hasattr(x, "dense_shape"):  # IndexedSlices: densify
        return x._dense()
    return Tensor(to_array(x, dtype))


def convert_pair(x, y, opname):
    """Two operands of a binary op: a non-Tensor takes the Tensor's dtype, two Tensors must agree."""
    tx = isinstance(x, Tensor)
    ty = isinstance(y, Tensor)
    if tx and ty:
        if x._data.dtype != y._data.dtype:
            raise InvalidArgumentError(
                None, None,
                "%s: both operands must have the same dtype, got %s and %s; cast one explicitly with "
                "accel.cast(x, %s)" % (opname, x._data.dtype, y._data.dtype, "accel." + str(x._data.dtype)))
        return x, y
    if tx:
        return x, _like(y, x, opname)
    if ty:
        return _like(x, y, opname), y
    x = convert(x)
    return x, _like(y, x, opname)


_SCALAR_CACHE = {}  # (type, value, dtype) -> constant Tensor


def scalar_like(value, t, opname):
    """A Python float or int as a constant tensor of host Tensor t's dtype. Cached: constants are
    immutable and never tracked, so one tensor can serve every use of the same literal."""
    dt = t._data.dtype
    tv = type(value)
    key = (tv, value, dt)
    const = _SCALAR_CACHE.get(key)
    if const is None:
        if tv is float and dt.kind in "iub" and not value.is_integer():
            raise TypeError("%s: cannot convert %r to a tensor of dtype %s" % (opname, value, dt))
        const = Tensor(np.asarray(value, dtype=dt))
        if len(_SCALAR_CACHE) < 4096:
            _SCALAR_CACHE[key] = const
    return const


def _like(value, t, opname):
    """Converts a Python/NumPy operand to Tensor t's dtype and device."""
    dt = t._data.dtype
    tv = type(value)
    if (tv is float or tv is int) and type(t._data) is np.ndarray:
        return scalar_like(value, t, opname)
    if isinstance(value, float) and dt.kind in "iub" and not float(value).is_integer():
        raise TypeError("%s: cannot convert %r to a tensor of dtype %s" % (opname, value, dt))
    try:
        if isinstance(value, (list, tuple)) or type(value) is np.ndarray or isinstance(value, np.generic):
            arr = np.asarray(value)
            if arr.dtype.kind == "f" and dt.kind in "iub":
                raise TypeError("%s: cannot combine a %s tensor with float data %r" % (opname, dt, value))
        if type(t._data) is np.ndarray:
            return Tensor(np.asarray(value, dtype=dt))
        return Tensor(backend.asarray_on(value, backend.device_of(t._data), dt))
    except (ValueError, TypeError) as e:
        if str(e).startswith(opname + ":"):
            raise
        kind = "a ragged list" if "inhomogeneous" in str(e) else "%s %r" % (type(value).__name__, value)
        raise (TypeError if isinstance(e, TypeError) or isinstance(value, str) else ValueError)(
            "%s: cannot convert %s to a %s tensor to combine with a tensor of shape %s (%s)"
            % (opname, kind, dt, tuple(t._data.shape), e)) from None


# --- the rule vocabulary on raw arrays ----------------------------------------------------

class ArrayNS:
    """NumPy/CuPy functions under the names rules use (same names as TensorNS)."""

    def __init__(self, xp):
        self.xp = xp
        for name in ("exp", "log", "sqrt", "sign", "square", "sin", "cos", "tanh", "abs", "maximum",
                     "minimum", "equal", "greater", "less", "greater_equal", "less_equal", "logical_and",
                     "where", "matmul", "reshape", "transpose", "swapaxes", "broadcast_to", "zeros_like",
                     "ones_like", "expand_dims", "concatenate", "stack", "cosh", "reciprocal", "log1p",
                     "negative", "floor", "moveaxis", "sum", "tensordot", "einsum", "pad", "flip",
                     "cumsum", "clip", "take", "squeeze", "tile", "sinh"):
            setattr(self, name, getattr(xp, name))

    def astype(self, x, dtype):
        return x.astype(dtype, copy=False)

    def full_like(self, x, value):
        return self.xp.full_like(x, value)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype)

    def mean(self, x, axis=None, keepdims=False):
        return self.xp.mean(x, axis=axis, keepdims=keepdims)

    def max(self, x, axis=None, keepdims=False):
        return self.xp.max(x, axis=axis, keepdims=keepdims)

    def erf(self, x):
        return erf_array(self.xp, x)

    def scatter_add(self, shape, dtype, idx, src, axis=0):
        """zeros(shape) with src accumulated at positions idx along axis (repeats add up)."""
        return scatter_add_array(self.xp, src, idx, shape, axis)

    def scatter_index(self, shape, g, key):
        """zeros(shape) with g accumulated at an integer-array index (repeats add up)."""
        out = self.xp.zeros(shape, g.dtype)
        self.xp.add.at(out, key, g)
        return out

    def getitem(self, x, key):
        return x[key]

    def setitem_zeros(self, shape, dtype, key, value):
        """zeros(shape) with `value` written at `key` (a basic or boolean index: no repeats)."""
        out = self.xp.zeros(shape, dtype)
        out[key] = value
        return out

    def data(self, x):
        return x

    def shape(self, x):
        return tuple(x.shape)

    def dtype(self, x):
        return x.dtype

    def __getattr__(self, name):
        """A name an op module added with add_array_functions (linalg's F.solve, ...), bound to this xp."""
        fn = _ARRAY_FUNCTIONS.get(name)
        if fn is None:
            raise AttributeError("the rule vocabulary on arrays has no %r" % name)
        bound = self.__dict__[name] = functools.partial(fn, self.xp)
        return bound


_ARRAY_FUNCTIONS = {}  # name -> fn(xp, *args): array code of op modules above this one


def add_array_functions(**fns):
    """Adds fn(xp, *args) to the vocabulary rules use on raw arrays as F.<name>(*args): an op module hands
    its array code down (as accel/ops/linalg.py does for F.solve), so core never imports an op module."""
    _ARRAY_FUNCTIONS.update(fns)


def erf_array(xp, x):
    if xp is np or isinstance(x, np.ndarray):
        if getattr(x, "dtype", None) == np.float32:
            from accel.ops import fusion  # noqa: PLC0415  (fusion's twins sit above the ops)

            twins = fusion.kernels_for(x)
            if twins is not None:
                return twins.erf(x)
        try:
            from scipy.special import erf  # noqa: PLC0415

            return erf(x).astype(x.dtype, copy=False)
        except ImportError:
            return _erf_numpy(x)
    return backend.cupyx().scipy.special.erf(x)


def _erf_numpy(x):
    """erf in float64 without SciPy: Taylor series below 2.5, erfc's continued fraction above."""
    xd = np.asarray(x, dtype=np.float64)
    ax = np.abs(xd)
    out = np.empty_like(xd)
    small = ax < 2.5
    # Taylor series below 2.5 (the continued fraction converges slowly near 0)
    xs = xd[small]
    x2 = xs * xs
    term = xs.copy()
    acc = xs.copy()
    for n in range(1, 60):
        term = term * (-x2) / n
        acc = acc + term / (2 * n + 1)
    out[small] = acc * (2.0 / np.sqrt(np.pi))
    # erfc via its continued fraction for |x| >= 2.5
    xl = ax[~small]
    if xl.size:
        # continued fraction for erfc(x) * exp(x^2) * sqrt(pi) = 1/(x+ 1/2/(x+ 1/(x+ 3/2/(x+ ...))))
        f = np.zeros_like(xl)
        for k in range(60, 0, -1):
            f = (k / 2.0) / (xl + f)
        erfc = np.exp(-xl * xl) / np.sqrt(np.pi) / (xl + f)
        out[~small] = np.sign(xd[~small]) * (1.0 - erfc)
    return out.astype(x.dtype, copy=False)


def scatter_add_array(xp, src, idx, shape, axis):
    """zeros(shape) + src accumulated at idx along axis; src has shape[:axis] + idx.shape + shape[axis+1:]."""
    out = xp.zeros(shape, src.dtype)
    if axis:
        k = idx.ndim
        out_v = xp.moveaxis(out, axis, 0)
        src = xp.moveaxis(src, list(range(axis, axis + k)), list(range(k)))
    else:
        out_v = out
    xp.add.at(out_v, idx, src)
    return out


_ARRAY_NS = {}


def array_ns(xp):
    ns = _ARRAY_NS.get(xp)
    if ns is None:
        ns = _ARRAY_NS[xp] = ArrayNS(xp)
    return ns
