"""Preprocessing layers on numbers: Rescaling and Normalization (with `adapt`)."""

from __future__ import annotations

import numpy as np

import accel
from accel.keras.layers.base import Layer

_EPSILON = 1e-7  # keras.backend.epsilon()


class Rescaling(Layer):
    """inputs * scale + offset (integer inputs are cast to the layer's float dtype first)."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.offset = offset

    def call(self, inputs):
        x = inputs if inputs.dtype == self.dtype else accel.cast(inputs, self.dtype)
        return x * accel.cast(accel.convert_to_tensor(self.scale), self.dtype) + \
            accel.cast(accel.convert_to_tensor(self.offset), self.dtype)


class Normalization(Layer):
    """(x - mean) / max(sqrt(variance), 1e-7) per feature along `axis` (Keras 3). The statistics come from
    `mean=`/`variance=` or from `adapt(data)`; `invert=True` maps normalized values back."""

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            self.axis = ()
        elif isinstance(axis, int):
            self.axis = (axis,)
        else:
            self.axis = tuple(int(a) for a in axis)
        if (mean is None) != (variance is None):
            raise ValueError("Normalization: give both `mean` and `variance`, or neither (then call adapt())")
        self.input_mean = mean
        self.input_variance = variance
        self.invert = bool(invert)
        self.mean = self.variance = None
        self._adapted = mean is not None

    def _stat_shape(self, input_shape):
        nd = len(input_shape)
        keep = [a % nd for a in self.axis]
        for a in keep:
            if input_shape[a] is None:
                raise ValueError("Normalization: axis %d of the input must have a known size" % a)
        return keep, [input_shape[a] if a in keep else 1 for a in range(nd)]

    def build(self, input_shape):
        keep, shape = self._stat_shape(tuple(input_shape))
        self._keep = keep
        mean = 0.0 if self.input_mean is None else self.input_mean
        var = 1.0 if self.input_variance is None else self.input_variance
        self.mean = self.add_weight(shape=shape, initializer="zeros", name="mean", trainable=False)
        self.variance = self.add_weight(shape=shape, initializer="ones", name="variance", trainable=False)
        self.mean.assign(np.broadcast_to(np.asarray(mean, np.float32), shape))
        self.variance.assign(np.broadcast_to(np.asarray(var, np.float32), shape))
        self.built = True

    def adapt(self, data, batch_size=None, steps=None):
        """Sets mean and variance from `data` (an array, tensor, or an iterable of batches)."""
        if isinstance(data, (np.ndarray, accel.Tensor, list)):
            arr = np.asarray(data.numpy() if isinstance(data, accel.Tensor) else data, np.float64)
        else:
            batches = []
            for i, b in enumerate(data):
                if steps is not None and i >= steps:
                    break
                b = b[0] if isinstance(b, tuple) else b
                batches.append(np.asarray(b.numpy() if isinstance(b, accel.Tensor) else b, np.float64))
            if not batches:
                raise ValueError("Normalization.adapt: the data is empty")
            arr = np.concatenate(batches)
        if arr.size == 0:
            raise ValueError("Normalization.adapt: the data is empty")
        if arr.ndim == 1 and self.axis == (-1,):
            arr = arr[:, None]
        if not self.built:
            self.build((None,) + arr.shape[1:])
        keep, shape = self._stat_shape(arr.shape)
        reduce = tuple(a for a in range(arr.ndim) if a not in keep)
        self.mean.assign(arr.mean(axis=reduce).reshape(shape).astype(np.float32))
        self.variance.assign(arr.var(axis=reduce).reshape(shape).astype(np.float32))
        self._adapted = True

    def call(self, inputs):
        x = inputs if inputs.dtype == self.dtype else accel.cast(inputs, self.dtype)
        std = accel.maximum(accel.sqrt(self.variance), _EPSILON)
        if self.invert:
            return x * std + self.mean
        return (x - self.mean) / std
