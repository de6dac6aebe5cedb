"""Convolution and pooling: tf.nn.conv1d/conv2d/conv2d_transpose/depthwise_conv2d and max/avg pooling.

Every op computes on channels-last (NHWC) arrays with explicit paddings; NCHW and 1-D forms transpose or
reshape around it. A convolution is im2col (a strided window view of the padded input, copied once into
rows) times the filter in one matmul; its input gradient scatters the rows back (col2im, one strided slice
add per kernel offset). The gradient ops are ops themselves, closed under differentiation, so nested tapes
give second-order gradients:
    conv2d(x, w)        -> dx = conv2d_input_grad(g, w),   dw = conv2d_filter_grad(x, g)
    conv2d_input_grad   -> d/dg = conv2d(G, w),            d/dw = conv2d_filter_grad(G, g)
    conv2d_filter_grad  -> d/dx = conv2d_input_grad(g, W), d/dg = conv2d(x, W)
"""

from __future__ import annotations

import numpy as np

from accel.errors import InvalidArgumentError
from accel.ops.core import ArrayNS, apply, convert, defop
from accel.ops.shape import reshape, transpose


def _call(F, op, args, attrs):
    """Runs `op` inside a rule: its forward on arrays, or the recorded op on Tensors (higher order)."""
    if isinstance(F, ArrayNS):
        return op.forward(F.xp, *args, **attrs)
    return apply(op, tuple(args), attrs)


# --- window helpers on NHWC arrays -------------------------------------------------------

def _out_size(size, k, s, d, pad):
    return (size + pad[0] + pad[1] - (k - 1) * d - 1) // s + 1


def _windows(xp, x, kh, kw, strides, dilations, pads, pad_value=0):
    """(n, oh, ow, kh, kw, c) strided view of the padded NHWC `x` (a view: copy before writing)."""
    (sh, sw), (dh, dw) = strides, dilations
    if any(pads[0]) or any(pads[1]):
        x = xp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), mode="constant", constant_values=pad_value)
    n, h, w, c = x.shape
    oh = (h - (kh - 1) * dh - 1) // sh + 1
    ow = (w - (kw - 1) * dw - 1) // sw + 1
    s0, s1, s2, s3 = x.strides
    return xp.lib.stride_tricks.as_strided(x, (n, oh, ow, kh, kw, c), (s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3))


def _col2im(xp, piece, in_shape, out_hw, ksize, strides, dilations, pads, dtype):
    """Adjoint of _windows: sums piece(i, j), the (n, oh, ow, c) values of kernel offset (i, j), back into
    an `in_shape` array. One contiguous piece per offset: a strided (n, oh, ow, kh, kw, c) source made
    this add 3x slower."""
    n, h, w, c = in_shape
    oh, ow = out_hw
    (kh, kw), (sh, sw), (dh, dw) = ksize, strides, dilations
    (pt, pb), (pl, pr) = pads
    # room for the padding and for windows that read the padding beyond it
    hp = max(h + pt + pb, (oh - 1) * sh + (kh - 1) * dh + 1)
    wp = max(w + pl + pr, (ow - 1) * sw + (kw - 1) * dw + 1)
    out = xp.zeros((n, hp, wp, c), dtype)
    for i in range(kh):
        for j in range(kw):
            view = out[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw, :]
            xp.add(view, piece(i, j), out=view)
    return out[:, pt: pt + h, pl: pl + w, :]


# --- convolution ---------------------------------------------------------------------------

def _conv_fwd(xp, x, w, strides, dilations, pads):
    kh, kw, cg, o = w.shape
    groups = x.shape[3] // cg
    win = _windows(xp, x, kh, kw, strides, dilations, pads)
    n, oh, ow = win.shape[:3]
    m = n * oh * ow
    if groups == 1:
        out = xp.matmul(win.reshape(m, kh * kw * cg), w.reshape(kh * kw * cg, o))
    else:
        og = o // groups
        cols = win.reshape(m, kh * kw, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, kh * kw * cg)
        wg = w.reshape(kh * kw * cg, groups, og).transpose(1, 0, 2)
        out = xp.matmul(cols, wg).transpose(1, 0, 2)
    return out.reshape(n, oh, ow, o)


def _input_grad_fwd(xp, g, w, in_shape, strides, dilations, pads):
    kh, kw, cg, o = w.shape
    n, oh, ow, _ = g.shape
    groups = in_shape[3] // cg
    m = n * oh * ow
    if groups == 1:
        g2 = g.reshape(m, o)

        def piece(i, j):
            return xp.matmul(g2, w[i, j].T).reshape(n, oh, ow, cg)
    else:
        og = o // groups
        gg = g.reshape(m, groups, og).transpose(1, 0, 2)

        def piece(i, j):
            wg = w[i, j].reshape(cg, groups, og).transpose(1, 2, 0)
            return xp.matmul(gg, wg).transpose(1, 0, 2).reshape(n, oh, ow, cg * groups)
    return _col2im(xp, piece, in_shape, (oh, ow), (kh, kw), strides, dilations, pads, g.dtype)


def _filter_grad_fwd(xp, x, g, w_shape, strides, dilations, pads):
    kh, kw, cg, o = w_shape
    groups = x.shape[3] // cg
    win = _windows(xp, x, kh, kw, strides, dilations, pads)
    n, oh, ow = win.shape[:3]
    m = n * oh * ow
    if groups == 1:
        return xp.matmul(win.reshape(m, kh * kw * cg).T, g.reshape(m, o)).reshape(w_shape)
    og = o // groups
    cols = win.reshape(m, kh * kw, groups, cg).transpose(2, 1, 3, 0).reshape(groups, kh * kw * cg, m)
    gg = g.reshape(m, groups, og).transpose(1, 0, 2)
    return xp.matmul(cols, gg).transpose(1, 0, 2).reshape(w_shape)


_conv = defop("conv2d", _conv_fwd)
_input_grad = defop("conv2d_input_grad", _input_grad_fwd)
_filter_grad = defop("conv2d_filter_grad", _filter_grad_fwd)


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


def _pool_geo(ksize, strides, pads):
    return {"ksize": ksize, "strides": strides, "dilations": (1, 1), "pads": pads}


def _max_pool_fwd(xp, x, ksize, strides, pads):
    win = _windows(xp, x, ksize[0], ksize[1], strides, (1, 1), pads, _lowest(x.dtype))
    return win.max(axis=(3, 4))


def _first_argmax(xp, x, ksize, strides, pads):
    """Index (row-major in the window) of each window's first maximum, as TF routes max-pool gradients."""
    win = _windows(xp, x, ksize[0], ksize[1], strides, (1, 1), pads, _lowest(x.dtype))
    n, oh, ow, kh, kw, c = win.shape
    return xp.argmax(win.reshape(n, oh, ow, kh * kw, c), axis=3)


def _max_pool_grad_fwd(xp, x, g, ksize, strides, pads):
    arg = _first_argmax(xp, x, ksize, strides, pads)
    zero = xp.zeros((), g.dtype)
    return _col2im(xp, lambda i, j: xp.where(arg == i * ksize[1] + j, g, zero), x.shape, g.shape[1:3], ksize,
                   strides, (1, 1), pads, g.dtype)


def _max_pool_grad_grad_fwd(xp, x, gx, ksize, strides, pads):
    arg = _first_argmax(xp, x, ksize, strides, pads)
    win = _windows(xp, gx, ksize[0], ksize[1], strides, (1, 1), pads)
    n, oh, ow, kh, kw, c = win.shape
    picked = xp.take_along_axis(win.reshape(n, oh, ow, kh * kw, c), xp.expand_dims(arg, 3), axis=3)
    return picked.reshape(n, oh, ow, c)


_max_pool = defop("max_pool", _max_pool_fwd)
_max_pool_grad = defop("max_pool_grad", _max_pool_grad_fwd)
_max_pool_grad_grad = defop("max_pool_grad_grad", _max_pool_grad_grad_fwd)
_max_pool.defvjp(lambda F, g, out, x, **a: _call(F, _max_pool_grad, (x, g), a))
# the routing is piecewise constant in x: no gradient flows to it
_max_pool_grad.defvjp(None, lambda F, gg, out, x, g, **a: _call(F, _max_pool_grad_grad, (x, gg), a))
_max_pool_grad_grad.defvjp(None, lambda F, gg, out, x, gx, **a: _call(F, _max_pool_grad, (x, gg), a))


def _counts(xp, in_hw, ksize, strides, pads, dtype):
    """How many input (not padding) elements each output window averages, (oh, ow, 1): TF's SAME avg."""
    per_axis = []
    for size, k, s, pad in zip(in_hw, ksize, strides, pads):
        start = xp.arange(_out_size(size, k, s, 1, pad)) * s - pad[0]
        per_axis.append(xp.minimum(start + k, size) - xp.maximum(start, 0))
    return (per_axis[0][:, None] * per_axis[1][None, :]).astype(dtype)[:, :, None]


def _avg_pool_fwd(xp, x, ksize, strides, pads):
    win = _windows(xp, x, ksize[0], ksize[1], strides, (1, 1), pads)
    return win.sum(axis=(3, 4)) / _counts(xp, x.shape[1:3], ksize, strides, pads, x.dtype)


def _avg_pool_grad_fwd(xp, g, in_shape, ksize, strides, pads):
    gs = g / _counts(xp, in_shape[1:3], ksize, strides, pads, g.dtype)
    return _col2im(xp, lambda i, j: gs, in_shape, g.shape[1:3], ksize, strides, (1, 1), pads, g.dtype)


_avg_pool = defop("avg_pool", _avg_pool_fwd)
_avg_pool_grad = defop("avg_pool_grad", _avg_pool_grad_fwd, save="none")  # its rule reads only gg
_avg_pool.defvjp(lambda F, g, out, x, **a: _call(F, _avg_pool_grad, (g,), dict(a, in_shape=F.shape(x))))
_avg_pool_grad.defvjp(lambda F, gg, out, g, in_shape, **a: _call(F, _avg_pool, (gg,), a))


# --- argument checks -----------------------------------------------------------------------

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


def _pads(padding, in_hw, ksize, strides, dilations, data_format, fn, explicit_ok=True):
    """((top, bottom), (left, right)) for 'SAME', 'VALID' or TF's explicit [[0, 0], [t, b], [l, r], [0, 0]]."""
    if isinstance(padding, str):
        if padding == "VALID":
            return tuple((0, 0) for _ in in_hw)
        if padding == "SAME":
            pads = []
            for size, k, s, d in zip(in_hw, ksize, strides, dilations):
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
    nd = len(in_hw)
    if pairs is None or len(pairs) != nd + 2 or any(len(p) != 2 for p in pairs):
        raise _err("%s: explicit padding must be %d pairs of ints, got %r", fn, nd + 2, padding)
    outer = [pairs[0], pairs[1]] if data_format.startswith("NC") else [pairs[0], pairs[-1]]
    if any(outer[0]) or any(outer[1]):
        raise _err("%s: explicit padding of the batch and channel dimensions must be 0, got %r", fn, padding)
    inner = pairs[2:] if data_format.startswith("NC") else pairs[1:-1]
    if any(v < 0 for p in inner for v in p):
        raise _err("%s: all explicit paddings must be nonnegative, got %r", fn, padding)
    return tuple(inner)


def _check_out(in_hw, ksize, strides, dilations, pads, fn):
    out = [_out_size(n, k, s, d, p) for n, k, s, d, p in zip(in_hw, ksize, strides, dilations, pads)]
    for n, k, d, o, p in zip(in_hw, ksize, dilations, out, pads):
        if o < 0:
            raise _err("%s: the window does not fit: computed output size would be negative (%d) [input size %d, "
                       "padding %s, effective filter size %d]", fn, o, n, list(p), (k - 1) * d + 1)
    return out


def _format(data_format, nd, fn):
    forms = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW")}[nd]
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


def _to_nhwc(x, data_format):
    return transpose(x, (0, 2, 3, 1)) if data_format == "NCHW" else x


def _from_nhwc(y, data_format):
    return transpose(y, (0, 3, 1, 2)) if data_format == "NCHW" else y


def _conv_nhwc(x, w, strides, dilations, pads):
    """The conv2d op on NHWC tensors with checked geometry (layers call this directly)."""
    return apply(_conv, (x, w), {"strides": tuple(strides), "dilations": tuple(dilations), "pads": tuple(pads)})


def _check_conv(x, w, strides, dilations, padding, data_format, fn, depthwise=False):
    _rank(x, 4, fn, "input", data_format)
    _rank(w, 4, fn, "filter", "[height, width, in_channels, out_channels]" if not depthwise else
          "[height, width, in_channels, channel_multiplier]")
    _same_dtype(x, w, fn)
    shape = tuple(x._data.shape)
    c = shape[1] if data_format == "NCHW" else shape[3]
    in_hw = shape[2:] if data_format == "NCHW" else shape[1:3]
    wc = w._data.shape[2]
    if depthwise and wc != c:
        raise _err("%s: input channels (%d) must equal the filter's in_channels (%d)", fn, c, wc)
    if wc == 0 or c % wc:
        raise _err("%s: input depth must be evenly divisible by filter depth: %d vs %d (input shape %s, filter "
                   "shape %s)", fn, c, wc, shape, tuple(w._data.shape))
    groups = c // wc
    if not depthwise and w._data.shape[3] % groups:
        raise _err("%s: the filter's out_channels (%d) must be divisible by the number of groups %d (input "
                   "channels %d / filter in_channels %d)", fn, w._data.shape[3], groups, c, wc)
    ksize = tuple(w._data.shape[:2])
    pads = _pads(padding, in_hw, ksize, strides, dilations, data_format, fn)
    _check_out(in_hw, ksize, strides, dilations, pads, fn)
    return pads


# --- public functions (tf.nn) --------------------------------------------------------------

def conv2d(input, filters, strides, padding, data_format="NHWC", dilations=None, name=None):
    """2-D cross-correlation, tf.nn.conv2d: `conv2d(x, w, 1, "SAME")` with x NHWC, w [kh, kw, in, out].

    filters with in_channels dividing the input's channels make a grouped convolution, as in TF.
    """
    fn = "conv2d"
    x, w = convert(input), convert(filters)
    data_format = _format(data_format, 2, fn)
    strides = _spatial(strides, 2, data_format, fn, "strides")
    dilations = _spatial(dilations, 2, data_format, fn, "dilations")
    pads = _check_conv(x, w, strides, dilations, padding, data_format, fn)
    return _from_nhwc(_conv_nhwc(_to_nhwc(x, data_format), w, strides, dilations, pads), data_format)


def conv1d(input, filters, stride, padding, data_format="NWC", dilations=None, name=None):
    """1-D cross-correlation, tf.nn.conv1d: x [batch, width, in] (NWC), w [k, in, out]."""
    fn = "conv1d"
    x, w = convert(input), convert(filters)
    data_format = _format(data_format, 1, fn)
    _rank(x, 3, fn, "input", data_format)
    _rank(w, 3, fn, "filter", "[width, in_channels, out_channels]")
    stride = _spatial(stride, 1, data_format, fn, "stride")
    dilations = _spatial(dilations, 1, data_format, fn, "dilations")
    if data_format == "NCW":
        x = transpose(x, (0, 2, 1))
    if not isinstance(padding, str):
        raise _err("%s: padding must be 'SAME' or 'VALID', got %r", fn, padding)
    y = conv2d(reshape(x, (x.shape[0], 1) + tuple(x.shape[1:])), reshape(w, (1,) + tuple(w.shape)),
               (1,) + stride, padding, "NHWC", (1,) + dilations)
    y = reshape(y, (y.shape[0],) + tuple(y.shape[2:]))
    return transpose(y, (0, 2, 1)) if data_format == "NCW" else y


def conv2d_transpose(input, filters, output_shape, strides, padding="SAME", data_format="NHWC", dilations=None,
                     name=None):
    """The gradient of conv2d with respect to its input, tf.nn.conv2d_transpose: w [kh, kw, out, in]."""
    fn = "conv2d_transpose"
    g, w = convert(input), convert(filters)
    data_format = _format(data_format, 2, fn)
    _rank(g, 4, fn, "input", data_format)
    _rank(w, 4, fn, "filter", "[height, width, output_channels, in_channels]")
    _same_dtype(g, w, fn)
    out_shape = tuple(int(v) for v in (output_shape.numpy() if hasattr(output_shape, "numpy") else output_shape))
    if len(out_shape) != 4:
        raise _err("%s: output_shape must have 4 elements, got %r", fn, output_shape)
    strides = _spatial(strides, 2, data_format, fn, "strides")
    dilations = _spatial(dilations, 2, data_format, fn, "dilations")
    nhwc = (out_shape[0], out_shape[2], out_shape[3], out_shape[1]) if data_format == "NCHW" else out_shape
    gs = tuple(g._data.shape)
    g_nhwc = (gs[0], gs[2], gs[3], gs[1]) if data_format == "NCHW" else gs
    kh, kw, co, ci = w._data.shape
    if g_nhwc[3] != ci:
        raise _err("%s: input channels (%d) must equal the filter's in_channels (last axis, %d)", fn, g_nhwc[3], ci)
    if nhwc[3] != co:
        raise _err("%s: output_shape's channels (%d) must equal the filter's output_channels (%d)", fn, nhwc[3], co)
    if nhwc[0] != g_nhwc[0]:
        raise _err("%s: output_shape's batch (%d) must equal the input's batch (%d)", fn, nhwc[0], g_nhwc[0])
    pads = _pads(padding, nhwc[1:3], (kh, kw), strides, dilations, data_format, fn)
    expect = _check_out(nhwc[1:3], (kh, kw), strides, dilations, pads, fn)
    if tuple(expect) != tuple(g_nhwc[1:3]):
        raise _err("%s: the input's spatial size %s does not match the size %s that a conv2d of output_shape %s "
                   "with this filter, strides and padding would produce", fn, tuple(g_nhwc[1:3]), tuple(expect),
                   out_shape)
    y = apply(_input_grad, (_to_nhwc(g, data_format), w),
              {"in_shape": nhwc, "strides": strides, "dilations": dilations, "pads": pads})
    return _from_nhwc(y, data_format)


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
    pads = _check_conv(x, w, strides, dilations, padding, data_format, fn, depthwise=True)
    kh, kw, c, mult = w._data.shape
    wg = reshape(w, (kh, kw, 1, c * mult))  # a grouped conv with one group per input channel
    return _from_nhwc(_conv_nhwc(_to_nhwc(x, data_format), wg, strides, dilations, pads), data_format)


def _pool(fn, op, input, ksize, strides, padding, data_format, nd):
    x = convert(input)
    forms = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW")}[nd]
    data_format = forms[0] if data_format is None else data_format
    data_format = _format(data_format, nd, fn)
    _rank(x, nd + 2, fn, "input", data_format)
    if x._data.dtype.kind not in "fiu":
        raise TypeError("%s: input must be a real number tensor, got %s" % (fn, x._data.dtype))
    ksize = _spatial(ksize, nd, data_format, fn, "ksize")
    strides = _spatial(strides, nd, data_format, fn, "strides")
    if nd == 1:
        if data_format == "NCW":
            x = transpose(x, (0, 2, 1))
        if not isinstance(padding, str):
            raise _err("%s: padding must be 'SAME' or 'VALID', got %r", fn, padding)
        y = _pool(fn, op, reshape(x, (x.shape[0], 1) + tuple(x.shape[1:])), (1,) + ksize, (1,) + strides,
                  padding, "NHWC", 2)
        y = reshape(y, (y.shape[0],) + tuple(y.shape[2:]))
        return transpose(y, (0, 2, 1)) if data_format == "NCW" else y
    shape = tuple(x._data.shape)
    in_hw = shape[2:] if data_format == "NCHW" else shape[1:3]
    pads = _pads(padding, in_hw, ksize, strides, (1, 1), data_format, fn, explicit_ok=op is _max_pool)
    _check_out(in_hw, ksize, strides, (1, 1), pads, fn)
    y = apply(op, (_to_nhwc(x, data_format),), {"ksize": ksize, "strides": strides, "pads": pads})
    return _from_nhwc(y, data_format)


def max_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):
    """The maximum of each window; the gradient goes to the window's first maximum (row-major), as in TF."""
    return _pool("max_pool2d", _max_pool, input, ksize, strides, padding, data_format, 2)


def avg_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):
    """The mean of each window; with 'SAME' padding a window averages only its input elements, as in TF."""
    return _pool("avg_pool2d", _avg_pool, input, ksize, strides, padding, data_format, 2)


def max_pool1d(input, ksize, strides, padding, data_format="NWC", name=None):
    return _pool("max_pool1d", _max_pool, input, ksize, strides, padding, data_format, 1)


def avg_pool1d(input, ksize, strides, padding, data_format="NWC", name=None):
    return _pool("avg_pool1d", _avg_pool, input, ksize, strides, padding, data_format, 1)


def _generic(fn, op, input, ksize, strides, padding, data_format):
    x = convert(input)
    nd = x._data.ndim - 2
    if nd not in (1, 2):
        raise _err("%s: input must be 3-D or 4-D here (3-D pooling is not supported), got shape %s", fn,
                   tuple(x._data.shape))
    if data_format is None:
        data_format = "NWC" if nd == 1 else "NHWC"
    return _pool(fn, op, x, ksize, strides, padding, data_format, nd)


def max_pool(input, ksize, strides, padding, data_format=None, name=None):
    """tf.nn.max_pool: max_pool1d or max_pool2d by the input's rank."""
    return _generic("max_pool", _max_pool, input, ksize, strides, padding, data_format)


def avg_pool(input, ksize, strides, padding, data_format=None, name=None):
    """tf.nn.avg_pool: avg_pool1d or avg_pool2d by the input's rank."""
    return _generic("avg_pool", _avg_pool, input, ksize, strides, padding, data_format)
