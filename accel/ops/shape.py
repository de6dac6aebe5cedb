"""Shape ops: reshape, transpose, concat, stack, split, tile, pad, gather, slicing, ..."""

from __future__ import annotations

import copy

import numpy as np

from accel import backend, recorder
from accel.errors import InvalidArgumentError
from accel.ops import fusion
from accel.ops.core import apply, convert, defop
from accel.ops.reduce import normalize_axis
from accel.tensor import Tensor


def _ints(value, what, opname):
    if isinstance(value, Tensor):
        value = recorder.host_value(value)
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    if isinstance(value, (int, np.integer)):
        return (int(value),)
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError("%s: %s must be a list of ints, got %r" % (opname, what, value)) from None


# --- reshape / transpose ------------------------------------------------------------------

# minus: the index the caller gave as -1 (its size is resolved into `shape`); accel.function derives it anew
# for other input sizes
_reshape = defop("reshape", lambda xp, x, shape, in_shape, minus=None: xp.reshape(x, shape),
                 lambda F, g, out, x, shape, in_shape, minus=None: F.reshape(g, in_shape), save="none")


def reshape(tensor, shape, name=None):
    x = convert(tensor)
    shape = _ints(shape, "shape", "reshape")
    n = x._data.size
    known = 1
    minus = [i for i, s in enumerate(shape) if s == -1]
    for s in shape:
        if s != -1:
            if s < 0:
                raise InvalidArgumentError(None, None, "reshape: dimension %d in shape %s is negative"
                                           % (s, list(shape)))
            known *= s
    if len(minus) > 1 or (minus and (known == 0 or n % known)) or (not minus and known != n):
        raise InvalidArgumentError(
            None, None, "reshape: cannot reshape a tensor with %d elements (shape %s) to shape %s"
            % (n, tuple(x._data.shape), list(shape)))
    attrs = {"shape": shape, "in_shape": tuple(x._data.shape)}
    if minus:
        attrs["shape"] = tuple(n // known if s == -1 else s for s in shape)
        attrs["minus"] = minus[0]
    return apply(_reshape, (x,), attrs)


_transpose = defop("transpose", lambda xp, x, perm: xp.transpose(x, perm),
                   lambda F, g, out, x, perm: F.transpose(g, tuple(np.argsort(perm))), save="none")


def transpose(a, perm=None, conjugate=False, name=None):
    x = convert(a)
    nd = x._data.ndim
    perm = tuple(range(nd))[::-1] if perm is None else _ints(perm, "perm", "transpose")
    if sorted(p % nd if nd else p for p in perm) != list(range(nd)) or len(perm) != nd:
        raise InvalidArgumentError(None, None, "transpose: perm %s is not a permutation of the %d axes of a tensor "
                                   "with shape %s" % (list(perm), nd, tuple(x._data.shape)))
    perm = tuple(p % nd for p in perm)
    return apply(_transpose, (x,), {"perm": perm})


def expand_dims(input, axis, name=None):  # noqa: A002
    x = convert(input)
    nd = x._data.ndim
    a = int(axis)
    if not -nd - 1 <= a <= nd:
        raise InvalidArgumentError(None, None, "expand_dims: axis %d is out of range for a tensor of rank %d "
                                   "(expected %d <= axis <= %d)" % (a, nd, -nd - 1, nd))
    a = a % (nd + 1)
    shape = tuple(x._data.shape)
    return reshape(x, shape[:a] + (1,) + shape[a:])


def squeeze(input, axis=None, name=None):  # noqa: A002
    x = convert(input)
    shape = tuple(x._data.shape)
    if axis is None:
        new = tuple(s for s in shape if s != 1)
    else:
        axes = normalize_axis(axis, len(shape), "squeeze")
        for a in axes:
            if shape[a] != 1:
                raise InvalidArgumentError(None, None, "squeeze: cannot squeeze axis %d of shape %s (size %d, "
                                           "expected 1)" % (a, shape, shape[a]))
        new = tuple(s for i, s in enumerate(shape) if i not in axes)
    return reshape(x, new)


_broadcast_to = defop("broadcast_to", lambda xp, x, shape: xp.broadcast_to(x, shape),
                      lambda F, g, out, x, shape: g, save="none")  # the tape sums g back to x's shape


def broadcast_to(input, shape, name=None):  # noqa: A002
    x = convert(input)
    shape = _ints(shape, "shape", "broadcast_to")
    return apply(_broadcast_to, (x,), {"shape": shape})


# --- concat / stack / split ---------------------------------------------------------------

def _concat_fwd(xp, *xs, axis, sizes):
    return xp.concatenate(xs, axis=axis)


def _concat_rule(k):
    def rule(F, g, out, *xs, axis, sizes):
        start = sum(sizes[:k])
        idx = (slice(None),) * axis + (slice(start, start + sizes[k]),)
        return F.getitem(g, idx)

    return rule


_concat = defop("concat", _concat_fwd, _concat_rule(0), _concat_rule(1), save="none")
_N_ARY = {}


def n_ary(op, rule_for, n):
    """A variadic op (concat, einsum) for n inputs: the op declared once with defop, copied with the rules
    rule_for(0) ... rule_for(n - 1), one per input (the tape zips a node's inputs with its op's rules)."""
    if len(op.rules) == n:
        return op
    key = (op.name, n)
    copy_n = _N_ARY.get(key)
    if copy_n is None:
        copy_n = _N_ARY[key] = copy.copy(op).defvjp(*[rule_for(k) for k in range(n)])
    return copy_n


def _same_dtype(ts, opname):
    dt = ts[0]._data.dtype
    for i, t in enumerate(ts):
        if t._data.dtype != dt:
            raise InvalidArgumentError(None, None, "%s: all values must have one dtype; value 0 is %s, value %d is %s"
                                       % (opname, dt, i, t._data.dtype))


def concat(values, axis, name=None):
    ts = [convert(v) for v in values]
    if not ts:
        raise ValueError("concat: values is empty")
    if len(ts) > 1 and any(isinstance(v, Tensor) for v in values):
        ref = next(v for v in values if isinstance(v, Tensor))
        ts = [t if isinstance(v, Tensor) else Tensor(t._data.astype(ref._data.dtype)) for t, v in zip(ts, values)]
    _same_dtype(ts, "concat")
    nd = ts[0]._data.ndim
    (a,) = normalize_axis(axis, nd, "concat")
    for i, t in enumerate(ts):
        s0, s = ts[0]._data.shape, t._data.shape
        if len(s) != nd or any(s[j] != s0[j] for j in range(nd) if j != a):
            raise InvalidArgumentError(None, None, "concat: value %d has shape %s, which does not match value 0's "
                                       "shape %s outside axis %d" % (i, tuple(s), tuple(s0), a))
    if len(ts) == 1:
        return ts[0]
    op = n_ary(_concat, _concat_rule, len(ts))
    return apply(op, tuple(ts), {"axis": a, "sizes": tuple(t._data.shape[a] for t in ts)})


def stack(values, axis=0, name=None):
    ts = [convert(v) for v in values]
    if not ts:
        raise ValueError("stack: values is empty")
    shape = tuple(ts[0]._data.shape)
    for i, t in enumerate(ts):
        if tuple(t._data.shape) != shape:
            raise InvalidArgumentError(None, None, "stack: all values must have one shape; value 0 has %s, value %d "
                                       "has %s" % (shape, i, tuple(t._data.shape)))
    nd = len(shape) + 1
    a = int(axis)
    if not -nd <= a < nd:
        raise InvalidArgumentError(None, None, "stack: axis %d is out of range for rank-%d values" % (a, nd - 1))
    return concat([expand_dims(t, a % nd) for t in ts], a % nd)


def _split_fwd(xp, x, axis, sizes):
    offs = np.cumsum(sizes)[:-1].tolist()
    return xp.split(x, offs, axis=axis)


def _split_rule(F, g, out, x, axis, sizes):
    return F.concatenate(list(g), axis=axis)


_split = defop("split", _split_fwd, _split_rule, save="none", multi_out=True)


def split(value, num_or_size_splits, axis=0, num=None, name=None):
    x = convert(value)
    (a,) = normalize_axis(axis, x._data.ndim, "split")
    n = x._data.shape[a]
    if isinstance(num_or_size_splits, (int, np.integer)):
        k = int(num_or_size_splits)
        if k <= 0 or n % k:
            raise InvalidArgumentError(None, None, "split: dimension %d of size %d cannot be split into %d equal "
                                       "parts" % (a, n, k))
        sizes = (n // k,) * k
    else:
        sizes = list(_ints(num_or_size_splits, "num_or_size_splits", "split"))
        if sizes.count(-1) == 1:
            sizes[sizes.index(-1)] = n - (sum(sizes) + 1)
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise InvalidArgumentError(None, None, "split: sizes %s do not add up to dimension %d of size %d"
                                       % (list(num_or_size_splits), a, n))
        sizes = tuple(sizes)
    return list(apply(_split, (x,), {"axis": a, "sizes": tuple(sizes)}))


def unstack(value, num=None, axis=0, name=None):
    x = convert(value)
    (a,) = normalize_axis(axis, x._data.ndim, "unstack")
    n = x._data.shape[a]
    if num is not None and int(num) != n:
        raise InvalidArgumentError(None, None, "unstack: num=%d but axis %d of shape %s has size %d"
                                   % (int(num), a, tuple(x._data.shape), n))
    if n == 0:
        return []
    return [squeeze(p, a) for p in split(x, n, a)]


def _tile_fwd(xp, x, multiples, shape):
    return xp.tile(x, multiples)


def _tile_rule(F, g, out, x, multiples, shape):
    # view g as [m0, s0, m1, s1, ...] and sum over the copies
    inter = []
    for m, s in zip(multiples, shape):
        inter += [m, s]
    return F.sum(F.reshape(g, tuple(inter)), axis=tuple(range(0, 2 * len(shape), 2)))


_tile = defop("tile", _tile_fwd, _tile_rule, save="none")


def tile(input, multiples, name=None):  # noqa: A002
    x = convert(input)
    m = _ints(multiples, "multiples", "tile")
    if len(m) != x._data.ndim:
        raise InvalidArgumentError(None, None, "tile: multiples has length %d, expected one per axis of the input "
                                   "(rank %d)" % (len(m), x._data.ndim))
    return apply(_tile, (x,), {"multiples": m, "shape": tuple(x._data.shape)})


def _pad_fwd(xp, x, pads, mode, value):
    if mode == "constant":
        return xp.pad(x, pads, mode="constant", constant_values=value)
    return xp.pad(x, pads, mode=mode)


def _pad_rule(F, g, out, x, pads, mode, value):
    idx = tuple(slice(lo, lo + s) for (lo, hi), s in zip(pads, F.shape(x)))
    if mode != "constant":
        return None
    return F.getitem(g, idx)


_pad = defop("pad", _pad_fwd, _pad_rule)


def pad(tensor, paddings, mode="CONSTANT", constant_values=0, name=None):
    x = convert(tensor)
    p = recorder.host_value(paddings).tolist() if isinstance(paddings, Tensor) else [list(r) for r in paddings]
    if len(p) != x._data.ndim or any(len(r) != 2 or min(r) < 0 for r in p):
        raise InvalidArgumentError(None, None, "pad: paddings must be [rank, 2] non-negative ints (rank %d), got %r"
                                   % (x._data.ndim, paddings))
    m = mode.lower()
    if m not in ("constant", "reflect", "symmetric"):
        raise ValueError("pad: mode must be CONSTANT, REFLECT or SYMMETRIC, got %r" % (mode,))
    if m != "constant":
        raise NotImplementedError("pad: only CONSTANT mode is differentiable in accel so far")
    return apply(_pad, (x,), {"pads": tuple(tuple(int(v) for v in r) for r in p), "mode": m,
                             "value": constant_values})


_reverse = defop("reverse", lambda xp, x, axes: xp.flip(x, axes), lambda F, g, out, x, axes: F.flip(g, axes),
                 save="none")


def reverse(tensor, axis, name=None):
    x = convert(tensor)
    axes = normalize_axis(axis, x._data.ndim, "reverse")
    return apply(_reverse, (x,), {"axes": axes})


# --- gather / indexing ----------------------------------------------------------------------

class RowGrad:
    """A cotangent that is zero outside some rows: dense[indices[i]] += values[i]."""

    __slots__ = ("values", "indices", "shape")
    __array_ufunc__ = None  # `dense + RowGrad` must come to __radd__, not become an object array

    def __init__(self, values, indices, shape):
        self.values = values
        self.indices = indices
        self.shape = tuple(shape)

    @property
    def dtype(self):
        return self.values.dtype

    def dense(self):
        xp = backend.xp_of(self.values)
        out = xp.zeros(self.shape, self.values.dtype)
        if not fusion.scatter_add_rows(out, self.indices, self.values):
            xp.add.at(out, self.indices, self.values)
        return out

    def __add__(self, other):
        xp = backend.xp_of(self.values)
        if isinstance(other, RowGrad):
            return RowGrad(xp.concatenate([self.values, other.values]),
                           xp.concatenate([self.indices, other.indices.astype(self.indices.dtype)]), self.shape)
        return self.dense() + other

    def __radd__(self, other):
        return other + self.dense()


def _check_indices(idx, dim, opname, what="indices"):
    if idx.size == 0:
        return
    xp = backend.xp_of(idx)
    lo, hi = int(xp.min(idx)), int(xp.max(idx))
    if lo < 0 or hi >= dim:
        bad = lo if lo < 0 else hi
        raise InvalidArgumentError(None, None, "%s: %s contains %d, outside [0, %d) for an axis of size %d"
                                   % (opname, what, bad, dim, dim))


def _gather_fwd(xp, params, indices, axis, batch_dims):
    if batch_dims == 0:
        return xp.take(params, indices, axis=axis)
    # batched: params [B..., N, rest], indices [B..., K...]
    bshape = params.shape[:batch_dims]
    nb = int(np.prod(bshape)) if bshape else 1
    p = params.reshape((nb,) + params.shape[batch_dims:])
    ii = indices.reshape((nb,) + indices.shape[batch_dims:])
    out = [xp.take(p[b], ii[b], axis=axis - batch_dims) for b in range(nb)]
    res = xp.stack(out) if out else xp.zeros((0,), params.dtype)
    return res.reshape(tuple(bshape) + res.shape[1:])


def _gather_rule(F, g, out, params, indices, axis, batch_dims):
    shape = F.shape(params)
    if batch_dims == 0 and axis == 0 and not isinstance(g, Tensor):
        # row-sparse: the tape densifies it only if something needs it dense (TF's IndexedSlices)
        return RowGrad(g.reshape((-1,) + tuple(shape[1:])), indices.reshape(-1), shape)
    if batch_dims == 0:
        return F.scatter_add(shape, F.dtype(params), indices, g, axis)
    if isinstance(g, Tensor):
        raise NotImplementedError("second-order gradients through batched gather are not supported yet")
    xp = F.xp
    bshape = shape[:batch_dims]
    nb = int(np.prod(bshape)) if bshape else 1
    gr = g.reshape((nb,) + g.shape[batch_dims:])
    ii = indices.reshape((nb,) + indices.shape[batch_dims:])
    res = xp.zeros((nb,) + tuple(shape[batch_dims:]), g.dtype)
    for b in range(nb):
        res[b] = F.scatter_add(tuple(shape[batch_dims:]), g.dtype, ii[b], gr[b], axis - batch_dims)
    return res.reshape(shape)


_gather = defop("gather", _gather_fwd, _gather_rule, None)


def gather(params, indices, validate_indices=None, axis=None, batch_dims=0, name=None):
    """params[indices] along `axis`; repeated indices accumulate their gradients."""
    p = convert(params)
    i = convert(indices)
    if i._data.dtype.kind not in "iu":
        raise InvalidArgumentError(None, None, "gather: indices must be int32 or int64, got %s" % i._data.dtype)
    nd = p._data.ndim
    if batch_dims < 0:
        batch_dims += i._data.ndim
    a = batch_dims if axis is None else int(axis)
    if not -nd <= a < nd:
        raise InvalidArgumentError(None, None, "gather: axis %d is out of range for params of rank %d" % (a, nd))
    a %= nd
    if a < batch_dims:
        raise InvalidArgumentError(None, None, "gather: axis (%d) must be >= batch_dims (%d)" % (a, batch_dims))
    _check_indices(i._data, p._data.shape[a], "gather")
    return apply(_gather, (p, i), {"axis": a, "batch_dims": int(batch_dims)})


def gather_nd(params, indices, batch_dims=0, name=None):
    p = convert(params)
    i = convert(indices)
    if batch_dims:
        raise NotImplementedError("gather_nd: batch_dims > 0 is not supported yet")
    if i._data.ndim == 0:
        raise InvalidArgumentError(None, None, "gather_nd: indices must have rank >= 1 (its last axis indexes "
                                   "params), got a scalar %s" % i._data[()])
    k = i._data.shape[-1]
    if k > p._data.ndim:
        raise InvalidArgumentError(None, None, "gather_nd: indices' last dimension %d exceeds params' rank %d"
                                   % (k, p._data.ndim))
    for j in range(k):
        _check_indices(i._data[..., j], p._data.shape[j], "gather_nd", "indices[..., %d]" % j)
    # flatten the first k axes and gather along them
    lead = p._data.shape[:k]
    strides = np.cumprod((1,) + tuple(lead[::-1]))[:-1][::-1]
    xp = backend.xp_of(i._data)
    flat_idx = (i._data * xp.asarray(np.array(strides, dtype=i._data.dtype))).sum(axis=-1)
    flat = reshape(p, (int(np.prod(lead)),) + tuple(p._data.shape[k:]))
    return gather(flat, Tensor(xp.asarray(flat_idx)))


def boolean_mask(tensor, mask, axis=None, name=None):
    x = convert(tensor)
    m = convert(mask)
    if m._data.dtype.kind != "b":
        raise InvalidArgumentError(None, None, "boolean_mask: mask must be bool, got %s" % m._data.dtype)
    a = 0 if axis is None else int(axis) % x._data.ndim
    k = m._data.ndim
    if tuple(x._data.shape[a:a + k]) != tuple(m._data.shape):
        raise InvalidArgumentError(None, None, "boolean_mask: mask shape %s does not match tensor shape %s at axis %d"
                                   % (tuple(m._data.shape), tuple(x._data.shape), a))
    xp = backend.xp_of(m._data)
    recorder.value_read(m)  # the result's shape depends on it
    idx = xp.nonzero(m._data.reshape(-1))[0]
    shape = tuple(x._data.shape)
    flat = reshape(x, shape[:a] + (int(np.prod(shape[a:a + k])),) + shape[a + k:])
    return gather(flat, Tensor(idx), axis=a)


def _getitem_fwd(xp, x, key, shape, advanced):
    return x[key]


def _getitem_rule(F, g, out, x, key, shape, advanced):
    if advanced:  # integer-array indexing may repeat positions: accumulate
        return F.scatter_index(shape, g, key)
    return F.setitem_zeros(shape, F.dtype(g), key, g)


_getitem = defop("getitem", _getitem_fwd, _getitem_rule, save="none")


class _IndexInput:
    """The place in a getitem key of the op's index input j (an int tensor): its value is an input of the
    op, not an attribute, so accel.function's plans read it on every call."""

    __slots__ = ("j",)

    def __init__(self, j):
        self.j = j

    def __eq__(self, other):
        return type(other) is _IndexInput and other.j == self.j

    def __hash__(self):
        return hash((_IndexInput, self.j))

    def __repr__(self):
        return "<index input %d>" % self.j


def _filled_key(key, indices):
    return tuple(indices[k.j] if type(k) is _IndexInput else k for k in key)


def _getitem_at_fwd(xp, x, *indices, key, shape, advanced):
    return x[_filled_key(key, indices)]


def _getitem_at_rule(F, g, out, x, *indices, key, shape, advanced):
    return _getitem_rule(F, g, out, x, _filled_key(key, indices), shape, advanced)


_MAX_INDEX_INPUTS = 32  # one rule slot per index input (None: no gradient); a key holds at most one per axis
_getitem_at = defop("getitem_at", _getitem_at_fwd, _getitem_at_rule, *([None] * _MAX_INDEX_INPUTS),
                    save="inputs")


def _normalize_key(key, x):
    """(key with Tensors as arrays, advanced, the int Tensors of the key by position): an int tensor of any
    rank is an input of getitem_at; a bool tensor's true positions decide the result's shape (a guard)."""
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    advanced = False
    index_tensors = {}
    for k in key:
        if isinstance(k, Tensor):
            t, k = k, k._data
            if k.dtype.kind in "iu":
                index_tensors[len(out)] = t
                if k.ndim == 0:
                    out.append(k)  # an int index for NumPy; not advanced (no repeats to accumulate)
                    continue
            elif k.dtype.kind == "b":
                recorder.value_read(t)
        if isinstance(k, list):
            k = np.asarray(k)
        if hasattr(k, "dtype") and hasattr(k, "ndim"):
            if k.dtype.kind == "b":
                advanced = True
            elif k.dtype.kind in "iu":
                advanced = True
            else:
                raise TypeError("index: tensors used as indices must be int or bool, got %s" % k.dtype)
            if type(k) is np.ndarray and type(x._data) is not np.ndarray:
                k = backend.to_device(k, backend.device_of(x._data))
        elif not (k is None or k is Ellipsis or isinstance(k, (int, np.integer, slice))):
            raise TypeError("index: only ints, slices, ..., None, and int or bool tensors are valid indices, "
                            "got %r" % (k,))
        out.append(k)
    return tuple(out), advanced, index_tensors


def _check_basic_bounds(key, shape):
    dim = 0
    n_ell = sum(1 for k in key if k is Ellipsis)
    if n_ell > 1:
        raise IndexError("index: an index can only have a single ellipsis ('...')")
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    if consumed > len(shape):
        raise IndexError("index: too many indices (%d) for a tensor of rank %d" % (consumed, len(shape)))
    for k in key:
        if k is Ellipsis:
            dim += len(shape) - consumed
            continue
        if k is None:
            continue
        if isinstance(k, (int, np.integer)):
            if not -shape[dim] <= k < shape[dim]:
                raise InvalidArgumentError(None, None, "index %d is out of bounds for axis %d with size %d"
                                           % (k, dim, shape[dim]))
        elif hasattr(k, "dtype") and k.dtype.kind in "iu":
            if k.size:
                xp = backend.xp_of(k)
                lo, hi = int(xp.min(k)), int(xp.max(k))
                if lo < -shape[dim] or hi >= shape[dim]:
                    raise InvalidArgumentError(None, None, "index %d is out of bounds for axis %d with size %d"
                                               % (hi if hi >= shape[dim] else lo, dim, shape[dim]))
        elif hasattr(k, "dtype") and k.dtype.kind == "b":
            dim += k.ndim
            continue
        dim += 1


def getitem(tensor, key):
    x = convert(tensor)
    key, advanced, index_tensors = _normalize_key(key, x)
    _check_basic_bounds(key, tuple(x._data.shape))
    attrs = {"shape": tuple(x._data.shape), "advanced": advanced}
    if not index_tensors:
        return apply(_getitem, (x,), dict(attrs, key=key))
    positions = sorted(index_tensors)
    if len(positions) > _MAX_INDEX_INPUTS:
        raise IndexError("index: at most %d tensors in one index, got %d" % (_MAX_INDEX_INPUTS, len(positions)))
    at = {p: _IndexInput(j) for j, p in enumerate(positions)}
    template = tuple(at.get(p, k) for p, k in enumerate(key))
    indices = [index_tensors[p] for p in positions]
    for j, t in enumerate(indices):
        if type(t._data) is not type(x._data):
            from accel.ops.creation import to_device  # noqa: PLC0415  (creation sits beside this module)

            indices[j] = to_device(t, backend.device_of(x._data))  # an op: a plan moves each call's indices
    return apply(_getitem_at, (x, *indices), dict(attrs, key=template))
