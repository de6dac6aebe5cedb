"""Core layers: Dense, Activation, Dropout, Flatten, Reshape, Embedding, and the `Input` placeholder."""

from __future__ import annotations

import numpy as np

import accel
from accel.keras import activations, initializers
from accel.keras.functional import Input  # noqa: F401  (layers.Input, as Keras)
from accel.keras.layers.base import Layer


def _check_last_axis(layer, inputs, expected):
    if inputs.ndim < 1 or inputs.shape[-1] != expected:
        raise ValueError(
            "Input of layer %s is incompatible with the layer: expected axis -1 of the input shape to "
            "have value %d, but received input with shape %s" % (layer.name, expected, inputs.shape)
        )


class Dense(Layer):
    """`activation(inputs @ kernel + bias)`, kernel (input_dim, units); rank > 2 inputs work per row."""

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        if self.units <= 0:
            raise ValueError("Dense: units must be positive, got %r" % (units,))
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel = None
        self.bias = None

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                "Dense %s: expected an input of rank >= 2 with a known last axis, got shape %s"
                % (self.name, tuple(input_shape))
            )
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), initializer=self.kernel_initializer, name="kernel"
        )
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.units,), initializer=self.bias_initializer, name="bias")

    def call(self, inputs):
        _check_last_axis(self, inputs, self.kernel.shape[0])
        x = accel.matmul(inputs, self.kernel)
        if self.bias is not None:
            x = x + self.bias
        return self.activation(x)


class Activation(Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, inputs):
        return self.activation(inputs)


class Dropout(Layer):
    """Zeroes a fraction `rate` of the inputs (scaling the rest by 1 / (1 - rate)) when `training` is true.

    With `seed`, the sequence of masks is reproducible; each call draws a new mask.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError("Dropout: rate must be in [0, 1), got %r" % (rate,))
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self._calls = 0

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        noise_shape = None
        if self.noise_shape is not None:
            noise_shape = tuple(inputs.shape[i] if d is None else d for i, d in enumerate(self.noise_shape))
        seed = None
        if self.seed is not None:
            seed = int(np.random.SeedSequence([self.seed, self._calls]).generate_state(1)[0])
            self._calls += 1
        return accel.nn.dropout(inputs, self.rate, noise_shape=noise_shape, seed=seed)


class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    def call(self, inputs):
        return accel.reshape(inputs, (inputs.shape[0], int(np.prod(inputs.shape[1:]))))


class Reshape(Layer):
    """Reshapes each sample to `target_shape` (which may hold one -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(d < -1 for d in self.target_shape):
            raise ValueError(
                "Reshape: target_shape may hold at most one -1 and no other negative size, got %s"
                % (target_shape,)
            )

    def call(self, inputs):
        return accel.reshape(inputs, (inputs.shape[0],) + self.target_shape)


class Embedding(Layer):
    """Rows of an (input_dim, output_dim) table looked up by integer ids; gradients flow to the rows used.

    `mask_zero=True` attaches the mask `ids != 0` to the output, which SimpleRNN, LSTM and GRU consume."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", mask_zero=False, **kwargs):
        super().__init__(**kwargs)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings = None

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            shape=(self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer,
            name="embeddings",
        )

    def call(self, inputs):
        if not inputs.dtype.is_integer:
            inputs = accel.cast(inputs, accel.int32)
        out = accel.gather(self.embeddings, inputs)
        # Keras gathers the float32 table and casts the rows (autocast off): the gradient stays row-sparse
        return out if self._compute_dtype == self._dtype else accel.cast(out, self._compute_dtype)

    autocast = False

    def compute_mask(self, inputs, mask=None):
        """With `mask_zero=True`, `inputs != 0`: id 0 is padding, and recurrent layers skip those steps."""
        if not self.mask_zero:
            return None
        return accel.not_equal(accel.convert_to_tensor(inputs), 0)
