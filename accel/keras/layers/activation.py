"""Activation layers: Softmax, ReLU, LeakyReLU, PReLU, ELU (Keras 3's defaults and arguments)."""

from __future__ import annotations

import accel
from accel.keras import initializers
from accel.keras.layers.base import Layer


class Softmax(Layer):
    """softmax over `axis` (an int or a list of ints); where `mask` is False the input is pushed to -1e9
    first, so masked positions get ~0 probability (Keras 3)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, inputs, mask=None):
        if mask is not None:
            inputs = inputs + (1.0 - accel.cast(mask, inputs.dtype)) * -1e9
        if isinstance(self.axis, (list, tuple)):
            return accel.exp(inputs - accel.reduce_logsumexp(inputs, axis=list(self.axis), keepdims=True))
        return accel.nn.softmax(inputs, axis=self.axis)


class ReLU(Layer):
    """max(x, 0) with Keras's options: `x >= threshold` passes (capped at `max_value`), below it
    `negative_slope * (x - threshold)`."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        for nm, v in (("max_value", max_value), ("negative_slope", negative_slope), ("threshold", threshold)):
            if v is not None and v < 0:
                raise ValueError("ReLU: %s must be >= 0, got %r" % (nm, v))
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)

    def call(self, inputs):
        if self.negative_slope == 0 and self.threshold == 0 and self.max_value is None:
            return accel.nn.relu(inputs)
        out = accel.where(inputs >= self.threshold, inputs, self.negative_slope * (inputs - self.threshold))
        if self.max_value is not None:
            out = accel.minimum(out, self.max_value)
        return out


class LeakyReLU(Layer):
    """x for x >= 0, negative_slope * x below (Keras 3's default slope is 0.3)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:  # the Keras 2 name
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if negative_slope is None or negative_slope < 0:
            raise ValueError("LeakyReLU: negative_slope must be a number >= 0, got %r" % (negative_slope,))
        self.negative_slope = float(negative_slope)

    def call(self, inputs):
        return accel.nn.leaky_relu(inputs, alpha=self.negative_slope)


class ELU(Layer):
    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, inputs):
        out = accel.nn.elu(inputs)
        return out if self.alpha == 1.0 else accel.where(inputs > 0, out, out * self.alpha)


class PReLU(Layer):
    """LeakyReLU with a learned slope `alpha` per input element (shared along `shared_axes`)."""

    def __init__(self, alpha_initializer="zeros", shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        if shared_axes is None:
            self.shared_axes = None
        else:
            self.shared_axes = [int(a) for a in (shared_axes if isinstance(shared_axes, (list, tuple))
                                                 else [shared_axes])]
        self.alpha = None

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes or []:
            if not 1 <= a < len(input_shape):
                raise ValueError("PReLU: shared axis %d is outside the input's non-batch axes 1..%d"
                                 % (a, len(input_shape) - 1))
            shape[a - 1] = 1
        self.alpha = self.add_weight(shape=shape, initializer=self.alpha_initializer, name="alpha")

    def call(self, inputs):
        return accel.nn.relu(inputs) - self.alpha * accel.nn.relu(-inputs)
