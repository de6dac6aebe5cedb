"""Elementwise math: each op is its forward and its gradient rule(s), side by side.

Rules receive (F, g, out, *inputs); they may return a cotangent at the broadcast output
shape: the tape sums it back to each input's shape.
"""

from __future__ import annotations

import math

import numpy as np

from accel import backend, recorder
from accel.dtypes import as_dtype
from accel.errors import InvalidArgumentError
from accel.ops import fusion
from accel.ops.core import _SCALAR_CACHE, apply, convert, convert_pair, defop, erf_array, scalar_like
from accel.tensor import Tensor


def unary(name, forward, rule=None, save="inputs", dtypes="float", fused=None):
    """Declares a one-input elementwise op (defop) and returns its public function."""
    op = defop(name, forward, *(() if rule is None else (rule,)), save=save, dtypes=dtypes, elementwise=True,
               fused=fused)

    def fn(x, name=None):
        if not isinstance(x, Tensor):
            x = convert(x)
        if op.dtypes != "any":
            op.check_dtype(x)
        return apply(op, (x,))

    fn.__name__ = fn.__qualname__ = name
    fn.op = op
    return fn


def binary(name, forward, rule_x=None, rule_y=None, save="inputs", dtypes="any"):
    """Declares a two-input broadcasting elementwise op (defop) and returns its public function."""
    rules = (rule_x, rule_y) if rule_x is not None or rule_y is not None else ()
    op = defop(name, forward, *rules, save=save, dtypes=dtypes, elementwise=True)

    def fn(x, y, name=None):
        # fast path: a tensor with a Python scalar (the commonest case in user code)
        if type(x) is Tensor and (type(y) is float or type(y) is int) and type(x._data) is np.ndarray:
            c = _SCALAR_CACHE.get((type(y), y, x._data.dtype))
            y = c if c is not None else scalar_like(y, x, op.name)
        else:
            x, y = convert_pair(x, y, op.name)
        if op.dtypes != "any":
            op.check_dtype(x)
        return apply(op, (x, y))

    fn.__name__ = fn.__qualname__ = name
    fn.op = op
    return fn


# --- arithmetic ----------------------------------------------------------------------------

add = binary("add", lambda xp, x, y: x + y,
             lambda F, g, out, x, y: g, lambda F, g, out, x, y: g, save="none")
subtract = binary("subtract", lambda xp, x, y: x - y,
                  lambda F, g, out, x, y: g, lambda F, g, out, x, y: -g, save="none")
multiply = binary("multiply", lambda xp, x, y: x * y,
                  lambda F, g, out, x, y: g * y, lambda F, g, out, x, y: g * x)
_div = binary("divide", lambda xp, x, y: x / y,
              lambda F, g, out, x, y: g / y, lambda F, g, out, x, y: -g * x / (y * y), dtypes="float")
negative = unary("negative", lambda xp, x: -x, lambda F, g, out, x: -g, save="none", dtypes="any")


def truediv(x, y, name=None):
    """x / y; integer inputs are converted to float first (int32/int64 -> float64, as in TF)."""
    x, y = convert_pair(x, y, "truediv")
    k = x._data.dtype
    if k.kind in "iu":
        ft = np.float32 if k.itemsize <= 2 else np.float64
        x, y = cast(x, ft), cast(y, ft)
    elif k.kind == "b":
        raise InvalidArgumentError(None, None, "truediv: bool tensors cannot be divided")
    return _div(x, y)


divide = truediv
realdiv = _div


def _floordiv_fwd(xp, x, y):
    if x.dtype.kind == "f":
        return xp.floor(x / y)
    return x // y


floordiv = binary("floordiv", _floordiv_fwd)
floor_div = floordiv
mod = binary("mod", lambda xp, x, y: xp.mod(x, y),
             lambda F, g, out, x, y: g, lambda F, g, out, x, y: -g * F.floor(x / y))
floormod = mod


def _pow_fwd(xp, x, y):
    # NumPy has fast paths only for a few exponents (x**3 is ~80x slower than x*x*x)
    if y.ndim == 0 and type(y) is np.ndarray:
        e = float(y)
        if e == 2.0:
            return x * x
        if e == 3.0:
            return x * x * x
        if e == 1.0:
            return x.copy()
        if e == 0.5 and x.dtype.kind == "f":
            return xp.sqrt(x)
        if e == -1.0 and x.dtype.kind == "f":
            return 1 / x
    return xp.power(x, y)


def _pow_gx(F, g, out, x, y):
    return g * y * x ** (y - 1)


def _pow_gy(F, g, out, x, y):
    # log(x) is taken as 0 where x <= 0, so a zero base gives an exponent gradient of 0 (as TF)
    safe = F.where(x > 0, x, 1)
    return g * out * F.where(x > 0, F.log(safe), 0)


pow = binary("pow", _pow_fwd, _pow_gx, _pow_gy, save="inputs+out")  # noqa: A001
square = unary("square", lambda xp, x: x * x, lambda F, g, out, x: g * 2 * x, dtypes="any")


def _sqrt_rule(F, g, out):
    # sqrt'(0) = inf, but a zero incoming gradient gives 0, not NaN: where(x > 0, sqrt(x), 0) stays finite
    return F.where(g == 0, 0, g * 0.5 / out)


sqrt = unary("sqrt", lambda xp, x: xp.sqrt(x), lambda F, g, out, x: _sqrt_rule(F, g, out),
             save="out")
rsqrt = unary("rsqrt", lambda xp, x: 1 / xp.sqrt(x),
              lambda F, g, out, x: g * -0.5 * out * out * out, save="out")
exp = unary("exp", lambda xp, x: xp.exp(x), lambda F, g, out, x: g * out, save="out")
expm1 = unary("expm1", lambda xp, x: xp.expm1(x), lambda F, g, out, x: g * (out + 1),
              save="out")
log = unary("log", lambda xp, x: xp.log(x), lambda F, g, out, x: g / x)
log1p = unary("log1p", lambda xp, x: xp.log1p(x), lambda F, g, out, x: g / (1 + x))
reciprocal = unary("reciprocal", lambda xp, x: 1 / x, lambda F, g, out, x: -g * out * out,
                   save="out")
inv = reciprocal
abs = unary("abs", lambda xp, x: xp.abs(x), lambda F, g, out, x: g * F.sign(x), dtypes="any")  # noqa: A001
sign = unary("sign", lambda xp, x: xp.sign(x), lambda F, g, out, x: F.zeros_like(g),
             save="none", dtypes="any")
sin = unary("sin", lambda xp, x: xp.sin(x), lambda F, g, out, x: g * F.cos(x))
cos = unary("cos", lambda xp, x: xp.cos(x), lambda F, g, out, x: -g * F.sin(x))
tan = unary("tan", lambda xp, x: xp.tan(x), lambda F, g, out, x: g * (1 + out * out), save="out")
sinh = unary("sinh", lambda xp, x: xp.sinh(x), lambda F, g, out, x: g * F.cosh(x))
cosh = unary("cosh", lambda xp, x: xp.cosh(x), lambda F, g, out, x: g * F.sinh(x))
asin = unary("asin", lambda xp, x: xp.arcsin(x), lambda F, g, out, x: g / F.sqrt(1 - x * x))
acos = unary("acos", lambda xp, x: xp.arccos(x), lambda F, g, out, x: -g / F.sqrt(1 - x * x))
atan = unary("atan", lambda xp, x: xp.arctan(x), lambda F, g, out, x: g / (1 + x * x))
tanh = unary("tanh", lambda xp, x: xp.tanh(x), lambda F, g, out, x: g * (1 - out * out),
             save="out", fused=fusion.Generated())


def _sigmoid_fwd(xp, x):
    # stable on both tails: exp of a non-positive number never overflows
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


sigmoid = unary("sigmoid", _sigmoid_fwd, lambda F, g, out, x: g * out * (1 - out),
                save="out", fused=fusion.Generated())


def _softplus_fwd(xp, x):
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


softplus = unary("softplus", _softplus_fwd, lambda F, g, out, x: g * sigmoid_of(F, x), fused=fusion.Generated())


def sigmoid_of(F, x):
    """sigmoid inside rules, on arrays or Tensors."""
    if isinstance(x, Tensor):
        return sigmoid(x)
    return _sigmoid_fwd(F.xp, x)


_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)  # a Python float: NumPy scalars would promote float32
erf = unary("erf", lambda xp, x: erf_array(xp, x),
            lambda F, g, out, x: g * _TWO_OVER_SQRT_PI * F.exp(-x * x))
floor = unary("floor", lambda xp, x: xp.floor(x))
ceil = unary("ceil", lambda xp, x: xp.ceil(x))
round = unary("round", lambda xp, x: xp.round(x))  # noqa: A001 (banker's rounding, as TF)
maximum = binary("maximum", lambda xp, x, y: xp.maximum(x, y),
                 lambda F, g, out, x, y: F.where(x >= y, g, 0),  # ties go to the first argument
                 lambda F, g, out, x, y: F.where(x >= y, 0, g))
minimum = binary("minimum", lambda xp, x, y: xp.minimum(x, y),
                 lambda F, g, out, x, y: F.where(x <= y, g, 0),
                 lambda F, g, out, x, y: F.where(x <= y, 0, g))
squared_difference = binary("squared_difference", lambda xp, x, y: (x - y) * (x - y),
                            lambda F, g, out, x, y: g * 2 * (x - y), lambda F, g, out, x, y: g * -2 * (x - y))

# --- comparisons and logic (no gradient) -----------------------------------------------------

equal = binary("equal", lambda xp, x, y: x == y)
not_equal = binary("not_equal", lambda xp, x, y: x != y)
less = binary("less", lambda xp, x, y: x < y)
less_equal = binary("less_equal", lambda xp, x, y: x <= y)
greater = binary("greater", lambda xp, x, y: x > y)
greater_equal = binary("greater_equal", lambda xp, x, y: x >= y)


logical_and = binary("logical_and", lambda xp, x, y: xp.logical_and(x, y), dtypes="bool")
logical_or = binary("logical_or", lambda xp, x, y: xp.logical_or(x, y), dtypes="bool")
logical_xor = binary("logical_xor", lambda xp, x, y: xp.logical_xor(x, y), dtypes="bool")
logical_not = unary("logical_not", lambda xp, x: xp.logical_not(x), dtypes="bool")


is_nan = unary("is_nan", lambda xp, x: xp.isnan(x))
is_inf = unary("is_inf", lambda xp, x: xp.isinf(x))
is_finite = unary("is_finite", lambda xp, x: xp.isfinite(x))


# --- where, clip, cast -----------------------------------------------------------------------

_where = defop("where", lambda xp, c, x, y: xp.where(c, x, y),
               None, lambda F, g, out, c, x, y: F.where(c, g, 0), lambda F, g, out, c, x, y: F.where(c, 0, g),
               elementwise=True)


def where(condition, x=None, y=None, name=None):
    """Elementwise choice: x where condition else y (broadcasting); with one argument, the true indices."""
    c = convert(condition)
    if c._data.dtype.kind != "b":
        raise InvalidArgumentError(None, None, "where: condition must be a bool tensor, got %s" % c._data.dtype)
    if x is None and y is None:
        xp = _xp(c)
        recorder.value_read(c)  # the result's shape depends on it
        return Tensor(xp.stack(xp.nonzero(c._data), axis=-1).astype(np.int64))
    if x is None or y is None:
        raise ValueError("where: give both x and y, or neither")
    x, y = convert_pair(x, y, "where")
    return apply(_where, (c, x, y))


def _xp(t):
    return backend.xp_of(t._data)


def _cast_fwd(xp, x, dtype):
    return x.astype(dtype)


_cast = defop("cast", _cast_fwd,
              lambda F, g, out, x, dtype: F.astype(g, F.dtype(x)) if F.dtype(x).kind == "f" else None,
              elementwise=True)


def cast(x, dtype, name=None):
    """Converts x to `dtype`; float-to-float casts pass gradients, casts to int or bool cut them."""
    x = convert(x)
    dt = as_dtype(dtype).dtype
    if x._data.dtype == dt:
        return x
    if dt.kind != "f" or x._data.dtype.kind != "f":
        return apply(_cast_cut, (x,), {"dtype": dt})
    return apply(_cast, (x,), {"dtype": dt})


def _cast_cut_fwd(xp, x, dtype):
    if x.dtype.kind == "f" and dtype.kind in "iu":
        x = xp.trunc(x)
    return x.astype(dtype)


# casts to or from a non-float type: no gradient (apply notes the cut for explain())
_cast_cut = defop("cast_nondifferentiable", _cast_cut_fwd, save="none", elementwise=True,
                  cut_label=lambda attrs: "cast to %s" % attrs["dtype"])


def _clip_fwd(xp, x, lo, hi):
    return xp.minimum(xp.maximum(x, lo), hi)


_clip = defop("clip_by_value", _clip_fwd,
              lambda F, g, out, x, lo, hi: F.where((x >= lo) & (x <= hi), g, 0),
              lambda F, g, out, x, lo, hi: F.where(x < lo, g, 0),
              lambda F, g, out, x, lo, hi: F.where(x > hi, g, 0),
              elementwise=True)


def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    t = convert(t)
    _, lo = convert_pair(t, clip_value_min, "clip_by_value")
    _, hi = convert_pair(t, clip_value_max, "clip_by_value")
    return apply(_clip, (t, lo, hi))
