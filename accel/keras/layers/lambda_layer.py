"""Lambda: a layer around a Python function, for quick experiments."""

from __future__ import annotations

import inspect

from accel.keras.layers.base import Layer


class Lambda(Layer):
    """`Lambda(lambda x: x * 2)` calls the function on the inputs (with `arguments` as keywords, and `mask` /
    `training` where the function takes them). It holds no weights of its own; a saved model records it, but
    accel never turns a file back into code without an explicit opt-in."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError("Lambda: function must be callable, got %r" % (function,))
        self.function = function
        self.output_shape = output_shape
        self.arguments = dict(arguments or {})
        params = inspect.signature(function).parameters
        self._takes_mask = "mask" in params
        self._takes_training = "training" in params

    def call(self, inputs, mask=None, training=None):
        kwargs = dict(self.arguments)
        if self._takes_mask:
            kwargs["mask"] = mask
        if self._takes_training:
            kwargs["training"] = training
        return self.function(inputs, **kwargs)
