"""Keras 3's convolution, pooling and spatial layers on the accel.nn conv/pool ops (accel/ops/conv.py).

Weights have Keras 3's names and shapes (Conv kernel (*kernel_size, in_channels / groups, filters),
Conv2DTranspose/Conv3DTranspose kernel (*kernel_size, filters, in_channels), DepthwiseConv2D kernel
(kh, kw, in_channels, depth_multiplier)), so weights copied from Keras give Keras's outputs.
"""

from __future__ import annotations

import accel
from accel.keras import activations, initializers
from accel.keras.layers.base import Layer
from accel.ops import conv as ops


def _tuple(value, n, what, who):
    vals = (value,) * n if isinstance(value, int) else tuple(value)
    if len(vals) != n or not all(isinstance(v, int) and v > 0 for v in vals):
        raise ValueError("%s: %s must be a positive int or a tuple of %d of them, got %r" % (who, what, n, value))
    return vals


def _padding(padding, who, causal=False):
    p = str(padding).lower()
    allowed = ("valid", "same", "causal") if causal else ("valid", "same")
    if p not in allowed:
        raise ValueError("%s: the padding argument must be one of %s, got padding=%r"
                         % (who, ", ".join(repr(a) for a in allowed), padding))
    return p


def _data_format(data_format, who):
    df = "channels_last" if data_format is None else str(data_format).lower()
    if df not in ("channels_last", "channels_first"):
        raise ValueError("%s: data_format must be 'channels_last' or 'channels_first', got %r" % (who, data_format))
    return df


def _to_last(x, data_format):
    """The input with channels last (N, *spatial, C)."""
    if data_format == "channels_first":
        return accel.transpose(x, (0,) + tuple(range(2, x.ndim)) + (1,))
    return x


def _from_last(y, data_format):
    if data_format == "channels_first":
        return accel.transpose(y, (0, y.ndim - 1) + tuple(range(1, y.ndim - 1)))
    return y


def _check_rank(layer, x, rank):
    names = {1: "3-D (batch, steps, channels)", 2: "4-D (batch, height, width, channels)",
             3: "5-D (batch, depth, height, width, channels)"}
    if x.ndim != rank + 2:
        raise ValueError("%s %s: expected a %s input, got shape %s" % (type(layer).__name__, layer.name,
                                                                       names[rank], tuple(x.shape)))


class _Conv(Layer):
    """The convolution layers' shared setup and call. It has no __init__: get_config() reads each concrete
    class's own signature (Keras's), so no argument of another class (groups on a transpose) leaks into it."""

    rank = 2

    def _setup(self, filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
               use_bias, kernel_initializer, bias_initializer):
        who = type(self).__name__
        self.filters = int(filters)
        if self.filters <= 0:
            raise ValueError("%s: filters must be positive, got %r" % (who, filters))
        self.groups = int(groups)
        if self.groups <= 0 or self.filters % self.groups:
            raise ValueError("%s: the number of filters (%d) must be evenly divisible by the number of groups, a "
                             "positive int, got groups=%r" % (who, self.filters, groups))
        self.kernel_size = _tuple(kernel_size, self.rank, "kernel_size", who)
        self.strides = _tuple(strides, self.rank, "strides", who)
        self.dilation_rate = _tuple(dilation_rate, self.rank, "dilation_rate", who)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("%s: `strides > 1` not supported in conjunction with `dilation_rate > 1`, got "
                             "strides=%s and dilation_rate=%s" % (who, self.strides, self.dilation_rate))
        self.padding = _padding(padding, who, causal=self.rank == 1)
        self.data_format = _data_format(data_format, who)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel = None
        self.bias = None

    def _channels(self, input_shape):
        return input_shape[1] if self.data_format == "channels_first" else input_shape[-1]

    def _kernel_shape(self, channels):
        if channels % self.groups:
            raise ValueError("%s %s: the number of input channels (%d) must be evenly divisible by the number of "
                             "groups (%d)" % (type(self).__name__, self.name, channels, self.groups))
        return self.kernel_size + (channels // self.groups, self.filters)

    def _bias_size(self):
        return self.filters

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 2 or self._channels(input_shape) is None:
            raise ValueError("%s %s: expected a %d-D input with known channels, got shape %s"
                             % (type(self).__name__, self.name, self.rank + 2, input_shape))
        self.kernel = self.add_weight(shape=self._kernel_shape(self._channels(input_shape)),
                                      initializer=self.kernel_initializer, name="kernel")
        if self.use_bias:
            self.bias = self.add_weight(shape=(self._bias_size(),), initializer=self.bias_initializer, name="bias")

    def _expected_channels(self):
        return self.kernel.shape[-2] * self.groups

    def call(self, inputs):
        _check_rank(self, inputs, self.rank)
        x = _to_last(inputs, self.data_format)
        if x.shape[-1] != self._expected_channels():
            raise ValueError("Input of layer %s is incompatible with the layer: expected %d channels (axis %d), "
                             "but received input with shape %s" % (self.name, self._expected_channels(),
                                                                   1 if self.data_format == "channels_first" else -1,
                                                                   tuple(inputs.shape)))
        y = self._convolve(x)
        if self.bias is not None:
            y = y + self.bias
        return self.activation(_from_last(y, self.data_format))

    def _geometry(self, x):
        """(strides, dilations, pads) of the channels-last convolution for this layer's settings."""
        k, s, d = self.kernel_size, self.strides, self.dilation_rate
        sizes = tuple(x.shape[1:-1])
        if self.padding == "causal":  # Keras pads the start of the sequence by the dilated kernel's reach
            pads = (((k[0] - 1) * d[0], 0),)
        else:
            pads = ops._pads(self.padding.upper(), sizes, k, s, d, ops._FORMATS[self.rank][0], self.name)
        ops._check_out(sizes, k, s, d, pads, self.name)
        return s, d, pads

    def _convolve(self, x):
        s, d, pads = self._geometry(x)
        return ops._conv_last(x, self.kernel, s, d, pads)


class Conv1D(_Conv):
    """1-D convolution (cross-correlation) with a (kernel_size, in_channels / groups, filters) kernel;
    padding 'causal' pads only the start, as Keras does."""

    rank = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self._setup(filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
                    use_bias, kernel_initializer, bias_initializer)


class Conv2D(_Conv):
    """2-D convolution (cross-correlation, as in TensorFlow) with a (kh, kw, in_channels / groups, filters)
    kernel."""

    rank = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self._setup(filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
                    use_bias, kernel_initializer, bias_initializer)


class Conv3D(_Conv):
    """3-D convolution (cross-correlation) with a (kd, kh, kw, in_channels / groups, filters) kernel."""

    rank = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self._setup(filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
                    use_bias, kernel_initializer, bias_initializer)


class _ConvTranspose(_Conv):
    """The transpose of a convolution (its gradient with respect to its input), kernel (*kernel_size, filters,
    in_channels); output size as Keras 3 computes it from padding and output_padding."""

    def _setup_transpose(self, filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
                         activation, use_bias, kernel_initializer, bias_initializer):
        self._setup(filters, kernel_size, strides, padding, data_format, dilation_rate, 1, activation, use_bias,
                    kernel_initializer, bias_initializer)
        self.output_padding = None if output_padding is None else tuple(
            (output_padding,) * self.rank if isinstance(output_padding, int) else output_padding)
        if self.output_padding is not None:
            if len(self.output_padding) != self.rank or not all(
                    isinstance(op, int) and 0 <= op < s for op, s in zip(self.output_padding, self.strides)):
                raise ValueError("%s: output_padding must be %d ints, each >= 0 and smaller than its stride, got "
                                 "output_padding=%r and strides=%r" % (type(self).__name__, self.rank,
                                                                       output_padding, self.strides))

    def _kernel_shape(self, channels):
        return self.kernel_size + (self.filters, channels)

    def _expected_channels(self):
        return self.kernel.shape[-1]

    def _convolve(self, x):
        out = []
        for i, (n, k, s, d) in enumerate(zip(x.shape[1:-1], self.kernel_size, self.strides, self.dilation_rate)):
            k = (k - 1) * d + 1
            op = None if self.output_padding is None else self.output_padding[i]
            if self.padding == "valid":
                out.append((n - 1) * s + k + (max(k, s) - k if op is None else op))
            else:
                out.append(n * s if op is None else (n - 1) * s + k % 2 + op)
        shape = (x.shape[0], *out, self.filters)
        return ops._conv_transpose(self.name, self.rank, x, self.kernel, shape, self.strides, self.padding.upper(),
                                   ops._FORMATS[self.rank][0], self.dilation_rate)


class Conv2DTranspose(_ConvTranspose):
    __doc__ = _ConvTranspose.__doc__
    rank = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self._setup_transpose(filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
                              activation, use_bias, kernel_initializer, bias_initializer)


class Conv3DTranspose(_ConvTranspose):
    __doc__ = _ConvTranspose.__doc__
    rank = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", data_format=None,
                 output_padding=None, dilation_rate=(1, 1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self._setup_transpose(filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
                              activation, use_bias, kernel_initializer, bias_initializer)


class DepthwiseConv2D(_Conv):
    """Each input channel convolved with its own depth_multiplier filters: kernel (kh, kw, in_channels,
    depth_multiplier), output channel c * depth_multiplier + m."""

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        if "depthwise_regularizer" in kwargs:  # Keras's name for the penalty on this layer's `kernel`
            kwargs["kernel_regularizer"] = kwargs.pop("depthwise_regularizer")
        super().__init__(**kwargs)
        self.depth_multiplier = int(depth_multiplier)
        if self.depth_multiplier <= 0:
            raise ValueError("DepthwiseConv2D: depth_multiplier must be positive, got %r" % (depth_multiplier,))
        self._setup(self.depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate, 1, activation,
                    use_bias, depthwise_initializer, bias_initializer)
        self.depthwise_initializer = self.kernel_initializer

    def get_config(self):
        config = super().get_config()
        if "kernel_regularizer" in config:  # written under Keras's name, which Keras 3 reads
            config["depthwise_regularizer"] = config.pop("kernel_regularizer")
        return config

    def _kernel_shape(self, channels):
        return self.kernel_size + (channels, self.depth_multiplier)

    def _bias_size(self):
        return self.kernel.shape[2] * self.depth_multiplier

    def _expected_channels(self):
        return self.kernel.shape[2]

    def _convolve(self, x):
        s, d, pads = self._geometry(x)
        kh, kw, c, m = self.kernel.shape
        return ops._conv_last(x, accel.reshape(self.kernel, (kh, kw, 1, c * m)), s, d, pads)


# --- pooling -------------------------------------------------------------------------------


class _Pool(Layer):
    rank = 2
    _op = None

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        who = type(self).__name__
        self.pool_size = _tuple(pool_size, self.rank, "pool_size", who)
        self.strides = self.pool_size if strides is None else _tuple(strides, self.rank, "strides", who)
        self.padding = _padding(padding, who)
        self.data_format = _data_format(data_format, who)

    def call(self, inputs):
        _check_rank(self, inputs, self.rank)
        fmt = ops._FORMATS[self.rank][self.data_format == "channels_first"]
        return ops._pool(self.name, self._op, inputs, self.pool_size, self.strides, self.padding.upper(), fmt,
                         self.rank)


class MaxPooling1D(_Pool):
    """The maximum of each window of steps; the gradient goes to the first maximum, as in TF."""

    rank = 1
    _op = ops._max_pool

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling2D(_Pool):
    """The maximum of each pool_size window. On ties the gradient goes to the window's first maximum
    (row-major), as TensorFlow's max_pool does; 'same' padding never wins a window."""

    _op = ops._max_pool

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling1D(_Pool):
    """The mean of each window of steps; 'same' windows average only the real steps, as in TF."""

    rank = 1
    _op = ops._avg_pool

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling2D(_Pool):
    """The mean of each pool_size window; 'same' windows average only the input elements, as in TF."""

    _op = ops._avg_pool

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling3D(_Pool):
    """The maximum of each pool_size window of (depth, height, width); the gradient goes to the first maximum
    (row-major), as in TF."""

    rank = 3
    _op = ops._max_pool

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling3D(_Pool):
    """The mean of each pool_size window of (depth, height, width); 'same' windows average only the input
    elements, as in TF. pool_size has no default, as in Keras 3."""

    rank = 3
    _op = ops._avg_pool

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class _GlobalPool(Layer):
    rank = 2
    _reduce = None

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format, type(self).__name__)
        self.keepdims = bool(keepdims)

    def call(self, inputs):
        _check_rank(self, inputs, self.rank)
        first = 2 if self.data_format == "channels_first" else 1
        return type(self)._reduce(inputs, axis=list(range(first, first + self.rank)), keepdims=self.keepdims)


class GlobalAveragePooling1D(_GlobalPool):
    rank = 1
    _reduce = accel.reduce_mean


class GlobalAveragePooling2D(_GlobalPool):
    _reduce = accel.reduce_mean


class GlobalMaxPooling1D(_GlobalPool):
    rank = 1
    _reduce = accel.reduce_max


class GlobalMaxPooling2D(_GlobalPool):
    _reduce = accel.reduce_max


class GlobalAveragePooling3D(_GlobalPool):
    rank = 3
    _reduce = accel.reduce_mean


class GlobalMaxPooling3D(_GlobalPool):
    rank = 3
    _reduce = accel.reduce_max


# --- resizing ------------------------------------------------------------------------------


def _pairs(value, n, who, what):
    """Keras's ((before, after), ...) for n spatial axes from an int, n symmetric ints or n pairs."""
    if isinstance(value, int):
        pairs = ((value, value),) * n
    else:
        value = tuple(value)
        if len(value) != n:
            raise ValueError("%s: %s must be an int, a tuple of %d ints or a tuple of %d pairs, got %r"
                             % (who, what, n, n, value))
        pairs = tuple((v, v) if isinstance(v, int) else tuple(v) for v in value)
    if any(len(p) != 2 or not all(isinstance(v, int) and v >= 0 for v in p) for p in pairs):
        raise ValueError("%s: %s must hold non-negative ints, got %r" % (who, what, value))
    return pairs


class _UpSampling(Layer):
    rank = 2

    def __init__(self, size, data_format=None, **kwargs):
        super().__init__(**kwargs)
        who = type(self).__name__
        self.size = _tuple(size, self.rank, "size", who)
        self.data_format = _data_format(data_format, who)

    def call(self, inputs):
        _check_rank(self, inputs, self.rank)
        x = _to_last(inputs, self.data_format)
        n, *sizes, c = x.shape
        spread = tuple(v for d, s in zip(sizes, self.size) for v in (d, s))
        y = accel.broadcast_to(accel.reshape(x, (n,) + tuple(v for d in sizes for v in (d, 1)) + (c,)),
                               (n,) + spread + (c,))
        out = (n,) + tuple(d * s for d, s in zip(sizes, self.size)) + (c,)
        return _from_last(accel.reshape(y, out), self.data_format)


class UpSampling2D(_UpSampling):
    """Repeats each row size[0] times and each column size[1] times (nearest-neighbour upsampling)."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(size, data_format, **kwargs)
        if interpolation != "nearest":
            raise NotImplementedError("UpSampling2D: only interpolation='nearest' is supported, got %r"
                                      % (interpolation,))
        self.interpolation = interpolation


class UpSampling3D(_UpSampling):
    """Repeats each element size[i] times along spatial axis i (depth, height, width)."""

    rank = 3

    def __init__(self, size=(2, 2, 2), data_format=None, **kwargs):
        super().__init__(size, data_format, **kwargs)


class _ZeroPadding(Layer):
    rank = 2

    def __init__(self, padding, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs(padding, self.rank, type(self).__name__, "padding")
        self.data_format = _data_format(data_format, type(self).__name__)

    def call(self, inputs):
        _check_rank(self, inputs, self.rank)
        spatial = [list(p) for p in self.padding]
        pads = [[0, 0], [0, 0]] + spatial if self.data_format == "channels_first" else [[0, 0]] + spatial + [[0, 0]]
        return accel.pad(inputs, pads)


class ZeroPadding2D(_ZeroPadding):
    """Zeros added around the rows and columns: padding ((top, bottom), (left, right))."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class ZeroPadding3D(_ZeroPadding):
    """Zeros added on both sides of depth, height and width: padding ((d0, d1), (h0, h1), (w0, w1))."""

    rank = 3

    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class _Cropping(Layer):
    rank = 2

    def __init__(self, cropping, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs(cropping, self.rank, type(self).__name__, "cropping")
        self.data_format = _data_format(data_format, type(self).__name__)

    def call(self, inputs):
        _check_rank(self, inputs, self.rank)
        first = 2 if self.data_format == "channels_first" else 1
        sizes = tuple(inputs.shape[first: first + self.rank])
        if any(a + b >= n for (a, b), n in zip(self.cropping, sizes)):
            raise ValueError("%s %s: cropping %s leaves nothing of an input with spatial shape %s"
                             % (type(self).__name__, self.name, self.cropping, sizes))
        key = [slice(None)] * inputs.ndim
        for i, ((a, b), n) in enumerate(zip(self.cropping, sizes)):
            key[first + i] = slice(a, n - b)
        return inputs[tuple(key)]


class Cropping2D(_Cropping):
    """Rows and columns cut off the edges: cropping ((top, bottom), (left, right))."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(cropping, data_format, **kwargs)


class Cropping3D(_Cropping):
    """Cut off the edges of depth, height and width: cropping ((d0, d1), (h0, h1), (w0, w1))."""

    rank = 3

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(cropping, data_format, **kwargs)


Convolution1D = Conv1D
Convolution2D = Conv2D
Convolution2DTranspose = Conv2DTranspose
Convolution3D = Conv3D
Convolution3DTranspose = Conv3DTranspose
MaxPool1D = MaxPooling1D
MaxPool2D = MaxPooling2D
AvgPool1D = AveragePooling1D
AvgPool2D = AveragePooling2D
MaxPool3D = MaxPooling3D
AvgPool3D = AveragePooling3D
GlobalAvgPool1D = GlobalAveragePooling1D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool1D = GlobalMaxPooling1D
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalAvgPool3D = GlobalAveragePooling3D
GlobalMaxPool3D = GlobalMaxPooling3D
