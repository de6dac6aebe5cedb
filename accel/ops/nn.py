"""Neural-network ops: activations, softmax, cross-entropies, dropout, moments, bias_add."""

from __future__ import annotations

import math


from accel import backend, random as _random
from accel.errors import InvalidArgumentError
from accel.ops import fusion
from accel.ops.core import Op, apply, defop, convert, convert_pair, erf_array
from accel.ops.creation import one_hot
from accel.ops.elementwise import _sigmoid_fwd, greater_equal, maximum, rsqrt, sigmoid, sigmoid_of, square, unary
from accel.ops.reduce import normalize_axis, reduce_mean, reduce_sum
from accel.ops.shape import squeeze
from accel.tensor import Tensor

# TensorFlow's subgradient at the kinks: relu'(0) = 0, relu6'(6) = 0
relu = unary("relu", lambda xp, x: xp.maximum(x, 0), lambda F, g, out, x: F.where(out > 0, g, 0),
             save="out", dtypes="any", fused=fusion.Generated())
relu6 = unary("relu6", lambda xp, x: xp.minimum(xp.maximum(x, 0), 6),
              lambda F, g, out, x: F.where((x > 0) & (x < 6), g, 0), fused=fusion.Generated())

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _elu_fwd(xp, x, alpha=1.0):
    return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))


# TF's EluGrad and SeluGrad, from the output alone (out < 0 exactly where x < 0)
elu = unary("elu", _elu_fwd, lambda F, g, out, x: F.where(out < 0, g * (out + 1), g), save="out",
            fused=fusion.Generated())
selu = unary("selu", lambda xp, x: _SELU_SCALE * _elu_fwd(xp, x, _SELU_ALPHA),
             lambda F, g, out, x: F.where(out < 0, g * (out + _SELU_SCALE * _SELU_ALPHA), g * _SELU_SCALE),
             save="out", fused=fusion.Generated())
_leaky = defop("leaky_relu", lambda xp, x, alpha: xp.where(x > 0, x, x * alpha),
               lambda F, g, out, x, alpha: F.where(x > 0, g, g * alpha),
               elementwise=True, dtypes="float", fused=fusion.Generated(scalars=("alpha",)))


def leaky_relu(features, alpha=0.2, name=None):
    x = convert(features)
    _leaky.check_dtype(x)
    return apply(_leaky, (x,), {"alpha": float(alpha)})


def _silu_fwd(xp, x):
    return x * _sigmoid_fwd(xp, x)


def _silu_rule(F, g, out, x):
    s = sigmoid_of(F, x)
    return g * (s * (1 + x * (1 - s)))


silu = unary("silu", _silu_fwd, _silu_rule, fused=fusion.Generated())


def _tanh_softplus(xp, x):
    """tanh(softplus(x)) from one exp(-|x|) and no overflow: with e = exp(-|x|), (1 + 2e) / (1 + 2e + 2e^2)
    for x > 0 and (e^2 + 2e) / (e^2 + 2e + 2) otherwise."""
    e = xp.exp(-xp.abs(x))
    p = 1 + 2 * e
    q = e * (e + 2)
    return xp.where(x > 0, p / (p + 2 * e * e), q / (q + 2))


def _mish_rule(F, g, out, x):
    t = _tanh_softplus(F, x)  # mish' = tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x), sp = softplus(x)
    return g * (t + x * (1 - t * t) * sigmoid_of(F, x))


# Keras 3's activations.mish, x * tanh(softplus(x))
mish = unary("mish", lambda xp, x: x * _tanh_softplus(xp, x), _mish_rule, fused=fusion.Generated())


def swish(features, beta=1.0, name=None):
    if beta == 1.0:
        return silu(features)
    x = convert(features)
    return x * sigmoid(x * beta)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_fwd(xp, x, approximate):
    if approximate:
        return 0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1 + erf_array(xp, x / math.sqrt(2.0)))


def _gelu_rule(F, g, out, x, approximate):
    if approximate:
        # 0.5 (1 + tanh v) = sigmoid(2v) and 0.5 (1 - tanh(v)^2) = 2 sigmoid(2v) sigmoid(-2v): one exp, and
        # no cancellation for x << 0
        v2 = 2 * _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        s, s_neg = sigmoid_of(F, v2), sigmoid_of(F, -v2)
        return g * (s + 2 * x * s * s_neg * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x))
    u = x / math.sqrt(2.0)  # Phi(x) = (1 + erf(u)) / 2, phi(x) = exp(-u^2) / sqrt(2 pi)
    cdf = 0.5 * (1 + F.erf(u))
    pdf = F.exp(-(u * u)) / math.sqrt(2 * math.pi)
    return g * (cdf + x * pdf)


_gelu = defop("gelu", _gelu_fwd, _gelu_rule, elementwise=True, dtypes="float",
              fused=fusion.Generated({"gelu": {"approximate": False}, "gelu_tanh": {"approximate": True}}))


def gelu(features, approximate=False, name=None):
    x = convert(features)
    _gelu.check_dtype(x)
    return apply(_gelu, (x,), {"approximate": bool(approximate)})


# --- softmax family -------------------------------------------------------------------------

def _softmax_fwd(xp, x, axis):
    m = xp.max(x, axis=axis, keepdims=True) if x.size else x
    e = xp.exp(x - m)
    return e / xp.sum(e, axis=axis, keepdims=True)


_softmax = defop("softmax", _softmax_fwd,
                 lambda F, g, out, x, axis: out * (g - F.sum(g * out, axis=axis, keepdims=True)),
                 save="out", dtypes="float")


def _log_softmax_fwd(xp, x, axis):
    m = xp.max(x, axis=axis, keepdims=True) if x.size else x
    z = x - m
    return z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))


_log_softmax = defop("log_softmax", _log_softmax_fwd,
                     lambda F, g, out, x, axis: g - F.exp(out) * F.sum(g, axis=axis, keepdims=True),
                     save="out", dtypes="float")


def _axis1(x, axis, opname):
    (a,) = normalize_axis(axis, x._data.ndim, opname) or (0,)
    return a


def softmax(logits, axis=None, name=None):
    x = convert(logits)
    _softmax.check_dtype(x)
    return apply(_softmax, (x,), {"axis": _axis1(x, -1 if axis is None else axis, "softmax")})


def log_softmax(logits, axis=None, name=None):
    x = convert(logits)
    _log_softmax.check_dtype(x)
    return apply(_log_softmax, (x,), {"axis": _axis1(x, -1 if axis is None else axis, "log_softmax")})


def _xent_fwd(xp, labels, logits, axis):
    lsm = _log_softmax_fwd(xp, logits, axis)
    return -xp.sum(labels * lsm, axis=axis)


def _xent_g_labels(F, g, out, labels, logits, axis):
    lsm = F.log_softmax(logits, axis) if hasattr(F, "log_softmax") else _log_softmax_fwd(F.xp, logits, axis)
    return -F.expand_dims(g, axis) * lsm


def _xent_g_logits(F, g, out, labels, logits, axis):
    if isinstance(logits, Tensor):
        sm = softmax(logits, axis)
    else:
        sm = _softmax_fwd(F.xp, logits, axis)
    return F.expand_dims(g, axis) * (sm * F.sum(labels, axis=axis, keepdims=True) - labels)


_xent = defop("softmax_cross_entropy_with_logits", _xent_fwd, _xent_g_labels, _xent_g_logits, dtypes="float")


def _xent_logits(op, labels, logits):
    """logits as a Tensor of a dtype the cross-entropy `op` takes; labels= and logits= are both required."""
    if labels is None or logits is None:
        raise ValueError("%s: pass both labels= and logits=" % op.name)
    logits = convert(logits)
    op.check_dtype(logits)
    return logits


def _xent_pair(op, labels, logits):
    """(labels, logits) as Tensors of one dtype and one shape, for the cross-entropies of dense labels."""
    labels, logits = convert_pair(labels, _xent_logits(op, labels, logits), op.name)
    if tuple(labels._data.shape) != tuple(logits._data.shape):
        raise InvalidArgumentError(None, None, "%s: labels shape %s must equal logits shape %s"
                                   % (op.name, tuple(labels._data.shape), tuple(logits._data.shape)))
    return labels, logits


def softmax_cross_entropy_with_logits(labels=None, logits=None, axis=-1, name=None):
    """Cross-entropy between a distribution `labels` and softmax(logits), per example."""
    labels, logits = _xent_pair(_xent, labels, logits)
    return apply(_xent, (labels, logits), {"axis": _axis1(logits, axis, "softmax_cross_entropy_with_logits")})


def _sparse_xent_fwd(xp, labels, logits):
    loss = fusion.sparse_softmax_xent_fwd(labels, logits)
    if loss is not None:
        return loss
    lsm = _log_softmax_fwd(xp, logits, -1)
    n = logits.shape[-1]
    flat = lsm.reshape(-1, n)
    picked = flat[xp.arange(flat.shape[0]), labels.reshape(-1)]
    return -picked.reshape(labels.shape)


def _sparse_xent_rule(F, g, out, labels, logits):
    if isinstance(logits, Tensor):
        sm = softmax(logits, -1)
        return F.expand_dims(g, -1) * (sm - one_hot(labels, logits._data.shape[-1], dtype=logits._data.dtype))
    return _sparse_xent_rule_arrays(F, g, out, labels, logits)


def _sparse_xent_rule_arrays(F, g, out, labels, logits):
    xp = F.xp
    sm = _softmax_fwd(xp, logits, -1)
    n = logits.shape[-1]
    flat = sm.reshape(-1, n)
    flat[xp.arange(flat.shape[0]), labels.reshape(-1)] -= 1  # labels are unique per row: no repeats
    return sm * g[..., None]


# what accel.function records for it (the Tensor branch's host-side helpers would keep it out of CUDA graphs)
_sparse_xent_rule.array_form = _sparse_xent_rule_arrays
_sparse_xent = defop("sparse_softmax_cross_entropy_with_logits", _sparse_xent_fwd, None, _sparse_xent_rule,
                     dtypes="float", fused=fusion.sparse_softmax_xent, fused_small=True)


def sparse_softmax_cross_entropy_with_logits(labels=None, logits=None, name=None):
    """Cross-entropy of integer class labels against softmax(logits) over the last axis."""
    logits = _xent_logits(_sparse_xent, labels, logits)
    labels = convert(labels)
    if logits._data.ndim == 0:
        raise InvalidArgumentError(None, None, "sparse_softmax_cross_entropy_with_logits: logits must have rank "
                                   ">= 1 (classes on the last axis), got a scalar")
    if labels._data.dtype.kind not in "iu":
        raise InvalidArgumentError(None, None, "sparse_softmax_cross_entropy_with_logits: labels must be int32 or "
                                   "int64, got %s" % labels._data.dtype)
    if tuple(labels._data.shape) != tuple(logits._data.shape[:-1]):
        raise InvalidArgumentError(None, None, "sparse_softmax_cross_entropy_with_logits: labels shape %s must equal "
                                   "logits shape without its last axis %s"
                                   % (tuple(labels._data.shape), tuple(logits._data.shape[:-1])))
    if labels._data.size:
        xp = backend.xp_of(labels._data)
        lo, hi = int(xp.min(labels._data)), int(xp.max(labels._data))
        n = logits._data.shape[-1]
        if lo < 0 or hi >= n:
            raise InvalidArgumentError(None, None, "sparse_softmax_cross_entropy_with_logits: label %d is outside "
                                       "the valid range [0, %d)" % (lo if lo < 0 else hi, n))
    if type(labels._data) is not type(logits._data):
        labels = Tensor(backend.to_device(labels._data, backend.device_of(logits._data)))
    return apply(_sparse_xent, (labels, logits))


# the ops themselves, not their public functions (host-side argument handling that accel.cuda_plan's
# bytecode scan would read as a capture breaker): what the two steps below run where their kernels do not
_REDUCE_MEAN = reduce_mean.op


def _sparse_xent_mean_fwd(xp, labels, logits, keepdims):
    m = fusion.sparse_softmax_xent_mean_fwd(labels, logits)
    if m is None:  # the two ops it stands for, as eager runs them
        rows = _sparse_xent.forward(xp, labels, logits)
        return _REDUCE_MEAN.forward(xp, rows, (0,), keepdims, tuple(rows.shape))
    return m.reshape((1,) if keepdims else ())


def sparse_xent_mean_grad(F, xp, g, labels, logits, **mean_attrs):
    """(None, d logits) of sparse_xent_mean for its cotangent g: one kernel with the division by the row
    count in it; where that does not qualify, the mean's rule then the cross-entropy's hook or rule, as
    eager's backward pass runs them (mean_attrs: the mean's attributes)."""
    d = fusion.sparse_softmax_xent_mean_bwd(g, labels, logits)
    if d is not None:
        return (None, d)
    g_rows = _REDUCE_MEAN.rules[0](F, g, None, None, **mean_attrs)
    res = _sparse_xent.fused(xp, g_rows, None, labels, logits)
    if res is not None and res[1] is not None:
        return res
    return (None, _sparse_xent_rule_arrays(F, g_rows, None, labels, logits))


# reduce_mean over the rows of sparse_softmax_cross_entropy_with_logits as one step (one kernel, the mean
# in it): not an op users apply, but the step accel.function's plan puts in place of that pair where
# nothing else reads the rows, with sparse_xent_mean_grad in place of their two backward steps
sparse_xent_mean = Op("sparse_softmax_cross_entropy_with_logits+reduce_mean", _sparse_xent_mean_fwd, dtypes="float")


def _sig_xent_fwd(xp, labels, logits):
    # max(x, 0) - x*z + log(1 + exp(-|x|)): no overflow for large |x|
    return xp.maximum(logits, 0) - logits * labels + xp.log1p(xp.exp(-xp.abs(logits)))


def _sig_xent_g_logits(F, g, out, labels, logits):
    return g * (sigmoid_of(F, logits) - labels)


_sig_xent = defop("sigmoid_cross_entropy_with_logits", _sig_xent_fwd,
                  lambda F, g, out, labels, logits: -g * logits, _sig_xent_g_logits,
                  dtypes="float", fused=fusion.sigmoid_xent, fused_small=True)


def sigmoid_cross_entropy_with_logits(labels=None, logits=None, name=None):
    labels, logits = _xent_pair(_sig_xent, labels, logits)
    return apply(_sig_xent, (labels, logits))


def l2_loss(t, name=None):
    x = convert(t)
    return reduce_sum(x * x) / 2


def _bias_add_rule_b(F, g, out, x, b, axis):
    axes = tuple(i for i in range(len(F.shape(g))) if i != axis)
    return F.sum(g, axis=axes)


def _bias_add_fwd(xp, x, b, axis):
    return x + (b if axis == x.ndim - 1 else b.reshape((-1,) + (1,) * (x.ndim - 1 - axis)))


_bias_add = defop("bias_add", _bias_add_fwd, lambda F, g, out, x, b, axis: g, _bias_add_rule_b, save="none",
                  fused=fusion.bias_add)


def bias_add(value, bias, data_format=None, name=None):
    x, b = convert_pair(value, bias, "bias_add")
    if b._data.ndim != 1:
        raise InvalidArgumentError(None, None, "bias_add: bias must be 1-D, got shape %s" % (tuple(b._data.shape),))
    axis = 1 if data_format in ("NCHW", "NCW", "NCDHW") else x._data.ndim - 1
    if x._data.ndim < 2 or x._data.shape[axis] != b._data.shape[0]:
        raise InvalidArgumentError(None, None, "bias_add: bias of size %d does not match axis %d of value with "
                                   "shape %s" % (b._data.shape[0], axis, tuple(x._data.shape)))
    return apply(_bias_add, (x, b), {"axis": axis})


def moments(x, axes, shift=None, keepdims=False, name=None):
    """Mean and variance over `axes` (both differentiable)."""
    x = convert(x)
    mean = reduce_mean(x, axes, keepdims=True)
    var = reduce_mean(square(x - mean), axes, keepdims=True)
    if not keepdims:
        ax = normalize_axis(axes, x._data.ndim, "moments")
        mean, var = squeeze(mean, ax), squeeze(var, ax)
    return mean, var


def _ln_stats(F, x, eps):
    mean = F.mean(x, axis=-1, keepdims=True)
    xc = x - mean
    rstd = F.reciprocal(F.sqrt(F.mean(xc * xc, axis=-1, keepdims=True) + eps))
    return mean, xc * rstd, rstd


def _layer_norm_fwd(xp, x, gamma, beta, eps):
    # Keras 3's order: x * inv + (beta - mean * inv), inv = rsqrt(var + eps) * gamma
    mean = xp.mean(x, axis=-1, keepdims=True)
    xc = x - mean
    inv = xp.reciprocal(xp.sqrt(xp.mean(xc * xc, axis=-1, keepdims=True) + eps)) * gamma
    return x * inv + (beta - mean * inv)


def _layer_norm_dx(F, g, out, x, gamma, beta, eps):
    _, xhat, rstd = _ln_stats(F, x, eps)
    gh = g * gamma
    return rstd * (gh - F.mean(gh, axis=-1, keepdims=True) - xhat * F.mean(gh * xhat, axis=-1, keepdims=True))


def _layer_norm_dgamma(F, g, out, x, gamma, beta, eps):
    return g * _ln_stats(F, x, eps)[1]  # the tape sums it down to gamma's shape


_layer_norm = defop("layer_norm", _layer_norm_fwd,
                    _layer_norm_dx, _layer_norm_dgamma, lambda F, g, out, x, gamma, beta, eps: g,
                    dtypes="float", fused=fusion.layer_norm, fused_small=True)


def layer_norm(x, gamma, beta, epsilon=1e-3):
    """Layer normalization over the last axis with scale gamma and offset beta (both [C]): one op, whose
    backward is one fused kernel where the inputs qualify (keras.layers.LayerNormalization uses it)."""
    x, gamma, beta = convert(x), convert(gamma), convert(beta)
    _layer_norm.check_dtype(x)
    if x._data.ndim == 0:
        raise InvalidArgumentError(None, None, "layer_norm: x must have rank >= 1 (it normalizes the last axis), "
                                   "got a scalar")
    cols = x._data.shape[-1]
    for nm, t in (("gamma", gamma), ("beta", beta)):
        if tuple(t._data.shape) != (cols,) or t._data.dtype != x._data.dtype:
            raise InvalidArgumentError(None, None, "layer_norm: %s must be %s of shape (%s,) like x's last axis, "
                                       "got %s %s" % (nm, x._data.dtype, cols, t._data.dtype, tuple(t._data.shape)))
    return apply(_layer_norm, (x, gamma, beta), {"eps": float(epsilon)})


def dropout(x, rate, noise_shape=None, seed=None, name=None):
    """Zeroes each element with probability `rate` and scales the rest by 1/(1 - rate)."""
    x = convert(x)
    _dropout.check_dtype(x)
    rate = float(rate)
    if not 0 <= rate < 1:
        raise ValueError("dropout: rate must be in [0, 1), got %r" % (rate,))
    if rate == 0:
        return x
    shape = tuple(x._data.shape) if noise_shape is None else tuple(int(s) for s in noise_shape)
    keep = greater_equal(_random.uniform(shape, dtype=x._data.dtype, seed=seed), rate)
    return apply(_dropout, (x, keep), {"scale": 1.0 / (1.0 - rate)})


def _dropout_fwd(xp, x, keep, scale):
    dt = x.dtype.type
    return xp.where(keep, x * dt(scale), dt(0))


_dropout = defop("dropout", _dropout_fwd, lambda F, g, out, x, keep, scale: F.where(keep, g * scale, 0), None,
                 dtypes="float", fused=fusion.dropout)


def normalize(x, axis, epsilon=1e-12):
    x = convert(x)
    return x * rsqrt(maximum(reduce_sum(x * x, axis, keepdims=True), epsilon))


l2_normalize = normalize
