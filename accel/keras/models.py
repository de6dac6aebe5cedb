"""Models: `Model` (subclass it and write `call`) and `Sequential`. Both train through the `Trainer` mixin."""

from __future__ import annotations

import numpy as np

from accel.keras import saving
from accel.keras.layers.base import Layer, to_snake_case

try:
    from accel.keras.training import Trainer
except ModuleNotFoundError as e:  # the training mixin has not landed yet
    if e.name != "accel.keras.training":
        raise

    class Trainer:
        pass


__all__ = ["Input", "Model", "Sequential", "Functional", "load_model", "save_model"]


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

    def __new__(cls, *args, **kwargs):
        # as Keras: Model(inputs, outputs) makes a Functional model
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        if args or "inputs" in kwargs or "outputs" in kwargs:
            raise NotImplementedError(
                "%s: a subclass of Model cannot pass inputs and outputs to Model.__init__ in accel; build "
                "Model(inputs, outputs) directly, or write call()" % type(self).__name__
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

    def save_weights(self, filepath, overwrite=True):
        """`*.weights.h5`: Keras 3's HDF5 layout (needs h5py); any other name: accel's .npz checkpoint."""
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        saving.load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def save(self, filepath, overwrite=True, zipped=None):
        """Writes a Keras 3 `.keras` file (config.json, metadata.json, model.weights.h5), atomically."""
        saving.save_model(self, filepath, overwrite=overwrite)

    def get_config(self):
        from accel.keras import serialization  # noqa: PLC0415

        return serialization.model_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from accel.keras import serialization  # noqa: PLC0415

        return serialization.model_from_config(cls, config, custom_objects=custom_objects)

    def _summary_rows(self):
        return [(layer, None) for layer in self.layers]

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

        layer_rows = self._summary_rows()
        connected = any(c is not None for _, c in layer_rows)
        rows = [
            (
                "%s (%s)" % (layer.name, getattr(layer, "_display_class", type(layer).__name__)),
                shape(layer),
                format(layer.count_params(), ",") if layer.built else "0 (unbuilt)",
            )
            + ((c or "-",) if connected else ())
            for layer, c in layer_rows
        ]
        header = ("Layer (type)", "Output Shape", "Param #") + (("Connected to",) if connected else ())
        widths = [max(len(r[i]) for r in rows + [header]) + 3 for i in range(len(header) - 1)]
        widths[0] = max(widths[0], (line_length or 65) - widths[1] - 12)
        width = sum(widths) + (max(len(r[-1]) for r in rows + [header]) if connected else 12)

        def line(fields):
            return ("".join(f.ljust(w) for f, w in zip(fields[:-1], widths)) + fields[-1]).rstrip()

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


def keyed_layers(layers):
    """(key, layer) with Keras's keys: the snake-case class name, then _1, _2, ... for repeats ('dense', 'dense_1'),
    so weight paths do not depend on the process-wide layer names."""
    counts = {}
    for layer in layers:
        base = to_snake_case(type(layer).__name__)
        n = counts.get(base, 0)
        counts[base] = n + 1
        yield (base if n == 0 else "%s_%d" % (base, n)), layer


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
        if isinstance(layer, InputLayer):
            layer = layer.output
        if isinstance(layer, KerasTensor):
            if not isinstance(layer._keras_history[0], InputLayer):
                raise TypeError("Sequential.add: a KerasTensor can only be an Input, got %r" % (layer,))
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
        yield from keyed_layers(self._layers)
        yield from super()._children()

    def call(self, inputs, training=None):
        x = inputs
        for layer in self._layers:
            x = layer(x, training=training)
        return x


# after Model: functional.py subclasses it
from accel.keras.functional import Functional, Input, InputLayer, KerasTensor  # noqa: E402


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """A model from a Keras 3 `.keras` file (see accel.keras.saving.load_model)."""
    return saving.load_model(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)


def save_model(model, filepath, overwrite=True):
    saving.save_model(model, filepath, overwrite=overwrite)
