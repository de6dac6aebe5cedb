"""Sorting and summing lists: sort, argsort, add_n."""

from __future__ import annotations

import numpy as np

from accel import backend
from accel.errors import InvalidArgumentError
from accel.ops.core import apply, convert, defop
from accel.ops.reduce import normalize_axis
from accel.ops.shape import gather, transpose
from accel.tensor import Tensor


def _argsort_fwd(xp, x, axis, descending):
    return xp.argsort(-x if descending else x, axis=axis, kind="stable").astype(np.int32)


_argsort = defop("argsort", _argsort_fwd, save="none")  # no gradient: tapes note the cut


def argsort(values, axis=-1, direction="ASCENDING", stable=False, name=None):
    x = convert(values)
    if direction not in ("ASCENDING", "DESCENDING"):
        raise ValueError("argsort: direction must be 'ASCENDING' or 'DESCENDING', got %r" % (direction,))
    (a,) = normalize_axis(axis, x._data.ndim, "argsort")
    return apply(_argsort, (x,), {"axis": a, "descending": direction == "DESCENDING"})


def sort(values, axis=-1, direction="ASCENDING", name=None):
    """Sorted values along `axis`; the gradient flows back to the original positions."""
    x = convert(values)
    (a,) = normalize_axis(axis, x._data.ndim, "sort")
    idx = argsort(x, a, direction)
    if x._data.ndim == 1:
        return gather(x, idx)
    moved = list(range(x._data.ndim))
    return gather(x, idx, axis=a, batch_dims=a) if a == x._data.ndim - 1 else _sort_general(x, idx, a, moved)


def _sort_general(x, idx, a, perm):
    perm[a], perm[-1] = perm[-1], perm[a]
    xt = transpose(x, perm)
    it = transpose(idx, perm)
    return transpose(gather(xt, it, axis=xt._data.ndim - 1, batch_dims=xt._data.ndim - 1), perm)


def add_n(inputs, name=None):
    """Sum of a list of same-shape tensors."""
    ts = [convert(t) for t in inputs]
    if not ts:
        raise InvalidArgumentError(None, None, "add_n: inputs is empty")
    shape = tuple(ts[0]._data.shape)
    for i, t in enumerate(ts):
        if t._data.dtype != ts[0]._data.dtype:
            raise InvalidArgumentError(None, None, "add_n: input %d has dtype %s, input 0 has %s"
                                       % (i, t._data.dtype, ts[0]._data.dtype))
        if tuple(t._data.shape) != shape:
            raise InvalidArgumentError(None, None, "add_n: input %d has shape %s, input 0 has %s"
                                       % (i, tuple(t._data.shape), shape))
    out = ts[0]
    for t in ts[1:]:
        out = out + t
    return out


def top_k(input, k=1, sorted=True, name=None):  # noqa: A002
    """The k largest entries along the last axis and their indices (values differentiable)."""
    x = convert(input)
    if x._data.ndim < 1:
        raise InvalidArgumentError(None, None, "top_k: input must have rank >= 1, got a scalar")
    n = x._data.shape[-1]
    if not 0 <= int(k) <= n:
        raise InvalidArgumentError(None, None, "top_k: k must be in [0, %d] (last dimension), got %r" % (n, k))
    xp = backend.xp_of(x._data)
    idx = xp.argsort(-x._data, axis=-1, kind="stable")[..., : int(k)].astype(np.int32)
    values = gather(x, Tensor(idx), axis=-1, batch_dims=x._data.ndim - 1)
    return TopKV2(values, Tensor(idx))


class TopKV2(tuple):
    def __new__(cls, values, indices):
        return tuple.__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])
