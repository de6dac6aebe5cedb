"""Models: `Model` (subclass it and write `call`) and `Sequential`. Both train through the `Trainer` mixin."""

from __future__ import annotations

import numpy as np

from accel.keras import saving
from accel.keras.layers.base import Layer, to_snake_case
from accel.keras.layers.core import Input

try:
    from accel.keras.training import Trainer
except ModuleNotFoundError as e:  # the training mixin has not landed yet
    if e.name != "accel.keras.training":
        raise

    class Trainer:
        pass


__all__ = ["Input", "Model", "Sequential"]


def _readable_size(nbytes):
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return "%.2f %s" % (nbytes, unit)
        nbytes /= 1024


class Model(Trainer, Layer):
    """A layer with the training API (`compile`, `fit`, ...), weight checkpoints and `summary()`.

    >>> class MLP(Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden = Dense(64, activation="relu")
    ...         self.out = Dense(10)
    ...     def call(self, inputs, training=None):
    ...         return self.out(self.hidden(inputs))
    """

    def __init__(self, *args, **kwargs):
        if args or "inputs" in kwargs or "outputs" in kwargs:
            raise NotImplementedError(
                "accel has no functional Model(inputs, outputs); use Sequential or "
                "subclass Model and write call()"
            )
        # as Keras 3: the Trainer mixin sets up its own state, then the layer's
        Trainer.__init__(self)
        Layer.__init__(self, **kwargs)

    @property
    def layers(self):
        """The directly nested layers, in the order they were assigned."""
        out, seen = [], set()
        for _, child in self._children():
            if isinstance(child, Layer) and id(child) not in seen:
                seen.add(id(child))
                out.append(child)
        return out

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(
            "%s has no layer named %r; its layers are %s"
            % (self.name, name, [layer.name for layer in self.layers])
        )

    def save_weights(self, filepath):
        saving.save_weights(self, filepath)

    def load_weights(self, filepath):
        saving.load_weights(self, filepath)

    def summary(self, line_length=None, print_fn=None):
        """Prints each direct layer's output shape and parameter count, then the totals."""
        if not self.built:
            raise ValueError(
                "Model %s has not been built yet: call it on a batch of data, or build() it with an "
                "input shape, before summary()" % self.name
            )
        print_fn = print_fn or print

        def shape(layer):
            s = layer._last_output_shape
            if isinstance(s, tuple):
                return str((None,) + s[1:]) if s else "()"
            return "?" if s is None else str(s)

        def params(weights):
            n = sum(int(np.prod(v.shape)) for v in weights)
            return "%s (%s)" % (format(n, ","), _readable_size(sum(v.numpy().nbytes for v in weights)))

        rows = [
            (
                "%s (%s)" % (layer.name, type(layer).__name__),
                shape(layer),
                format(layer.count_params(), ",") if layer.built else "0 (unbuilt)",
            )
            for layer in self.layers
        ]
        header = ("Layer (type)", "Output Shape", "Param #")
        widths = [max(len(r[i]) for r in rows + [header]) + 3 for i in range(2)]
        widths[0] = max(widths[0], (line_length or 65) - widths[1] - 12)
        width = sum(widths) + 12

        def line(fields):
            return (fields[0].ljust(widths[0]) + fields[1].ljust(widths[1]) + fields[2]).rstrip()

        print_fn('Model: "%s"' % self.name)
        print_fn("_" * width)
        print_fn(line(header))
        print_fn("=" * width)
        for r in rows:
            print_fn(line(r))
        print_fn("=" * width)
        print_fn("Total params: " + params(self.weights))
        print_fn("Trainable params: " + params(self.trainable_weights))
        print_fn("Non-trainable params: " + params(self.non_trainable_weights))
        print_fn("_" * width)


class Sequential(Model):
    """A stack of layers, each fed the previous one's output.

    With an input shape known (an `Input` first, or `input_shape=` on the first layer) it builds at once;
    otherwise on the first call.
    """

    _NOT_TRACKED = Model._NOT_TRACKED | {"_layers"}

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(trainable=trainable, name=name)
        self._layers = []
        self._input = None
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._build_from_input()

    def add(self, layer, rebuild=True):
        if isinstance(layer, Input):
            if self._layers or self._input is not None:
                raise ValueError("Sequential %s: an Input can only come first" % self.name)
            self._input = layer
        elif isinstance(layer, Layer):
            if not self._layers and self._input is None and layer._input_shape_arg is not None:
                self._input = Input(batch_shape=layer._input_shape_arg)
            self._layers.append(layer)
            self.built = False
        else:
            raise TypeError("Sequential.add: expected a Layer or an Input, got %r" % (layer,))
        if rebuild:
            self._build_from_input()

    def pop(self, rebuild=True):
        layer = self._layers.pop()
        if rebuild:
            self._build_from_input()
        return layer

    def _build_from_input(self):
        if self._input is not None and self._layers:
            self.build(self._input.shape)

    def _children(self):
        # layers are named by class within the model ('dense', 'dense_1'), so weight paths do not depend
        # on the process-wide layer names
        counts = {}
        for layer in self._layers:
            base = to_snake_case(type(layer).__name__)
            n = counts.get(base, 0)
            counts[base] = n + 1
            yield (base if n == 0 else "%s_%d" % (base, n)), layer
        yield from super()._children()

    def call(self, inputs, training=None):
        x = inputs
        for layer in self._layers:
            x = layer(x, training=training)
        return x
