"""Convolution and pooling with 1, 2 or 3 spatial dimensions: tf.nn.conv1d/conv2d/conv3d, their transposes,
depthwise_conv2d, convolution, max/avg pooling and pool.

Every op computes on channels-last arrays (batch, *spatial, channels) with explicit paddings; channels-first
forms transpose around it. A convolution is im2col (a strided window view of the padded input, copied once
into rows) times the filter in one matmul; its input gradient scatters the rows back (col2im, one strided
slice add per kernel offset). The gradient ops are ops themselves, closed under differentiation, so nested
tapes give second-order gradients:
    conv(x, w)        -> dx = conv_input_grad(g, w),   dw = conv_filter_grad(x, g)
    conv_input_grad   -> d/dg = conv(G, w),            d/dw = conv_filter_grad(G, g)
    conv_filter_grad  -> d/dx = conv_input_grad(g, W), d/dg = conv(x, W)
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from accel import recorder
from accel.errors import InvalidArgumentError
from accel.ops.core import ArrayNS, apply, convert, defop
from accel.ops.shape import reshape, transpose
from accel.tensor import Tensor


def _call(F, op, args, attrs):
    """Runs `op` inside a rule: its forward on arrays, or the recorded op on Tensors (higher order)."""
    if isinstance(F, ArrayNS):
        return op.forward(F.xp, *args, **attrs)
    return apply(op, tuple(args), attrs)


# --- window helpers on channels-last arrays ------------------------------------------------

def _out_size(size, k, s, d, pad):
    return (size + pad[0] + pad[1] - (k - 1) * d - 1) // s + 1


def _windows(xp, x, ksize, strides, dilations, pads, pad_value=0):
    """(n, *out, *ksize, c) strided view of the padded channels-last `x` (a view: copy before writing)."""
    if any(any(p) for p in pads):
        x = xp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),), mode="constant", constant_values=pad_value)
    sizes, steps = x.shape[1:-1], x.strides[1:-1]
    out = tuple((n - (k - 1) * d - 1) // s + 1 for n, k, s, d in zip(sizes, ksize, strides, dilations))
    shape = (x.shape[0],) + out + tuple(ksize) + (x.shape[-1],)
    step = ((x.strides[0],) + tuple(t * s for t, s in zip(steps, strides))
            + tuple(t * d for t, d in zip(steps, dilations)) + (x.strides[-1],))
    return xp.lib.stride_tricks.as_strided(x, shape, step)


_CHUNK_ROWS = 4096  # output positions per host GEMM of a convolution: its window copy stays in cache


def _chunks(xp, n, per_item):
    """Slices of the batch axis for host convolutions, about _CHUNK_ROWS output positions each (the windows of
    a whole batch copied out at once and then read by one GEMM went through memory twice: 25 -> 17 ms for
    64x26x26x32 * 3x3x32x64); one slice on a GPU, where each chunk would be another launch."""
    per = n if xp is not np else max(1, _CHUNK_ROWS // max(per_item, 1))
    return [slice(s, min(s + per, n)) for s in range(0, n, per)] or [slice(0, 0)]


def _col2im(xp, piece, in_shape, out_sizes, ksize, strides, dilations, pads, dtype, chunked=False):
    """Adjoint of _windows: sums piece(t), the (n, *out, c) values of the kernel offset with row-major index t,
    back into an `in_shape` array. One contiguous piece per offset: a strided (n, oh, ow, kh, kw, c) source made
    this add 3x slower. chunked: piece(t, batch_slice) gives those values for a slice of the batch, summed
    in by batch chunks (_chunks)."""
    sizes = in_shape[1:-1]
    # room for the padding and for windows that read the padding beyond it
    room = tuple(max(n + p[0] + p[1], (o - 1) * s + (k - 1) * d + 1)
                 for n, o, k, s, d, p in zip(sizes, out_sizes, ksize, strides, dilations, pads))
    out = xp.zeros((in_shape[0],) + room + (in_shape[-1],), dtype)
    every = slice(None)
    keys = [tuple(slice(i * d, i * d + s * (o - 1) + 1, s) for i, o, s, d in zip(offset, out_sizes, strides, dilations))
            for offset in itertools.product(*map(range, ksize))]
    for rows in _chunks(xp, in_shape[0], math.prod(out_sizes)) if chunked else [every]:
        for t, key in enumerate(keys):
            view = out[(rows,) + key + (every,)]
            xp.add(view, piece(t, rows) if chunked else piece(t), out=view)
    return out[(every,) + tuple(slice(p[0], p[0] + n) for n, p in zip(sizes, pads)) + (every,)]


# --- convolution ---------------------------------------------------------------------------

def _conv_fwd(xp, x, w, strides, dilations, pads):
    *ksize, cg, o = w.shape
    kk = math.prod(ksize)
    groups = x.shape[-1] // cg
    win = _windows(xp, x, ksize, strides, dilations, pads)
    lead = win.shape[:x.ndim - 1]
    m = math.prod(lead)
    if groups == 1:
        out = xp.empty((m, o), xp.result_type(x, w))
        per_item = m // max(x.shape[0], 1)
        for rows in _chunks(xp, x.shape[0], per_item):
            part = win[rows]
            n = part.shape[0] * per_item
            xp.matmul(part.reshape(n, kk * cg), w.reshape(kk * cg, o), out=out[rows.start * per_item:][:n])
    else:
        og = o // groups
        cols = win.reshape(m, kk, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, kk * cg)
        wg = w.reshape(kk * cg, groups, og).transpose(1, 0, 2)
        out = xp.matmul(cols, wg).transpose(1, 0, 2)
    return out.reshape(lead + (o,))


def _input_grad_fwd(xp, g, w, in_shape, strides, dilations, pads):
    *ksize, cg, o = w.shape
    lead = g.shape[:-1]
    m = math.prod(lead)
    groups = in_shape[-1] // cg
    wk = w.reshape(math.prod(ksize), cg, o)
    if groups == 1:
        def piece(t, rows):
            part = g[rows]
            return xp.matmul(part.reshape(-1, o), wk[t].T).reshape(part.shape[:-1] + (cg,))

        return _col2im(xp, piece, in_shape, lead[1:], ksize, strides, dilations, pads, g.dtype, chunked=True)
    og = o // groups
    gg = g.reshape(m, groups, og).transpose(1, 0, 2)

    def grouped_piece(t):
        wg = wk[t].reshape(cg, groups, og).transpose(1, 2, 0)
        return xp.matmul(gg, wg).transpose(1, 0, 2).reshape(lead + (cg * groups,))

    return _col2im(xp, grouped_piece, in_shape, lead[1:], ksize, strides, dilations, pads, g.dtype)


def _filter_grad_fwd(xp, x, g, w_shape, strides, dilations, pads):
    *ksize, cg, o = w_shape
    kk = math.prod(ksize)
    groups = x.shape[-1] // cg
    win = _windows(xp, x, ksize, strides, dilations, pads)
    m = math.prod(win.shape[:x.ndim - 1])
    if groups == 1:
        total = None
        for rows in _chunks(xp, x.shape[0], m // max(x.shape[0], 1)):
            part, gp = win[rows], g[rows]
            n = math.prod(gp.shape[:-1])
            prod = xp.matmul(part.reshape(n, kk * cg).T, gp.reshape(n, o))
            total = prod if total is None else xp.add(total, prod, out=total)
        return total.reshape(w_shape)
    og = o // groups
    cols = win.reshape(m, kk, groups, cg).transpose(2, 1, 3, 0).reshape(groups, kk * cg, m)
    gg = g.reshape(m, groups, og).transpose(1, 0, 2)
    return xp.matmul(cols, gg).transpose(1, 0, 2).reshape(w_shape)


_conv = defop("conv", _conv_fwd)
_input_grad = defop("conv_input_grad", _input_grad_fwd)
_filter_grad = defop("conv_filter_grad", _filter_grad_fwd)


def _geo(a):
    return {"strides": a["strides"], "dilations": a["dilations"], "pads": a["pads"]}


_conv.defvjp(
    lambda F, g, out, x, w, **a: _call(F, _input_grad, (g, w), dict(_geo(a), in_shape=F.shape(x))),
    lambda F, g, out, x, w, **a: _call(F, _filter_grad, (x, g), dict(_geo(a), w_shape=F.shape(w))))
_input_grad.defvjp(
    lambda F, gg, out, g, w, **a: _call(F, _conv, (gg, w), _geo(a)),
    lambda F, gg, out, g, w, **a: _call(F, _filter_grad, (gg, g), dict(_geo(a), w_shape=F.shape(w))))
_filter_grad.defvjp(
    lambda F, gw, out, x, g, **a: _call(F, _input_grad, (g, gw), dict(_geo(a), in_shape=F.shape(x))),
    lambda F, gw, out, x, g, **a: _call(F, _conv, (x, gw), _geo(a)))


# --- pooling -------------------------------------------------------------------------------

def _lowest(dtype):
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _window_axes(nd):
    return tuple(range(nd + 1, 2 * nd + 1))


def _max_pool_fwd(xp, x, ksize, strides, dilations, pads):
    win = _windows(xp, x, ksize, strides, dilations, pads, _lowest(x.dtype))
    return win.max(axis=_window_axes(len(ksize)))


def _flat_windows(xp, x, ksize, strides, dilations, pads, pad_value=0):
    """(n, *out, k, c): each window's elements in row-major order on one axis."""
    win = _windows(xp, x, ksize, strides, dilations, pads, pad_value)
    nd = len(ksize)
    return win.reshape(win.shape[:nd + 1] + (math.prod(ksize), win.shape[-1]))


def _routes(xp, x, ksize, strides, dilations, pads):
    """route(t): where the window element at offset t (row-major) receives a max-pool output's gradient. As TF:
    MaxPool (1-D, 2-D) routes it to each window's first maximum only, MaxPool3D to every element equal to the
    maximum."""
    win = _windows(xp, x, ksize, strides, dilations, pads, _lowest(x.dtype))
    nd = len(ksize)
    lead = (slice(None),) * (nd + 1)
    at = [win[lead + offset] for offset in itertools.product(*map(range, ksize))]  # (n, *out, c) views
    top = win.max(axis=_window_axes(nd))
    if nd == 3:
        return lambda t: at[t] == top
    # each window's first maximum in row-major order, as argmax picks it (a NaN maximum: the first NaN),
    # without copying the windows out
    routes, taken = [], xp.zeros(top.shape, bool)
    for a in at:
        hit = (a == top) | (a != a)
        hit &= ~taken
        taken |= hit
        routes.append(hit)
    return routes.__getitem__


def _max_pool_grad_fwd(xp, x, g, ksize, strides, dilations, pads):
    route = _routes(xp, x, ksize, strides, dilations, pads)
    zero = xp.zeros((), g.dtype)
    return _col2im(xp, lambda t: xp.where(route(t), g, zero), x.shape, g.shape[1:-1], ksize, strides, dilations,
                   pads, g.dtype)


def _max_pool_grad_grad_fwd(xp, x, gx, ksize, strides, dilations, pads):
    route = _routes(xp, x, ksize, strides, dilations, pads)
    flat = _flat_windows(xp, gx, ksize, strides, dilations, pads)
    axis = len(ksize) + 1
    zero = xp.zeros((), gx.dtype)
    out = xp.where(route(0), xp.take(flat, 0, axis=axis), zero)
    for t in range(1, flat.shape[axis]):
        out += xp.where(route(t), xp.take(flat, t, axis=axis), zero)
    return out


_max_pool = defop("max_pool", _max_pool_fwd)
_max_pool_grad = defop("max_pool_grad", _max_pool_grad_fwd)
_max_pool_grad_grad = defop("max_pool_grad_grad", _max_pool_grad_grad_fwd)
_max_pool.defvjp(lambda F, g, out, x, **a: _call(F, _max_pool_grad, (x, g), a))
# the routing is piecewise constant in x: no gradient flows to it
_max_pool_grad.defvjp(None, lambda F, gg, out, x, g, **a: _call(F, _max_pool_grad_grad, (x, gg), a))
_max_pool_grad_grad.defvjp(None, lambda F, gg, out, x, gx, **a: _call(F, _max_pool_grad, (x, gg), a))


def _counts(xp, in_sizes, ksize, strides, dilations, pads, dtype):
    """How many input (not padding) elements each output window averages, (*out, 1): TF's SAME avg."""
    nd = len(ksize)
    total = None
    for axis, (size, k, s, d, pad) in enumerate(zip(in_sizes, ksize, strides, dilations, pads)):
        taps = xp.arange(_out_size(size, k, s, d, pad))[:, None] * s - pad[0] + xp.arange(k)[None, :] * d
        n = ((taps >= 0) & (taps < size)).sum(axis=1)
        n = n.reshape((-1,) + (1,) * (nd - 1 - axis))
        total = n if total is None else total * n
    return total.astype(dtype)[..., None]


def _avg_pool_fwd(xp, x, ksize, strides, dilations, pads):
    win = _windows(xp, x, ksize, strides, dilations, pads)
    return win.sum(axis=_window_axes(len(ksize))) / _counts(xp, x.shape[1:-1], ksize, strides, dilations, pads,
                                                             x.dtype)


def _avg_pool_grad_fwd(xp, g, in_shape, ksize, strides, dilations, pads):
    gs = g / _counts(xp, in_shape[1:-1], ksize, strides, dilations, pads, g.dtype)
    return _col2im(xp, lambda t: gs, in_shape, g.shape[1:-1], ksize, strides, dilations, pads, g.dtype)


_avg_pool = defop("avg_pool", _avg_pool_fwd)
_avg_pool_grad = defop("avg_pool_grad", _avg_pool_grad_fwd, save="none")  # its rule reads only gg
_avg_pool.defvjp(lambda F, g, out, x, **a: _call(F, _avg_pool_grad, (g,), dict(a, in_shape=F.shape(x))))
_avg_pool_grad.defvjp(lambda F, gg, out, g, in_shape, **a: _call(F, _avg_pool, (gg,), a))


# --- argument checks -----------------------------------------------------------------------

_FORMATS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
_SPATIAL = {1: "width", 2: "height, width", 3: "depth, height, width"}


def _err(msg, *args):
    return InvalidArgumentError(None, None, msg % args)


def _spatial(value, nd, data_format, fn, what, default=1):
    """TF's strides/dilations/ksize forms: an int, a list of 1, nd, or nd + 2 (batch and channel 1)."""
    if value is None:
        return (default,) * nd
    vals = [int(value)] if isinstance(value, (int, np.integer)) else [int(v) for v in value]
    if len(vals) == 1:
        vals = vals * nd
    elif len(vals) == nd + 2:
        outer = (vals[0], vals[1]) if data_format.startswith("NC") else (vals[0], vals[-1])
        if outer != (1, 1):
            raise _err("%s: %s in the batch and channel dimensions must be 1, got %s", fn, what, list(value))
        vals = vals[2:] if data_format.startswith("NC") else vals[1:-1]
    elif len(vals) != nd:
        raise _err("%s: %s must be an int or a list of 1, %d or %d ints, got %r", fn, what, nd, nd + 2, value)
    if any(v <= 0 for v in vals):
        raise _err("%s: %s must be positive, got %r", fn, what, value)
    return tuple(vals)


def _pads(padding, in_sizes, ksize, strides, dilations, data_format, fn, explicit_ok=True):
    """((before, after), ...) per spatial axis for 'SAME', 'VALID' or TF's explicit [[0, 0], [t, b], ..., [0, 0]]."""
    if isinstance(padding, str):
        if padding == "VALID":
            return tuple((0, 0) for _ in in_sizes)
        if padding == "SAME":
            pads = []
            for size, k, s, d in zip(in_sizes, ksize, strides, dilations):
                total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
                pads.append((total // 2, total - total // 2))  # the odd row/column goes at the bottom/right
            return tuple(pads)
        raise _err("%s: padding must be 'SAME', 'VALID' or a list of explicit paddings, got %r", fn, padding)
    if not explicit_ok:
        raise _err("%s: padding must be 'SAME' or 'VALID', got %r", fn, padding)
    try:
        pairs = [tuple(int(v) for v in p) for p in padding]
    except (TypeError, ValueError):
        pairs = None
    nd = len(in_sizes)
    if pairs is None or len(pairs) != nd + 2 or any(len(p) != 2 for p in pairs):
        raise _err("%s: explicit padding must be %d pairs of ints, got %r", fn, nd + 2, padding)
    outer = [pairs[0], pairs[1]] if data_format.startswith("NC") else [pairs[0], pairs[-1]]
    if any(outer[0]) or any(outer[1]):
        raise _err("%s: explicit padding of the batch and channel dimensions must be 0, got %r", fn, padding)
    inner = pairs[2:] if data_format.startswith("NC") else pairs[1:-1]
    if any(v < 0 for p in inner for v in p):
        raise _err("%s: all explicit paddings must be nonnegative, got %r", fn, padding)
    return tuple(inner)


def _check_out(in_sizes, ksize, strides, dilations, pads, fn):
    out = [_out_size(n, k, s, d, p) for n, k, s, d, p in zip(in_sizes, ksize, strides, dilations, pads)]
    for n, k, d, o, p in zip(in_sizes, ksize, dilations, out, pads):
        if o < 0:
            raise _err("%s: the window does not fit: computed output size would be negative (%d) [input size %d, "
                       "padding %s, effective filter size %d]", fn, o, n, list(p), (k - 1) * d + 1)
    return out


def _format(data_format, nd, fn):
    forms = _FORMATS[nd]
    if data_format not in forms:
        raise _err("%s: data_format must be %r or %r, got %r", fn, forms[0], forms[1], data_format)
    return data_format


def _rank(t, rank, fn, what, layout):
    if t._data.ndim != rank:
        raise _err("%s: %s must be %d-dimensional (%s), got shape %s", fn, what, rank, layout, tuple(t._data.shape))


def _same_dtype(x, w, fn):
    if x._data.dtype != w._data.dtype:
        raise _err("%s: input and filters must have the same dtype, got %s and %s", fn, x._data.dtype,
                   w._data.dtype)


def _last_shape(shape, data_format):
    """A shape in data_format as (batch, *spatial, channels)."""
    shape = tuple(shape)
    return (shape[0],) + shape[2:] + (shape[1],) if data_format.startswith("NC") else shape


def _to_last(x, data_format):
    if not data_format.startswith("NC"):
        return x
    r = len(x.shape)
    return transpose(x, (0,) + tuple(range(2, r)) + (1,))


def _from_last(y, data_format):
    if not data_format.startswith("NC"):
        return y
    r = len(y.shape)
    return transpose(y, (0, r - 1) + tuple(range(1, r - 1)))


def _conv_last(x, w, strides, dilations, pads):
    """The conv op on channels-last tensors with checked geometry (layers call this directly)."""
    return apply(_conv, (x, w), {"strides": tuple(strides), "dilations": tuple(dilations), "pads": tuple(pads)})


def _check_conv(x, w, nd, strides, dilations, padding, data_format, fn, depthwise=False, explicit_ok=True):
    _rank(x, nd + 2, fn, "input", data_format)
    _rank(w, nd + 2, fn, "filter", "[%s, in_channels, %s]" % (_SPATIAL[nd], "channel_multiplier" if depthwise
                                                              else "out_channels"))
    _same_dtype(x, w, fn)
    shape = _last_shape(x._data.shape, data_format)
    c, wc = shape[-1], w._data.shape[-2]
    if depthwise and wc != c:
        raise _err("%s: input channels (%d) must equal the filter's in_channels (%d)", fn, c, wc)
    if wc == 0 or c % wc:
        raise _err("%s: input depth must be evenly divisible by filter depth: %d vs %d (input shape %s, filter "
                   "shape %s)", fn, c, wc, tuple(x._data.shape), tuple(w._data.shape))
    groups = c // wc
    if not depthwise and w._data.shape[-1] % groups:
        raise _err("%s: the filter's out_channels (%d) must be divisible by the number of groups %d (input "
                   "channels %d / filter in_channels %d)", fn, w._data.shape[-1], groups, c, wc)
    ksize = tuple(w._data.shape[:nd])
    pads = _pads(padding, shape[1:-1], ksize, strides, dilations, data_format, fn, explicit_ok)
    _check_out(shape[1:-1], ksize, strides, dilations, pads, fn)
    return pads


# --- public functions (tf.nn) --------------------------------------------------------------

def _strides_or_dilations(strides, dilations, fn):
    """TF's rule for convolution and pool: strides above 1 and dilations above 1 not both."""
    if max(strides) > 1 and max(dilations) > 1:
        raise _err("%s: strides > 1 are not supported together with dilations > 1, got strides %s and "
                   "dilations %s", fn, list(strides), list(dilations))


def _convolve(fn, nd, input, filters, strides, padding, data_format, dilations, explicit_ok=True, stride="strides"):
    x, w = convert(input), convert(filters)
    data_format = _format(data_format, nd, fn)
    strides = _spatial(strides, nd, data_format, fn, stride)
    dilations = _spatial(dilations, nd, data_format, fn, "dilations")
    pads = _check_conv(x, w, nd, strides, dilations, padding, data_format, fn, explicit_ok=explicit_ok)
    return _from_last(_conv_last(_to_last(x, data_format), w, strides, dilations, pads), data_format)


def conv1d(input, filters, stride, padding, data_format="NWC", dilations=None, name=None):
    """1-D cross-correlation, tf.nn.conv1d: x [batch, width, in] (NWC), w [k, in, out]."""
    return _convolve("conv1d", 1, input, filters, stride, padding, data_format, dilations, explicit_ok=False,
                     stride="stride")


def conv2d(input, filters, strides, padding, data_format="NHWC", dilations=None, name=None):
    """2-D cross-correlation, tf.nn.conv2d: `conv2d(x, w, 1, "SAME")` with x NHWC, w [kh, kw, in, out].

    filters with in_channels dividing the input's channels make a grouped convolution, as in TF.
    """
    return _convolve("conv2d", 2, input, filters, strides, padding, data_format, dilations)


def conv3d(input, filters, strides, padding, data_format="NDHWC", dilations=None, name=None):
    """3-D cross-correlation, tf.nn.conv3d: x [batch, depth, height, width, in] (NDHWC), w [kd, kh, kw, in, out].

    Also takes what TF's CPU kernel refuses (TF's GPU kernels take it): NCDHW, dilations, grouped filters,
    explicit paddings.
    """
    return _convolve("conv3d", 3, input, filters, strides, padding, data_format, dilations)


def convolution(input, filters, strides=None, padding="VALID", data_format=None, dilations=None, name=None):
    """tf.nn.convolution: conv1d, conv2d or conv3d by the filter's rank (3, 4 or 5); input dimensions before
    the last 1 + spatial + 1 are batch dimensions. `strides` and `dilations` > 1 cannot be combined."""
    fn = "convolution"
    x, w = convert(input), convert(filters)
    nd = w._data.ndim - 2
    if nd not in _FORMATS:
        raise _err("%s: filters must be 3-, 4- or 5-dimensional ([*spatial, in_channels, out_channels] with 1, 2 "
                   "or 3 spatial dimensions), got shape %s", fn, tuple(w._data.shape))
    if x._data.ndim < nd + 2:
        raise _err("%s: input must have at least %d dimensions for a filter of shape %s, got shape %s", fn,
                   nd + 2, tuple(w._data.shape), tuple(x._data.shape))
    data_format = _format(_FORMATS[nd][0] if data_format is None else data_format, nd, fn)
    strides = _spatial(strides, nd, data_format, fn, "strides")
    dilations = _spatial(dilations, nd, data_format, fn, "dilations")
    _strides_or_dilations(strides, dilations, fn)
    batch = tuple(x._data.shape[:x._data.ndim - nd - 1])
    if len(batch) > 1:
        x = reshape(x, (-1,) + tuple(x._data.shape[len(batch):]))
    y = _convolve(fn, nd, x, w, strides, padding, data_format, dilations)
    return reshape(y, batch + tuple(y.shape[1:])) if len(batch) > 1 else y


def _conv_transpose(fn, nd, input, filters, output_shape, strides, padding, data_format, dilations):
    g, w = convert(input), convert(filters)
    data_format = _format(data_format, nd, fn)
    _rank(g, nd + 2, fn, "input", data_format)
    _rank(w, nd + 2, fn, "filter", "[%s, output_channels, in_channels]" % _SPATIAL[nd])
    _same_dtype(g, w, fn)
    if isinstance(output_shape, Tensor):
        output_shape = recorder.host_value(output_shape)
    out_shape = tuple(int(v) for v in output_shape)
    if len(out_shape) != nd + 2:
        raise _err("%s: output_shape must have %d elements, got %r", fn, nd + 2, output_shape)
    strides = _spatial(strides, nd, data_format, fn, "strides")
    dilations = _spatial(dilations, nd, data_format, fn, "dilations")
    last = _last_shape(out_shape, data_format)
    g_last = _last_shape(g._data.shape, data_format)
    *ksize, co, ci = w._data.shape
    if g_last[-1] != ci:
        raise _err("%s: input channels (%d) must equal the filter's in_channels (last axis, %d)", fn, g_last[-1], ci)
    if last[-1] != co:
        raise _err("%s: output_shape's channels (%d) must equal the filter's output_channels (%d)", fn, last[-1], co)
    if last[0] != g_last[0]:
        raise _err("%s: output_shape's batch (%d) must equal the input's batch (%d)", fn, last[0], g_last[0])
    pads = _pads(padding, last[1:-1], ksize, strides, dilations, data_format, fn)
    expect = _check_out(last[1:-1], ksize, strides, dilations, pads, fn)
    if tuple(expect) != tuple(g_last[1:-1]):
        raise _err("%s: the input's spatial size %s does not match the size %s that a conv%dd of output_shape %s "
                   "with this filter, strides and padding would produce", fn, tuple(g_last[1:-1]), tuple(expect),
                   nd, out_shape)
    y = apply(_input_grad, (_to_last(g, data_format), w),
              {"in_shape": last, "strides": strides, "dilations": dilations, "pads": pads})
    return _from_last(y, data_format)


def conv2d_transpose(input, filters, output_shape, strides, padding="SAME", data_format="NHWC", dilations=None,
                     name=None):
    """The gradient of conv2d with respect to its input, tf.nn.conv2d_transpose: w [kh, kw, out, in]."""
    return _conv_transpose("conv2d_transpose", 2, input, filters, output_shape, strides, padding, data_format,
                           dilations)


def conv3d_transpose(input, filters, output_shape, strides, padding="SAME", data_format="NDHWC", dilations=None,
                     name=None):
    """The gradient of conv3d with respect to its input, tf.nn.conv3d_transpose: w [kd, kh, kw, out, in]."""
    return _conv_transpose("conv3d_transpose", 3, input, filters, output_shape, strides, padding, data_format,
                           dilations)


def depthwise_conv2d(input, filter, strides, padding, data_format=None, dilations=None, name=None):
    """Per-channel convolution, tf.nn.depthwise_conv2d: w [kh, kw, in, multiplier] -> in * multiplier
    channels, output channel c * multiplier + m."""
    fn = "depthwise_conv2d"
    x, w = convert(input), convert(filter)
    data_format = _format(data_format or "NHWC", 2, fn)
    strides = _spatial(strides, 2, data_format, fn, "strides")
    dilations = _spatial(dilations, 2, data_format, fn, "dilations")
    if max(dilations) > 1 and max(strides) > 1:
        raise _err("%s: dilations > 1 require all strides to be 1, got strides %s and dilations %s", fn,
                   list(strides), list(dilations))
    pads = _check_conv(x, w, 2, strides, dilations, padding, data_format, fn, depthwise=True)
    kh, kw, c, mult = w._data.shape
    wg = reshape(w, (kh, kw, 1, c * mult))  # a grouped conv with one group per input channel
    return _from_last(_conv_last(_to_last(x, data_format), wg, strides, dilations, pads), data_format)


def _pool(fn, op, input, ksize, strides, padding, data_format, nd, dilations=None):
    x = convert(input)
    data_format = _format(_FORMATS[nd][0] if data_format is None else data_format, nd, fn)
    _rank(x, nd + 2, fn, "input", data_format)
    if x._data.dtype.kind not in "fiu":
        raise TypeError("%s: input must be a real number tensor, got %s" % (fn, x._data.dtype))
    ksize = _spatial(ksize, nd, data_format, fn, "ksize")
    strides = _spatial(strides, nd, data_format, fn, "strides")
    dilations = _spatial(dilations, nd, data_format, fn, "dilations")
    in_sizes = _last_shape(x._data.shape, data_format)[1:-1]
    pads = _pads(padding, in_sizes, ksize, strides, dilations, data_format, fn,
                 explicit_ok=op is _max_pool and nd > 1)
    _check_out(in_sizes, ksize, strides, dilations, pads, fn)
    y = apply(op, (_to_last(x, data_format),), {"ksize": ksize, "strides": strides, "dilations": dilations,
                                                "pads": pads})
    return _from_last(y, data_format)


def max_pool1d(input, ksize, strides, padding, data_format="NWC", name=None):
    return _pool("max_pool1d", _max_pool, input, ksize, strides, padding, data_format, 1)


def avg_pool1d(input, ksize, strides, padding, data_format="NWC", name=None):
    return _pool("avg_pool1d", _avg_pool, input, ksize, strides, padding, data_format, 1)


def max_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):
    """The maximum of each window; the gradient goes to the window's first maximum (row-major), as in TF."""
    return _pool("max_pool2d", _max_pool, input, ksize, strides, padding, data_format, 2)


def avg_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):
    """The mean of each window; with 'SAME' padding a window averages only its input elements, as in TF."""
    return _pool("avg_pool2d", _avg_pool, input, ksize, strides, padding, data_format, 2)


def max_pool3d(input, ksize, strides, padding, data_format="NDHWC", name=None):
    """max_pool2d with a depth axis, tf.nn.max_pool3d: x [batch, depth, height, width, channels]."""
    return _pool("max_pool3d", _max_pool, input, ksize, strides, padding, data_format, 3)


def avg_pool3d(input, ksize, strides, padding, data_format="NDHWC", name=None):
    """avg_pool2d with a depth axis, tf.nn.avg_pool3d: x [batch, depth, height, width, channels]."""
    return _pool("avg_pool3d", _avg_pool, input, ksize, strides, padding, data_format, 3)


def _generic(fn, op, input, ksize, strides, padding, data_format):
    x = convert(input)
    nd = x._data.ndim - 2
    if nd not in _FORMATS:
        raise _err("%s: input must be 3-, 4- or 5-dimensional (1, 2 or 3 spatial dimensions), got shape %s", fn,
                   tuple(x._data.shape))
    return _pool(fn, op, x, ksize, strides, padding, data_format, nd)


def max_pool(input, ksize, strides, padding, data_format=None, name=None):
    """tf.nn.max_pool: max_pool1d, max_pool2d or max_pool3d by the input's rank."""
    return _generic("max_pool", _max_pool, input, ksize, strides, padding, data_format)


def avg_pool(input, ksize, strides, padding, data_format=None, name=None):
    """tf.nn.avg_pool: avg_pool1d, avg_pool2d or avg_pool3d by the input's rank."""
    return _generic("avg_pool", _avg_pool, input, ksize, strides, padding, data_format)


def pool(input, window_shape, pooling_type, strides=None, padding="VALID", data_format=None, dilations=None,
         name=None):
    """tf.nn.pool: 'MAX' or 'AVG' pooling over len(window_shape) (1, 2 or 3) spatial dimensions. Dilated windows
    (dilations > 1) need strides 1 and 'VALID' padding, as in TF."""
    fn = "pool"
    try:
        window = tuple(int(v) for v in window_shape)
    except (TypeError, ValueError):
        window = ()
    nd = len(window)
    if nd not in _FORMATS:
        raise _err("%s: window_shape must be a list of 1, 2 or 3 ints, got %r", fn, window_shape)
    ops = {"MAX": _max_pool, "AVG": _avg_pool}
    if pooling_type not in ops:
        raise _err("%s: pooling_type must be 'MAX' or 'AVG', got %r", fn, pooling_type)
    fmt = _format(_FORMATS[nd][0] if data_format is None else data_format, nd, fn)
    strides = _spatial(strides, nd, fmt, fn, "strides")
    dilations = _spatial(dilations, nd, fmt, fn, "dilations")
    _strides_or_dilations(strides, dilations, fn)
    if max(dilations) > 1 and padding != "VALID":
        raise _err("%s: dilations > 1 need padding 'VALID' (TF has no 'SAME' dilated pooling), got %r", fn, padding)
    return _pool(fn, ops[pooling_type], input, window, strides, padding, fmt, nd, dilations)
