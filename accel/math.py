"""`accel.math.*`: TensorFlow's math namespace."""

from accel.ops.api import (  # noqa: F401
    abs, acos, add, argmax, argmin, asin, atan, ceil, cos, cosh, cumsum, divide, equal, erf, exp, expm1, floor,
    floordiv, floormod, greater, greater_equal, is_finite, is_inf, is_nan, less, less_equal, log, log1p,
    logical_and, logical_not, logical_or, logical_xor, maximum, minimum, mod, multiply, negative, not_equal, pow,
    reciprocal, reduce_all, reduce_any, reduce_logsumexp, reduce_max, reduce_mean, reduce_min, reduce_prod,
    reduce_std, reduce_sum, reduce_variance, round, rsqrt, sigmoid, sign, sin, sinh, softplus, sqrt, square,
    squared_difference, subtract, tan, tanh, top_k, truediv)
from accel.ops.elementwise import inv  # noqa: F401
from accel.ops.nn import l2_normalize  # noqa: F401
from accel.ops.api import add_n  # noqa: F401
from accel.ops.scatter import cumprod, segment_sum, unsorted_segment_sum  # noqa: F401


def divide_no_nan(x, y, name=None):
    """x / y, and 0 where y == 0 (with a finite gradient)."""
    from accel.ops.api import where, zeros_like, ones_like, convert_to_tensor  # noqa: PLC0415

    y = convert_to_tensor(y)
    nz = not_equal(y, zeros_like(y))
    safe = where(nz, y, ones_like(y))
    return where(nz, truediv(x, safe), 0.0)
