"""Keras activation functions, by name or callable: `accel.keras.activations.get("relu")`."""

from __future__ import annotations

import accel


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras's generalised relu: x above `threshold` (clipped to [0, max_value]), a slope below it."""
    x = accel.convert_to_tensor(x)
    if max_value is None and threshold == 0.0:
        return accel.nn.relu(x) if negative_slope == 0.0 else accel.nn.leaky_relu(x, alpha=negative_slope)
    out = x * accel.cast(x > threshold, x.dtype) if threshold != 0.0 else accel.nn.relu(x)
    if max_value is not None:
        out = accel.clip_by_value(out, 0.0, max_value)
    if negative_slope != 0.0:
        out = out - negative_slope * accel.nn.relu(threshold - x)
    return out


def relu6(x):
    return accel.nn.relu6(x)


def leaky_relu(x, negative_slope=0.2):
    return accel.nn.leaky_relu(x, alpha=negative_slope)


def elu(x, alpha=1.0):
    if alpha == 1.0:
        return accel.nn.elu(x)
    x = accel.convert_to_tensor(x)
    return accel.where(x > 0, x, alpha * (accel.exp(accel.minimum(x, 0.0)) - 1.0))


def selu(x):
    return accel.nn.selu(x)


def gelu(x, approximate=False):
    return accel.nn.gelu(x, approximate=approximate)


def silu(x):
    return accel.nn.silu(x)


swish = silu


def sigmoid(x):
    return accel.sigmoid(x)


def tanh(x):
    return accel.tanh(x)


def softplus(x):
    return accel.nn.softplus(x)


def softmax(x, axis=-1):
    return accel.nn.softmax(x, axis=axis)


def log_softmax(x, axis=-1):
    return accel.nn.log_softmax(x, axis=axis)


def exponential(x):
    return accel.exp(x)


def linear(x):
    return x


def hard_sigmoid(x):
    """relu6(x + 3) / 6, Keras 3's piecewise-linear sigmoid."""
    return relu6(x + 3.0) / 6.0


def hard_silu(x):
    return x * hard_sigmoid(x)


_BY_NAME = {
    f.__name__: f
    for f in (
        relu,
        relu6,
        leaky_relu,
        elu,
        selu,
        gelu,
        silu,
        sigmoid,
        tanh,
        softplus,
        softmax,
        log_softmax,
        exponential,
        linear,
        hard_sigmoid,
        hard_silu,
    )
}
_BY_NAME["swish"] = swish
_BY_NAME["hard_swish"] = hard_silu


def get(identifier):
    """An activation function from a name, a callable, or None (linear, as Keras)."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        try:
            return _BY_NAME[identifier]
        except KeyError:
            raise ValueError(
                "Unknown activation %r; known names: %s" % (identifier, ", ".join(sorted(_BY_NAME)))
            ) from None
    if callable(identifier):
        return identifier
    raise ValueError("Could not interpret activation %r: expected a name, a callable or None" % (identifier,))
