"""Reductions and scans: sum, mean, max, min, prod, logsumexp, variance, argmax, cumsum, top_k."""

from __future__ import annotations

import numpy as np

from accel import recorder
from accel.dtypes import as_dtype
from accel.errors import InvalidArgumentError
from accel.ops.core import apply, convert, defop
from accel.ops.creation import stop_gradient
from accel.ops.elementwise import abs as _abs, sqrt, square
from accel.tensor import Tensor


def normalize_axis(axis, ndim, opname, argname="axis"):
    """A sorted tuple of non-negative axes; None means all. Out-of-range axes are an error."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, Tensor):
        axis = recorder.host_value(axis).tolist()
    if isinstance(axis, (np.ndarray, np.generic)):
        axis = axis.tolist()
    items = axis if isinstance(axis, (list, tuple)) else [axis]
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError("%s: %s must be an int or a list of ints, got %r" % (opname, argname, axis))
        if not -ndim <= a < max(ndim, 1) or (ndim == 0 and a not in (0, -1)):
            expected = ("-%d <= %s < %d" % (ndim, argname, ndim)) if ndim else "0, -1 or None for a scalar"
            raise InvalidArgumentError(None, None, "%s: %s %d is out of range for a tensor of rank %d "
                                       "(expected %s)" % (opname, argname, a, ndim, expected))
        out.append(a % ndim if ndim else 0)
    if ndim == 0:
        return ()
    if len(set(out)) != len(out):
        raise InvalidArgumentError(None, None, "%s: %s %s names an axis twice (duplicate axes)"
                                   % (opname, argname, list(items)))
    return tuple(sorted(out))


def _kept_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _expand_g(F, g, shape, axes):
    """Broadcasts a reduced cotangent back over the reduced axes."""
    return F.broadcast_to(F.reshape(g, _kept_shape(shape, axes)), shape)


def _reduction(op):
    """The public function of a reduction op: axis normalized, attrs (axes, keepdims, shape)."""

    def fn(input_tensor, axis=None, keepdims=False, name=None):
        x = convert(input_tensor)
        if op.dtypes != "any":
            op.check_dtype(x)
        axes = normalize_axis(axis, x._data.ndim, op.name)
        return apply(op, (x,), {"axes": axes, "keepdims": bool(keepdims), "shape": tuple(x._data.shape)})

    fn.__name__ = fn.__qualname__ = op.name
    fn.op = op
    return fn


def _sum_fwd(xp, x, axes, keepdims, shape):
    if x.dtype.kind == "b":
        x = x.astype(np.int32)
    return xp.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)  # int32 stays int32, as in TF


reduce_sum = _reduction(defop("reduce_sum", _sum_fwd,
                              lambda F, g, out, x, axes, keepdims, shape: _expand_g(F, g, shape, axes), save="none"))


def _count(shape, axes):
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def _mean_fwd(xp, x, axes, keepdims, shape):
    if x.dtype.kind in "iu":  # TF's integer mean stays integer (truncating)
        return (xp.sum(x, axis=axes, keepdims=keepdims) // max(_count(shape, axes), 1)).astype(x.dtype)
    return xp.mean(x, axis=axes, keepdims=keepdims)


reduce_mean = _reduction(defop("reduce_mean", _mean_fwd,
                               lambda F, g, out, x, axes, keepdims, shape:
                               _expand_g(F, g / max(_count(shape, axes), 1), shape, axes), save="none"))


def _extreme_rule(F, g, out, x, axes, keepdims, shape):
    # ties share the gradient evenly, as TF does
    out_k = F.reshape(out, _kept_shape(shape, axes))
    mask = F.astype(F.equal(x, out_k), F.dtype(x))
    n = F.sum(mask, axis=axes, keepdims=True)
    return _expand_g(F, g, shape, axes) * mask / n


def _check_nonempty(xp, x, axes, what):
    for a in axes:
        if x.shape[a] == 0:
            raise InvalidArgumentError(None, None, "%s: cannot reduce an empty axis %d of shape %s"
                                       % (what, a, tuple(x.shape)))


def _max_fwd(xp, x, axes, keepdims, shape):
    _check_nonempty(xp, x, axes, "reduce_max")
    return xp.max(x, axis=axes, keepdims=keepdims)


def _min_fwd(xp, x, axes, keepdims, shape):
    _check_nonempty(xp, x, axes, "reduce_min")
    return xp.min(x, axis=axes, keepdims=keepdims)


reduce_max = _reduction(defop("reduce_max", _max_fwd, _extreme_rule, save="inputs+out"))
reduce_min = _reduction(defop("reduce_min", _min_fwd, _extreme_rule, save="inputs+out"))


def _prod_fwd(xp, x, axes, keepdims, shape):
    return xp.prod(x, axis=axes, keepdims=keepdims)


def _prod_rule(F, g, out, x, axes, keepdims, shape):
    if F.dtype(x).kind != "f":
        return None
    if isinstance(x, Tensor):  # differentiable form (exact where x has no zeros)
        return _expand_g(F, g * out, shape, axes) / x
    # product of the other elements via exclusive cumulative products: exact with zeros
    xp = F.xp
    keep = [i for i in range(len(shape)) if i not in axes]
    perm = keep + list(axes)
    xt = xp.transpose(x, perm).reshape(tuple(shape[i] for i in keep) + (-1,))
    n = xt.shape[-1]
    ones = xp.ones(xt.shape[:-1] + (1,), x.dtype)
    left = xp.concatenate([ones, xp.cumprod(xt[..., :-1], axis=-1)], axis=-1) if n else xt
    right = xp.flip(xp.concatenate([ones, xp.cumprod(xp.flip(xt[..., 1:], -1), axis=-1)], axis=-1), -1) if n else xt
    others = (left * right).reshape(tuple(shape[i] for i in keep) + tuple(shape[i] for i in axes))
    others = xp.transpose(others, np.argsort(perm))
    return _expand_g(F, g, shape, axes) * others


reduce_prod = _reduction(defop("reduce_prod", _prod_fwd, _prod_rule, save="inputs+out"))


def _any_fwd(xp, x, axes, keepdims, shape):
    return xp.any(x, axis=axes, keepdims=keepdims)


def _all_fwd(xp, x, axes, keepdims, shape):
    return xp.all(x, axis=axes, keepdims=keepdims)


reduce_any = _reduction(defop("reduce_any", _any_fwd, save="none"))
reduce_all = _reduction(defop("reduce_all", _all_fwd, save="none"))


def _lse_fwd(xp, x, axes, keepdims, shape):
    if x.size == 0:
        return xp.full(tuple(1 if i in axes else s for i, s in enumerate(shape)) if keepdims else
                       tuple(s for i, s in enumerate(shape) if i not in axes), -np.inf, x.dtype)
    m = xp.max(x, axis=axes, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    r = xp.log(xp.sum(xp.exp(x - m), axis=axes, keepdims=True)) + m
    return r if keepdims else xp.squeeze(r, axis=axes)


def _lse_rule(F, g, out, x, axes, keepdims, shape):
    # softmax over the axes, shifted by the max rather than by out: exp(x - out) loses log(n)
    # when out is so large that log(n) is below its last digit
    m = F.max(x, axis=axes, keepdims=True)
    if isinstance(m, Tensor):
        m = stop_gradient(m)
    e = F.exp(x - m)
    return _expand_g(F, g, shape, axes) * (e / F.sum(e, axis=axes, keepdims=True))


reduce_logsumexp = _reduction(defop("reduce_logsumexp", _lse_fwd, _lse_rule, dtypes="float"))


def reduce_variance(input_tensor, axis=None, keepdims=False, name=None):
    x = convert(input_tensor)
    if x._data.dtype.kind != "f":
        raise InvalidArgumentError(None, None, "reduce_variance: expected a float tensor, got %s" % x._data.dtype)
    m = reduce_mean(x, axis, keepdims=True)
    return reduce_mean(square(x - m), axis, keepdims=keepdims)


def reduce_std(input_tensor, axis=None, keepdims=False, name=None):
    return sqrt(reduce_variance(input_tensor, axis, keepdims))


def _arg_extreme(op):
    """The public function of argmax/argmin (ops without a gradient: a tape notes the cut)."""

    def fn(input, axis=None, output_type=np.int64, name=None):  # noqa: A002
        x = convert(input)
        nd = x._data.ndim
        (a,) = normalize_axis(0 if axis is None else axis, nd, op.name) or (0,)
        if nd and x._data.shape[a] == 0:
            raise InvalidArgumentError(None, None, "%s: axis %d has size 0" % (op.name, a))
        return apply(op, (x,), {"axis": a if nd else None, "dtype": as_dtype(output_type).dtype})

    fn.__name__ = fn.__qualname__ = op.name
    fn.op = op
    return fn


argmax = _arg_extreme(defop("argmax", lambda xp, x, axis, dtype: xp.asarray(xp.argmax(x, axis=axis)).astype(dtype),
                            save="none"))
argmin = _arg_extreme(defop("argmin", lambda xp, x, axis, dtype: xp.asarray(xp.argmin(x, axis=axis)).astype(dtype),
                            save="none"))


def _cumsum_fwd(xp, x, axis, exclusive, reverse):
    if reverse:
        x = xp.flip(x, axis)
    out = xp.cumsum(x, axis=axis, dtype=x.dtype)
    if exclusive:
        out = out - x
    return xp.flip(out, axis) if reverse else out


def _cumsum_rule(F, g, out, x, axis, exclusive, reverse):
    return cumsum(g, axis, exclusive=exclusive, reverse=not reverse) if isinstance(g, Tensor) else \
        _cumsum_fwd(F.xp, g, axis, exclusive, not reverse)


_cumsum = defop("cumsum", _cumsum_fwd, _cumsum_rule, save="none")


def cumsum(x, axis=0, exclusive=False, reverse=False, name=None):
    x = convert(x)
    if x._data.ndim == 0:
        raise InvalidArgumentError(None, None, "cumsum: x must have rank >= 1, got a scalar")
    (a,) = normalize_axis(axis, x._data.ndim, "cumsum")
    return apply(_cumsum, (x,), {"axis": a, "exclusive": bool(exclusive), "reverse": bool(reverse)})


def norm(tensor, ord="euclidean", axis=None, keepdims=False, name=None):  # noqa: A002
    x = convert(tensor)
    if ord in ("euclidean", "fro", 2, 2.0):
        return sqrt(reduce_sum(x * x, axis, keepdims))
    if ord in (1, 1.0):
        return reduce_sum(_abs(x), axis, keepdims)
    if ord in (np.inf, "inf"):
        return reduce_max(_abs(x), axis, keepdims)
    raise ValueError("norm: ord must be 'euclidean', 'fro', 1, 2 or np.inf, got %r" % (ord,))
