"""The rule vocabulary on Tensors: what `F` is when an outer tape records a backward pass.

Every name here mirrors one on `core.ArrayNS`, but computes with differentiable accel
ops, so gradients of gradients come out of the same rules.
"""

from __future__ import annotations

import operator

from accel.ops import creation, elementwise as ew, linalg, nn, reduce, shape as sh
from accel.ops.core import apply, defop, scatter_add_array
from accel.tensor import Tensor


# the ops below serve rules on Tensors only (a backward pass that an outer tape records)
_scatter_add = defop("scatter_add", lambda xp, src, idx, shape, axis: scatter_add_array(xp, src, idx, shape, axis),
                     lambda F, g, out, src, idx, shape, axis: F.take(g, idx, axis), None)


def _setitem_zeros_fwd(xp, src, shape, key):
    out = xp.zeros(shape, src.dtype)
    out[key] = src
    return out


_setitem_zeros = defop("setitem_zeros", _setitem_zeros_fwd, lambda F, g, out, src, shape, key: F.getitem(g, key),
                       save="none")


def _scatter_index_fwd(xp, src, shape, key):
    out = xp.zeros(shape, src.dtype)
    xp.add.at(out, key, src)
    return out


_scatter_index = defop("scatter_index", _scatter_index_fwd, lambda F, g, out, src, shape, key: F.getitem(g, key),
                       save="none")


def _axes(axis, nd):
    return reduce.normalize_axis(axis, nd, "sum")


class TensorNS:
    exp = staticmethod(ew.exp)
    log = staticmethod(ew.log)
    sqrt = staticmethod(ew.sqrt)
    sign = staticmethod(ew.sign)
    square = staticmethod(ew.square)
    sin = staticmethod(ew.sin)
    cos = staticmethod(ew.cos)
    sinh = staticmethod(ew.sinh)
    cosh = staticmethod(ew.cosh)
    tanh = staticmethod(ew.tanh)
    abs = staticmethod(ew.abs)
    maximum = staticmethod(ew.maximum)
    minimum = staticmethod(ew.minimum)
    equal = staticmethod(ew.equal)
    greater = staticmethod(ew.greater)
    less = staticmethod(ew.less)
    greater_equal = staticmethod(ew.greater_equal)
    less_equal = staticmethod(ew.less_equal)
    logical_and = staticmethod(ew.logical_and)
    reciprocal = staticmethod(ew.reciprocal)
    log1p = staticmethod(ew.log1p)
    negative = staticmethod(ew.negative)
    floor = staticmethod(ew.floor)
    erf = staticmethod(ew.erf)
    matmul = staticmethod(linalg.matmul)
    einsum = staticmethod(linalg.einsum)
    tensordot = staticmethod(linalg.tensordot)
    reshape = staticmethod(sh.reshape)
    broadcast_to = staticmethod(sh.broadcast_to)
    flip = staticmethod(sh.reverse)
    log_softmax = staticmethod(nn.log_softmax)
    zeros_like = staticmethod(creation.zeros_like)
    ones_like = staticmethod(creation.ones_like)
    expand_dims = staticmethod(sh.expand_dims)
    sum = staticmethod(reduce.reduce_sum)
    mean = staticmethod(reduce.reduce_mean)
    max = staticmethod(reduce.reduce_max)
    cumsum = staticmethod(reduce.cumsum)
    astype = staticmethod(ew.cast)
    zeros = staticmethod(creation.zeros)
    getitem = staticmethod(sh.getitem)
    shape = staticmethod(operator.attrgetter("_data.shape"))  # NumPy and CuPy shapes are tuples
    dtype = staticmethod(operator.attrgetter("_data.dtype"))
    # linear algebra for the rules in accel/ops/linalg.py, as differentiable ops
    solve = staticmethod(linalg.solve)
    triangular_solve = staticmethod(linalg.triangular_solve)
    inv = staticmethod(linalg.inv)
    band_part = staticmethod(linalg.band_part)

    @staticmethod
    def where(c, a, b):
        if not isinstance(a, Tensor) and not isinstance(b, Tensor):
            raise TypeError("where in a rule needs a tensor branch")
        return ew.where(c, a, b)

    @staticmethod
    def transpose(x, axes=None):
        return sh.transpose(x, axes)

    @staticmethod
    def swapaxes(x, a, b):
        nd = x._data.ndim
        perm = list(range(nd))
        perm[a % nd], perm[b % nd] = perm[b % nd], perm[a % nd]
        return sh.transpose(x, perm)

    @staticmethod
    def concatenate(xs, axis=0):
        return sh.concat(list(xs), axis)

    @staticmethod
    def stack(xs, axis=0):
        return sh.stack(list(xs), axis)

    @staticmethod
    def full_like(x, value):
        return creation.ones_like(x) * value

    @staticmethod
    def take(x, idx, axis=0):
        return sh.gather(x, idx if isinstance(idx, Tensor) else Tensor(idx), axis=axis)

    @staticmethod
    def scatter_add(shape, dtype, idx, src, axis=0):
        idx = idx if isinstance(idx, Tensor) else Tensor(idx)
        return apply(_scatter_add, (src, idx), {"shape": tuple(shape), "axis": axis})

    @staticmethod
    def setitem_zeros(shape, dtype, key, value):
        return apply(_setitem_zeros, (value,), {"shape": tuple(shape), "key": key})

    @staticmethod
    def scatter_index(shape, g, key):
        return apply(_scatter_index, (g,), {"shape": tuple(shape), "key": key})

    @staticmethod
    def matrix_diag(d, k=0, num_rows=-1, num_cols=-1):
        return linalg.diag(d, k=k, num_rows=num_rows, num_cols=num_cols)

    @staticmethod
    def matrix_diag_part(x, k=0):
        return linalg.diag_part(x, k=k)

    @staticmethod
    def sum_to(g, shape):
        shape = tuple(shape)
        gs = tuple(g._data.shape)
        lead = len(gs) - len(shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and gs[lead + i] != 1)
        if axes:
            g = reduce.reduce_sum(g, axes, keepdims=True)
        return sh.reshape(g, shape)


TENSOR_NS = TensorNS()
