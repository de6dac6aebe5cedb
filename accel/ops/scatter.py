"""Scatter and segment ops, and the slicing/grid helpers that go with them: scatter_nd, tensor_scatter_nd_*,
segment_sum, unsorted_segment_sum, cumprod, meshgrid, slice, strided_slice (TF 2.21's semantics and gradients).

The scatter ops index through `flat`, the row numbers of `indices` in the output seen as (rows, row size):
the wrappers check the indices once (TF's InvalidArgumentError, naming the offending index) and the forwards
and rules then work on 2-D views, so every rule is a take or a scatter_add of rows.
"""

from __future__ import annotations

import builtins

import numpy as np

from accel import backend, recorder
from accel.errors import InvalidArgumentError
from accel.ops import fusion
from accel.ops.core import apply, convert, defop
from accel.ops.reduce import _cumsum_fwd, cumsum, normalize_axis
from accel.ops.shape import getitem, reshape
from accel.tensor import Tensor, to_array


_py_slice = builtins.slice  # `slice` below is TF's op


def _prod(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _int_list(value, what, opname):
    """A tuple of ints from a list, NumPy array or int Tensor; floats are an error, as in TF."""
    if isinstance(value, Tensor):
        recorder.value_read(value)
        value = backend.to_numpy(value._data)
    arr = np.asarray(value)
    if arr.size and arr.dtype.kind not in "iu":
        raise InvalidArgumentError(None, None, "%s: %s must be int32 or int64, got %s %r"
                                   % (opname, what, arr.dtype, value))
    if arr.ndim > 1:
        raise InvalidArgumentError(None, None, "%s: %s must be a vector, got shape %s" % (opname, what, arr.shape))
    return tuple(int(v) for v in arr.reshape(-1))


def _int_tensor(value, what, opname):
    t = convert(value)
    if t._data.dtype not in (np.int32, np.int64):
        raise InvalidArgumentError(None, None, "%s: %s must be int32 or int64, got %s"
                                   % (opname, what, t._data.dtype))
    return t


def _on_device_of(arr, like):
    """arr (an index array) on the device of array `like` (indices may come from the host)."""
    if type(arr) is type(like) and (type(arr) is np.ndarray or arr.device.id == like.device.id):
        return arr
    return backend.to_device(arr, backend.device_of(like))


def _add_rows(xp, out, idx, vals):
    """out[idx[i]] += vals[i] for 2-D out/vals (the GPU scatter kernel where it qualifies)."""
    if idx.shape[0] and not fusion.scatter_add_rows(out, idx, vals):
        xp.add.at(out, idx, vals)


def _where_rows(F, mask, g2):
    """g2 where the (rows, 1) bool array mask is False, else 0."""
    return F.where(mask, F.zeros_like(g2), g2)


def _raw(x):
    return x._data if isinstance(x, Tensor) else x


# --- scatter_nd and tensor_scatter_nd_* ---------------------------------------------------------

def _flat_rows(opname, indices, updates, shape):
    """Checks indices/updates against the output shape as TF does; returns (flat row ids, k).

    flat is int64 of length prod(indices.shape[:-1]), on updates' device."""
    idx = indices._data
    ishape = tuple(idx.shape)
    ushape = tuple(updates._data.shape)
    if len(ishape) < 1:
        raise InvalidArgumentError(None, None, "%s: indices must have rank >= 1 (its last axis indexes the output), "
                                   "got a scalar" % opname)
    if len(ushape) < 1:
        raise InvalidArgumentError(None, None, "%s: updates must have rank >= 1, got a scalar" % opname)
    k = ishape[-1]
    if not 1 <= k <= len(shape):
        raise InvalidArgumentError(None, None, "%s: the last dimension of indices (shape %s) is %d; it must be "
                                   "between 1 and the output's rank %d (output shape %s)"
                                   % (opname, list(ishape), k, len(shape), list(shape)))
    expected = ishape[:-1] + tuple(shape[k:])
    if ushape != expected:
        raise InvalidArgumentError(None, None, "%s: updates has shape %s, expected indices.shape[:-1] + "
                                   "shape[indices.shape[-1]:] = %s (indices shape %s, output shape %s)"
                                   % (opname, list(ushape), list(expected), list(ishape), list(shape)))
    n = _prod(ishape[:-1])
    if n and _prod(shape) == 0:
        raise InvalidArgumentError(None, None, "%s: indices and updates given for an empty output shape %s"
                                   % (opname, list(shape)))
    xp = backend.xp_of(idx)
    rows = idx.reshape(n, k).astype(np.int64)
    if n:
        dims = xp.asarray(np.asarray(shape[:k], np.int64))
        bad = ((rows < 0) | (rows >= dims)).any(axis=1)
        if bool(bad.any()):
            i = int(xp.argmax(bad))
            where = ",".join(str(int(j)) for j in np.unravel_index(i, ishape[:-1]))
            raise InvalidArgumentError(None, None, "%s: indices[%s] = %s does not index into shape %s"
                                       % (opname, where, backend.to_numpy(rows[i]).tolist(), list(shape)))
    strides = np.ones(k, np.int64)
    for j in range(k - 2, -1, -1):
        strides[j] = strides[j + 1] * shape[j + 1]
    flat = xp.ascontiguousarray((rows * xp.asarray(strides)).sum(axis=1)) if k > 1 else \
        xp.ascontiguousarray(rows[:, 0])
    return _on_device_of(flat, updates._data), k


def _rows(shape, k):
    return _prod(shape[:k]), _prod(shape[k:])


def _scatter_nd_fwd(xp, updates, flat, shape, k, upd_shape):
    p, r = _rows(shape, k)
    out = xp.zeros((p, r), updates.dtype)
    _add_rows(xp, out, flat, updates.reshape(flat.shape[0], r))
    return out.reshape(shape)


def _gather_rows(F, g, flat, shape, k, upd_shape):
    """gather_nd(g, indices): the rows of g the updates went to, in updates' shape."""
    return F.reshape(F.take(F.reshape(g, _rows(shape, k)), flat, 0), upd_shape)


_scatter_nd = defop("scatter_nd", _scatter_nd_fwd,
                    lambda F, g, out, updates, flat, shape, k, upd_shape: _gather_rows(F, g, flat, shape, k, upd_shape),
                    None)


def _shape_arg(shape, opname):
    nd = shape._data.ndim if isinstance(shape, Tensor) else 1 if isinstance(shape, (list, tuple)) else np.ndim(shape)
    if nd != 1:
        raise InvalidArgumentError(None, None, "%s: shape must be a vector (1-D) of ints, got %r" % (opname, shape))
    dims = _int_list(shape, "shape", opname)
    for d in dims:
        if d < 0:
            raise InvalidArgumentError(None, None, "%s: shape %s has a negative dimension %d"
                                       % (opname, list(dims), d))
    return dims


def scatter_nd(indices, updates, shape, name=None):
    """zeros(shape) with updates added at indices (repeated indices add up)."""
    i = _int_tensor(indices, "indices", "scatter_nd")
    u = convert(updates)
    dims = _shape_arg(shape, "scatter_nd")
    flat, k = _flat_rows("scatter_nd", i, u, dims)
    return apply(_scatter_nd, (u, Tensor(flat)), {"shape": dims, "k": k, "upd_shape": tuple(u._data.shape)})


def _last_of_each(xp, flat):
    """Positions of the last occurrence of each row id in flat (TF's CPU kernel: the last update wins)."""
    n = flat.shape[0]
    if n < 2:
        return xp.arange(n)
    order = xp.argsort(flat, kind="stable")
    s = flat[order]
    last = xp.ones(n, bool)
    last[:-1] = s[:-1] != s[1:]
    return order[last]


def _tsu_fwd(xp, tensor, flat, updates, shape, k, upd_shape):
    p, r = _rows(shape, k)
    out = tensor.reshape(p, r).copy()
    vals = updates.reshape(flat.shape[0], r)
    keep = _last_of_each(xp, flat)
    out[flat[keep]] = vals[keep]
    return out.reshape(shape)


def _hit_rows(F, flat, p):
    """A (p, 1) bool array, True on the rows flat names."""
    idx = _raw(flat)
    hit = backend.xp_of(idx).zeros((p, 1), bool)
    hit[idx] = True
    return hit


def _tsu_tensor_rule(F, g, out, tensor, flat, updates, shape, k, upd_shape):
    g2 = F.reshape(g, _rows(shape, k))
    return F.reshape(_where_rows(F, _hit_rows(F, flat, _rows(shape, k)[0]), g2), shape)


def _updates_rule(F, g, out, tensor, flat, updates, shape, k, upd_shape):
    return _gather_rows(F, g, flat, shape, k, upd_shape)


def _tss_updates_rule(F, g, out, tensor, flat, updates, shape, k, upd_shape):
    return F.negative(_gather_rows(F, g, flat, shape, k, upd_shape))


def _tsa_fwd(xp, tensor, flat, updates, shape, k, upd_shape, sign=1):
    p, r = _rows(shape, k)
    out = tensor.reshape(p, r).copy()
    vals = updates.reshape(flat.shape[0], r)
    _add_rows(xp, out, flat, vals if sign > 0 else -vals)
    return out.reshape(shape)


def _extreme_at(xp, kind, out, flat, vals):
    if not flat.shape[0]:
        return
    if type(out) is np.ndarray:
        getattr(np, kind).at(out, flat, vals)
    else:
        getattr(backend.cupyx(), "scatter_max" if kind == "maximum" else "scatter_min")(out, flat, vals)


def _minmax_fwd(kind):
    def forward(xp, tensor, flat, updates, shape, k, upd_shape):
        p, r = _rows(shape, k)
        out = tensor.reshape(p, r).copy()
        _extreme_at(xp, kind, out, flat, updates.reshape(flat.shape[0], r))
        return out.reshape(shape)

    return forward


def _minmax_parts(F, g, out, tensor, flat, updates, shape, k):
    """TF's rule: the gradient goes to every input equal to the output, split evenly among ties."""
    p, r = _rows(shape, k)
    dt = F.dtype(g)
    o2 = F.reshape(out, (p, r))
    x_ind = F.astype(F.equal(F.reshape(tensor, (p, r)), o2), dt)
    n = _prod(F.shape(flat))
    y_ind = F.astype(F.equal(F.reshape(updates, (n, r)), F.take(o2, flat, 0)), dt)
    ind = x_ind + F.scatter_add((p, r), dt, flat, y_ind, 0)
    return F.reshape(g, (p, r)), x_ind, y_ind, ind


def _minmax_tensor_rule(F, g, out, tensor, flat, updates, shape, k, upd_shape):
    g2, x_ind, _, ind = _minmax_parts(F, g, out, tensor, flat, updates, shape, k)
    return F.reshape(g2 * x_ind / ind, shape)


def _minmax_updates_rule(F, g, out, tensor, flat, updates, shape, k, upd_shape):
    g2, _, y_ind, ind = _minmax_parts(F, g, out, tensor, flat, updates, shape, k)
    return F.reshape(F.take(g2 / ind, flat, 0) * y_ind, upd_shape)


_pass_tensor = (lambda F, g, out, tensor, flat, updates, shape, k, upd_shape: g)  # noqa: E731

# the rules read the row ids (input 1) and, for min/max, the values and the output
_tsu = defop("tensor_scatter_nd_update", _tsu_fwd, _tsu_tensor_rule, None, _updates_rule)
_tsa = defop("tensor_scatter_nd_add", _tsa_fwd, _pass_tensor, None, _updates_rule)
_tss = defop("tensor_scatter_nd_sub", lambda xp, *a, **kw: _tsa_fwd(xp, *a, **kw, sign=-1),
             _pass_tensor, None, _tss_updates_rule)
_tsmin = defop("tensor_scatter_nd_min", _minmax_fwd("minimum"), _minmax_tensor_rule, None, _minmax_updates_rule,
               save="inputs+out")
_tsmax = defop("tensor_scatter_nd_max", _minmax_fwd("maximum"), _minmax_tensor_rule, None, _minmax_updates_rule,
               save="inputs+out")


def _tensor_scatter(op, tensor, indices, updates):
    opname = op.name
    t = convert(tensor)
    i = _int_tensor(indices, "indices", opname)
    if isinstance(updates, Tensor):
        u = updates
        if u._data.dtype != t._data.dtype:
            raise InvalidArgumentError(None, None, "%s: updates must have tensor's dtype %s, got %s"
                                       % (opname, t._data.dtype, u._data.dtype))
    else:
        u = Tensor(to_array(updates, t._data.dtype, backend.device_of(t._data)))
    shape = tuple(t._data.shape)
    flat, k = _flat_rows(opname, i, u, shape)
    return apply(op, (t, Tensor(flat), u), {"shape": shape, "k": k, "upd_shape": tuple(u._data.shape)})


def tensor_scatter_nd_update(tensor, indices, updates, name=None):
    """tensor with the slices at indices replaced by updates (of repeated indices, the last update wins)."""
    return _tensor_scatter(_tsu, tensor, indices, updates)


def tensor_scatter_nd_add(tensor, indices, updates, name=None):
    return _tensor_scatter(_tsa, tensor, indices, updates)


def tensor_scatter_nd_sub(tensor, indices, updates, name=None):
    return _tensor_scatter(_tss, tensor, indices, updates)


def tensor_scatter_nd_min(tensor, indices, updates, name=None):
    return _tensor_scatter(_tsmin, tensor, indices, updates)


def tensor_scatter_nd_max(tensor, indices, updates, name=None):
    return _tensor_scatter(_tsmax, tensor, indices, updates)


# --- segment sums ------------------------------------------------------------------------------

def _segment_fwd(xp, data, ids, num, rest, has_neg):
    r = _prod(rest)
    vals = data.reshape(ids.shape[0], r)
    if has_neg:  # TF drops rows with a negative id
        keep = ids >= 0
        ids, vals = ids[keep], vals[keep]
    out = xp.zeros((num, r), data.dtype)
    _add_rows(xp, out, ids, vals)
    return out.reshape((num,) + tuple(rest))


def _segment_rule(F, g, out, data, ids, num, rest, has_neg):
    shape = F.shape(data)
    if not has_neg:
        return F.reshape(F.take(F.reshape(g, (num, _prod(rest))), ids, 0), shape)
    if num == 0:
        return F.zeros_like(data)
    raw = _raw(ids)
    xp = backend.xp_of(raw)
    taken = F.take(F.reshape(g, (num, _prod(rest))), xp.maximum(raw, 0), 0)
    return F.reshape(_where_rows(F, (raw < 0).reshape(-1, 1), taken), shape)


_segment_sum = defop("segment_sum", _segment_fwd, _segment_rule, None)
_unsorted_segment_sum = defop("unsorted_segment_sum", _segment_fwd, _segment_rule, None)


def segment_sum(data, segment_ids, name=None):
    """Sums of data's rows per sorted segment id; output row j is the sum of rows with id j (0 if none)."""
    d = convert(data)
    s = _int_tensor(segment_ids, "segment_ids", "segment_sum")
    if d._data.ndim < 1:
        raise InvalidArgumentError(None, None, "segment_sum: data must have rank >= 1, got a scalar")
    if s._data.ndim != 1:
        raise InvalidArgumentError(None, None, "segment_sum: segment_ids must be a vector, got shape %s"
                                   % list(s._data.shape))
    n = s._data.shape[0]
    if n != d._data.shape[0]:
        raise InvalidArgumentError(None, None, "segment_sum: segment_ids has %d entries, expected one per row of "
                                   "data (shape %s)" % (n, list(d._data.shape)))
    ids = s._data.astype(np.int64)
    xp = backend.xp_of(ids)
    num = 0
    if n:
        if int(ids[0]) < 0:
            raise InvalidArgumentError(None, None, "segment_sum: segment_ids[0] = %d is negative" % int(ids[0]))
        down = ids[1:] < ids[:-1]
        if bool(down.any()):
            i = int(xp.argmax(down)) + 1
            raise InvalidArgumentError(None, None, "segment_sum: segment ids are not increasing: segment_ids[%d] = "
                                       "%d after segment_ids[%d] = %d" % (i, int(ids[i]), i - 1, int(ids[i - 1])))
        num = int(ids[-1]) + 1
    ids = _on_device_of(xp.ascontiguousarray(ids), d._data)
    return apply(_segment_sum, (d, Tensor(ids)),
                 {"num": num, "rest": tuple(d._data.shape[1:]), "has_neg": False})


def unsorted_segment_sum(data, segment_ids, num_segments, name=None):
    """Sums of data's slices per segment id, in any order; negative ids are dropped, as in TF."""
    d = convert(data)
    s = _int_tensor(segment_ids, "segment_ids", "unsorted_segment_sum")
    if isinstance(num_segments, Tensor):
        recorder.value_read(num_segments)
    ns = np.asarray(backend.to_numpy(num_segments._data) if isinstance(num_segments, Tensor) else num_segments)
    if ns.ndim != 0 or ns.dtype.kind not in "iu":
        raise InvalidArgumentError(None, None, "unsorted_segment_sum: num_segments must be an int scalar, got %r"
                                   % (num_segments,))
    num = int(ns)
    if num < 0:
        raise InvalidArgumentError(None, None, "unsorted_segment_sum: num_segments = %d must not be negative" % num)
    ishape = tuple(s._data.shape)
    dshape = tuple(d._data.shape)
    if dshape[:len(ishape)] != ishape:
        raise InvalidArgumentError(None, None, "unsorted_segment_sum: data.shape = %s does not start with "
                                   "segment_ids.shape = %s" % (list(dshape), list(ishape)))
    ids = s._data.reshape(-1).astype(np.int64)
    xp = backend.xp_of(ids)
    has_neg = False
    if ids.size:
        bad = ids >= num
        if bool(bad.any()):
            i = int(xp.argmax(bad))
            where = ",".join(str(int(j)) for j in np.unravel_index(i, ishape)) if ishape else ""
            raise InvalidArgumentError(None, None, "unsorted_segment_sum: segment_ids[%s] = %d is out of range "
                                       "[0, %d)" % (where, int(ids[i]), num))
        has_neg = bool((ids < 0).any())
    ids = _on_device_of(xp.ascontiguousarray(ids), d._data)
    return apply(_unsorted_segment_sum, (d, Tensor(ids)),
                 {"num": num, "rest": dshape[len(ishape):], "has_neg": has_neg})


# --- cumprod -----------------------------------------------------------------------------------

def _cumprod_fwd(xp, x, axis, exclusive, reverse):
    if reverse:
        x = xp.flip(x, axis)
    out = xp.cumprod(x, axis=axis, dtype=x.dtype)
    if exclusive and x.shape[axis]:
        lead = [_py_slice(None)] * x.ndim
        lead[axis] = _py_slice(0, -1)
        ones = list(x.shape)
        ones[axis] = 1
        out = xp.concatenate([xp.ones(ones, x.dtype), out[tuple(lead)]], axis=axis)
    return xp.flip(out, axis) if reverse else out


def _cumprod_rule(F, g, out, x, axis, exclusive, reverse):
    # TF's rule: cumsum(out * g) the other way, over x, with 0 where x == 0 (div_no_nan)
    s = out * g
    s = cumsum(s, axis, exclusive=exclusive, reverse=not reverse) if isinstance(s, Tensor) else \
        _cumsum_fwd(F.xp, s, axis, exclusive, not reverse)
    zero = F.equal(x, F.zeros_like(x))
    return F.where(zero, F.zeros_like(s), s / F.where(zero, F.ones_like(x), x))


_cumprod = defop("cumprod", _cumprod_fwd, _cumprod_rule, save="inputs+out")


def cumprod(x, axis=0, exclusive=False, reverse=False, name=None):
    """Cumulative product along axis (exclusive: starting from 1; reverse: from the end)."""
    x = convert(x)
    if x._data.ndim == 0:
        raise InvalidArgumentError(None, None, "cumprod: x must have rank >= 1, got a scalar")
    (a,) = normalize_axis(_int_list(axis, "axis", "cumprod") if isinstance(axis, Tensor) else axis,
                          x._data.ndim, "cumprod")
    return apply(_cumprod, (x,), {"axis": a, "exclusive": bool(exclusive), "reverse": bool(reverse)})


# --- meshgrid, slice, strided_slice -------------------------------------------------------------

_grid = defop("meshgrid", lambda xp, x, shape: xp.broadcast_to(x, shape).copy(),
              lambda F, g, out, x, shape: g,  # the tape sums g back over the broadcast axes
              save="none")


def meshgrid(*args, **kwargs):
    """N-D coordinate grids from N tensors (each flattened); indexing 'xy' swaps the first two axes."""
    indexing = kwargs.pop("indexing", "xy")
    kwargs.pop("name", None)
    if kwargs:
        raise TypeError("meshgrid: '%s' is an invalid keyword argument for this function" % next(iter(kwargs)))
    if indexing not in ("xy", "ij"):
        raise ValueError("meshgrid: indexing must be either 'xy' or 'ij', got %r" % (indexing,))
    ts = [convert(a) for a in args]
    for i, t in enumerate(ts):
        if t._data.dtype != ts[0]._data.dtype:
            raise InvalidArgumentError(None, None, "meshgrid: all inputs must have one dtype; input 0 is %s, input "
                                       "%d is %s" % (ts[0]._data.dtype, i, t._data.dtype))
    nd = len(ts)
    sizes = [int(t._data.size) for t in ts]
    views = [(1,) * i + (-1,) + (1,) * (nd - i - 1) for i in range(nd)]
    if indexing == "xy" and nd > 1:
        views[0], views[1] = (1, -1) + (1,) * (nd - 2), (-1, 1) + (1,) * (nd - 2)
        sizes[0], sizes[1] = sizes[1], sizes[0]
    return [apply(_grid, (reshape(t, v),), {"shape": tuple(sizes)}) for t, v in zip(ts, views)]


def slice(input_, begin, size, name=None):  # noqa: A001
    """input_[begin[i]:begin[i] + size[i]] on every axis; size -1 takes the rest of the axis."""
    x = convert(input_)
    shape = tuple(x._data.shape)
    b = _int_list(begin, "begin", "slice")
    s = _int_list(size, "size", "slice")
    if len(b) != len(shape) or len(s) != len(shape):
        raise InvalidArgumentError(None, None, "slice: begin and size must have one entry per axis of the input "
                                   "(rank %d), got %d and %d" % (len(shape), len(b), len(s)))
    key = []
    for i, (dim, lo, n) in enumerate(zip(shape, b, s)):
        if not 0 <= lo <= dim:
            raise InvalidArgumentError(None, None, "slice: expected begin[%d] in [0, %d], got %d (input shape %s)"
                                       % (i, dim, lo, list(shape)))
        if n == -1:
            n = dim - lo
        if not 0 <= n <= dim - lo:
            raise InvalidArgumentError(None, None, "slice: expected size[%d] in [0, %d] (or -1), got %d (begin %d, "
                                       "input shape %s)" % (i, dim - lo, n, lo, list(shape)))
        key.append(_py_slice(lo, lo + n))
    return getitem(x, tuple(key))


def strided_slice(input_, begin, end, strides=None, begin_mask=0, end_mask=0, ellipsis_mask=0, new_axis_mask=0,
                  shrink_axis_mask=0, var=None, name=None):
    """TF's strided slice: NumPy's basic indexing spelled as begin/end/strides vectors and bit masks."""
    x = convert(input_)
    shape = tuple(x._data.shape)
    b = _int_list(begin, "begin", "strided_slice")
    e = _int_list(end, "end", "strided_slice")
    st = (1,) * len(b) if strides is None else _int_list(strides, "strides", "strided_slice")
    if not len(b) == len(e) == len(st):
        raise InvalidArgumentError(None, None, "strided_slice: begin, end and strides must have one length, got %d, "
                                   "%d and %d" % (len(b), len(e), len(st)))
    if bin(ellipsis_mask & ((1 << len(b)) - 1)).count("1") > 1:
        raise InvalidArgumentError(None, None, "strided_slice: multiple ellipses in the slice spec (ellipsis_mask "
                                   "%d)" % ellipsis_mask)
    bit = [1 << i for i in range(len(b))]
    kinds = ["..." if ellipsis_mask & m else "new" if new_axis_mask & m else "one" if shrink_axis_mask & m
             else "range" for m in bit]
    consumed = sum(k in ("one", "range") for k in kinds)
    if consumed > len(shape):
        raise InvalidArgumentError(None, None, "strided_slice: the slice spec indexes %d axes, the input has only %d "
                                   "(shape %s)" % (consumed, len(shape), list(shape)))
    key = []
    dim = 0
    for i, kind in enumerate(kinds):
        if st[i] == 0:
            raise InvalidArgumentError(None, None, "strided_slice: strides[%d] must be non-zero" % i)
        if kind == "...":
            key.append(Ellipsis)
            dim += len(shape) - consumed
        elif kind == "new":
            key.append(None)
        elif kind == "one":
            if st[i] < 0:
                raise InvalidArgumentError(None, None, "strided_slice: only stride 1 is allowed on an axis that "
                                           "shrink_axis_mask removes (strides[%d] = %d)" % (i, st[i]))
            at = b[i]  # TF ignores begin_mask on a shrunk axis
            if not -shape[dim] <= at < shape[dim]:
                raise InvalidArgumentError(None, None, "strided_slice: slice index %d of dimension %d out of bounds "
                                           "(size %d)" % (at, dim, shape[dim]))
            key.append(at)
            dim += 1
        else:
            key.append(_py_slice(None if begin_mask & bit[i] else b[i], None if end_mask & bit[i] else e[i], st[i]))
            dim += 1
    return getitem(x, tuple(key))
