"""LayerNormalization and BatchNormalization, with Keras 3's formulas:
`outputs = inputs * inv + (beta - mean * inv)` where `inv = gamma / sqrt(variance + epsilon)`."""

from __future__ import annotations

import accel
from accel.keras import initializers
from accel.keras.layers.base import Layer
from accel.ops.nn import layer_norm


def _normalize(x, mean, variance, gamma, beta, epsilon):
    inv = accel.rsqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * gamma
    res = -mean * inv
    if beta is not None:
        res = res + beta
    return x * inv + res


def _axes(axis, ndim, who):
    axes = [axis] if isinstance(axis, int) else list(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError("%s: axis %d is out of range for an input of rank %d" % (who, a, ndim))
    return sorted({a % ndim for a in axes})


class LayerNormalization(Layer):
    """Normalizes each sample over `axis` (the last by default), then scales by gamma and shifts by beta."""

    def __init__(
        self,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.gamma = None
        self.beta = None

    def build(self, input_shape):
        self._axes = _axes(self.axis, len(input_shape), "LayerNormalization %s" % self.name)
        shape = tuple(input_shape[a] for a in self._axes)
        # gamma and beta reshaped to broadcast against the input
        self._broadcast = tuple(input_shape[i] if i in self._axes else 1 for i in range(len(input_shape)))
        if self.scale:
            self.gamma = self.add_weight(shape=shape, initializer=self.gamma_initializer, name="gamma")
        if self.center:
            self.beta = self.add_weight(shape=shape, initializer=self.beta_initializer, name="beta")

    autocast = False  # float32 arithmetic under mixed policies, as Keras 3

    def call(self, inputs):
        inputs = _upcast(inputs, self._dtype)
        if self._axes == [len(self._broadcast) - 1] and self.gamma is not None and self.beta is not None:
            out = layer_norm(inputs, self.gamma, self.beta, self.epsilon)  # one op, fused backward
        else:
            mean, variance = accel.nn.moments(inputs, axes=self._axes, keepdims=True)
            gamma = None if self.gamma is None else accel.reshape(self.gamma, self._broadcast)
            beta = None if self.beta is None else accel.reshape(self.beta, self._broadcast)
            out = _normalize(inputs, mean, variance, gamma, beta, self.epsilon)
        return _downcast(out, self._compute_dtype)


def _upcast(x, dtype):
    """Half-precision inputs to the weights' dtype (Keras: normalizations overflow in float16)."""
    return accel.cast(x, dtype) if x.dtype.is_floating and x.dtype.size < dtype.size else x


def _downcast(x, dtype):
    return x if x.dtype == dtype else accel.cast(x, dtype)


class BatchNormalization(Layer):
    """Normalizes each feature (along `axis`) by the batch's statistics when training, else by moving ones.

    Training updates `moving = moving * momentum + batch * (1 - momentum)` with the biased batch variance.
    A frozen layer (`trainable = False`) always runs in inference mode, as in Keras 3.
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.gamma = None
        self.beta = None

    def build(self, input_shape):
        ndim = len(input_shape)
        (axis,) = _axes(self.axis, ndim, "BatchNormalization %s" % self.name)
        self._reduction_axes = [i for i in range(ndim) if i != axis]
        self._broadcast = tuple(input_shape[i] if i == axis else 1 for i in range(ndim))
        shape = (input_shape[axis],)
        if self.scale:
            self.gamma = self.add_weight(shape=shape, initializer=self.gamma_initializer, name="gamma")
        if self.center:
            self.beta = self.add_weight(shape=shape, initializer=self.beta_initializer, name="beta")
        self.moving_mean = self.add_weight(
            shape=shape, initializer=self.moving_mean_initializer, name="moving_mean", trainable=False
        )
        self.moving_variance = self.add_weight(
            shape=shape, initializer=self.moving_variance_initializer, name="moving_variance", trainable=False
        )

    autocast = False  # float32 statistics under mixed policies, as Keras 3

    def call(self, inputs, training=None):
        return _downcast(self._call_f32(_upcast(inputs, self._dtype), training), self._compute_dtype)

    def _call_f32(self, inputs, training):
        if training and self.trainable:
            mean, variance = accel.nn.moments(inputs, axes=self._reduction_axes)
            m = self.momentum
            self.moving_mean.assign(accel.stop_gradient(self.moving_mean * m + mean * (1.0 - m)))
            self.moving_variance.assign(accel.stop_gradient(self.moving_variance * m + variance * (1.0 - m)))
        else:
            mean, variance = self.moving_mean, self.moving_variance

        def bcast(t):
            return None if t is None else accel.reshape(t, self._broadcast)

        return _normalize(
            inputs, bcast(mean), bcast(variance), bcast(self.gamma), bcast(self.beta), self.epsilon
        )
