"""Conv2D and MaxPooling2D on channels-last (NHWC) inputs, built from differentiable accel ops.

Both take the kh * kw strided windows of the (padded) input as slices, one per kernel offset: Conv2D
concatenates them into im2col rows and multiplies by the kernel, MaxPooling2D takes their running maximum.
"""

from __future__ import annotations

import accel
from accel.keras import activations, initializers
from accel.keras.layers.base import Layer
from accel.keras.layers.core import _check_last_axis


def _pair(value, what):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError("%s must be a positive int or a pair of them, got %r" % (what, value))
    return pair


def _padding(padding):
    p = str(padding).lower()
    if p not in ("valid", "same"):
        raise ValueError("padding must be 'valid' or 'same', got %r" % (padding,))
    return p


def _channels_last(data_format, who):
    if data_format not in (None, "channels_last"):
        raise NotImplementedError(
            "%s: only data_format='channels_last' is supported, got %r" % (who, data_format)
        )


def _windows(x, size, strides, padding, pad_value, who):
    """The kh * kw window slices of NHWC `x`, each (N, out_h, out_w, C), in row-major kernel order."""
    if x.ndim != 4:
        raise ValueError(
            "%s: expected a 4-D (batch, height, width, channels) input, got shape %s" % (who, x.shape)
        )
    _, h, w, _ = x.shape
    (kh, kw), (sh, sw) = size, strides
    if padding == "same":
        # TensorFlow's SAME: out = ceil(in / stride), the odd padded row/column goes at the bottom/right
        oh, ow = -(-h // sh), -(-w // sw)
        ph = max((oh - 1) * sh + kh - h, 0)
        pw = max((ow - 1) * sw + kw - w, 0)
        if ph or pw:
            x = accel.pad(
                x,
                [[0, 0], [ph // 2, ph - ph // 2], [pw // 2, pw - pw // 2], [0, 0]],
                constant_values=pad_value,
            )
    else:
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(
                "%s: a %dx%d window does not fit an input of height %d and width %d with padding "
                "'valid'" % (who, kh, kw, h, w)
            )
    return [
        x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in TensorFlow) with a (kh, kw, in_channels, filters) kernel."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _channels_last(data_format, "Conv2D")
        if _pair(dilation_rate, "Conv2D dilation_rate") != (1, 1) or groups != 1:
            raise NotImplementedError("Conv2D: only dilation_rate=1 and groups=1 are supported")
        self.filters = int(filters)
        if self.filters <= 0:
            raise ValueError("Conv2D: filters must be positive, got %r" % (filters,))
        self.kernel_size = _pair(kernel_size, "Conv2D kernel_size")
        self.strides = _pair(strides, "Conv2D strides")
        self.padding = _padding(padding)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel = None
        self.bias = None

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "Conv2D %s: expected a 4-D input with known channels, got shape %s"
                % (self.name, tuple(input_shape))
            )
        self.kernel = self.add_weight(
            shape=self.kernel_size + (input_shape[-1], self.filters),
            initializer=self.kernel_initializer,
            name="kernel",
        )
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.filters,), initializer=self.bias_initializer, name="bias")

    def call(self, inputs):
        kh, kw, cin, _ = self.kernel.shape
        _check_last_axis(self, inputs, cin)
        windows = _windows(inputs, self.kernel_size, self.strides, self.padding, 0.0, self.name)
        n, oh, ow, _ = windows[0].shape
        # im2col: row (n, y, x) holds the window at (y, x), ordered (i, j, channel) like the kernel's rows
        cols = accel.reshape(accel.concat(windows, axis=-1), (n * oh * ow, kh * kw * cin))
        out = accel.matmul(cols, accel.reshape(self.kernel, (kh * kw * cin, self.filters)))
        if self.bias is not None:
            out = out + self.bias
        return self.activation(accel.reshape(out, (n, oh, ow, self.filters)))


class MaxPooling2D(Layer):
    """The maximum of each pool_size window. On ties the gradient goes to the window's first maximum
    (row-major), as TensorFlow's max_pool does; 'same' padding never wins a window."""

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, "MaxPooling2D")
        self.pool_size = _pair(pool_size, "MaxPooling2D pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, "MaxPooling2D strides")
        self.padding = _padding(padding)

    def call(self, inputs):
        windows = _windows(inputs, self.pool_size, self.strides, self.padding, float("-inf"), self.name)
        out = windows[0]
        for w in windows[1:]:
            out = accel.maximum(out, w)  # maximum sends a tie's gradient to its first argument
        return out


Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
