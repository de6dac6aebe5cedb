"""Models: `Model` (subclass it and write `call`), `Functional` (`Model(inputs, outputs)`) and `Sequential`; all train
through the `Trainer` mixin."""

from __future__ import annotations

import numpy as np

import accel
from accel.keras import configs, saving, serialization
from accel.keras.functional import Graph, Input, InputLayer, KerasTensor, graph_config, graph_from_config
from accel.keras.layers.base import Layer
from accel.keras.naming import to_snake_case
from accel.keras.symbolic import pack_like

try:
    import accel.keras.training as training
    from accel.keras.training import Trainer
except ModuleNotFoundError as e:  # the training modules are optional: accel.keras works without them
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

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A Functional or Sequential model from its config (a subclassed model's config has no layers)."""
        if custom_objects:
            return serialization.deserialize_keras_object({"class_name": cls.__name__, "config": config},
                                                          custom_objects)
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("from_config(%s): the config needs a 'layers' list" % cls.__name__)
        if issubclass(cls, Functional) or cls is Model or "input_layers" in config:
            inputs, outputs = graph_from_config(config)
            return Functional(inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True))
        if issubclass(cls, Sequential):
            layers = [serialization.deserialize_keras_object(entry) for entry in config["layers"]]
            layers = [layer.output if isinstance(layer, InputLayer) else layer for layer in layers]
            return Sequential(layers, name=config.get("name"), trainable=config.get("trainable", True))
        raise ValueError("from_config: cannot build a %s from a config" % cls.__name__)

    def _weight_tree_children(self):
        layers = self._layers if hasattr(self, "_layers") else self.layers
        for key, layer in keyed_layers(layers):
            yield "layers/" + key, layer

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


class Functional(Model):
    """`Model(inputs, outputs)`: a graph of layers from `Input`s (one, a list or a dict) to outputs (one, a list
    or a dict). Calling it runs the recorded layer calls on real tensors; it can itself be called on KerasTensors
    (a nested model). `layers` lists InputLayers and layers in Keras's order (deepest first)."""

    _NOT_TRACKED = Model._NOT_TRACKED | {"_graph", "_layers", "_inbound_nodes", "_output_losses"}

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(outputs, tuple):
            outputs = list(outputs)
        graph = Graph(inputs, outputs)
        super().__init__(name=name, trainable=trainable, **kwargs)
        self._graph = graph
        self._layers = [op for op in graph.operations if isinstance(op, Layer)]
        self._output_losses = None
        self.built = True
        outs = graph.flat_outputs
        self._last_output_shape = outs[0].shape if len(outs) == 1 else [t.shape for t in outs]

    # --- structure ---------------------------------------------------------------------------------------
    @property
    def layers(self):
        return list(self._layers)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **graph_config(self._graph)}

    def _keras_names(self):
        return "keras.src.models.functional", type(self).__name__, "Functional"

    def _children(self):
        yield from keyed_layers(self._layers)
        yield from super()._children()

    @property
    def inputs(self):
        return list(self._graph.flat_inputs)

    @property
    def outputs(self):
        return list(self._graph.flat_outputs)

    @property
    def input(self):
        return self._graph.inputs

    @property
    def output(self):
        return self._graph.outputs

    @property
    def input_names(self):
        return [t._keras_history[0].name for t in self._graph.flat_inputs]

    @property
    def output_names(self):
        if isinstance(self._graph.outputs, dict):
            return list(self._graph.outputs)
        return [t._keras_history[0].name for t in self._graph.flat_outputs]

    def _summary_rows(self):
        rows = []
        for op in self._graph.operations:
            parents = []
            for node in op._inbound_nodes:
                if id(node) in self._graph.node_ids and not node.is_input:
                    for t in node.input_tensors:
                        layer, i, j = t._keras_history
                        index = self._graph.node_index(layer, layer._inbound_nodes[i])
                        parents.append("%s[%d][%d]" % (layer.name, index, j))
            rows.append((op, ", ".join(parents) if parents else "-"))
        return rows

    # --- calling -----------------------------------------------------------------------------------------
    def _flatten_inputs(self, inputs):
        spec = self._graph.inputs
        flat_spec = self._graph.flat_inputs
        if isinstance(inputs, dict):
            names = list(spec) if isinstance(spec, dict) else [t._keras_history[0].name for t in flat_spec]
            missing = [n for n in names if n not in inputs]
            if missing:
                raise ValueError("Model %s: the inputs dict lacks %s (it has %s; the model's inputs are %s)"
                                 % (self.name, missing, list(inputs), names))
            flat = [inputs[n] for n in names]
        elif isinstance(inputs, (list, tuple)) and not isinstance(spec, KerasTensor):
            flat = list(inputs)
        elif isinstance(inputs, (list, tuple)) and len(inputs) == 1 and isinstance(inputs[0], (accel.Tensor,
                                                                                               np.ndarray)):
            flat = list(inputs)
        else:
            flat = [inputs]
        if len(flat) != len(flat_spec):
            raise ValueError("Model %s expects %d input(s) %s, but it was called on %d"
                             % (self.name, len(flat_spec), [t.name for t in flat_spec], len(flat)))
        return [self._standardize(x, t, i) for i, (x, t) in enumerate(zip(flat, flat_spec))]

    def _standardize(self, x, spec, i):
        """x as a tensor of the input's dtype and rank (a trailing axis of 1 is added or dropped, as Keras)."""
        if not isinstance(x, accel.Tensor):
            x = accel.convert_to_tensor(np.asarray(x))
        if x.dtype.name != spec.dtype:
            x = accel.cast(x, spec.dtype)
        if x.ndim == len(spec.shape) + 1 and x.shape[-1] == 1:
            x = accel.squeeze(x, axis=-1)
        elif x.ndim == len(spec.shape) - 1 and spec.shape[-1] == 1:
            x = accel.expand_dims(x, -1)
        bad = x.ndim != len(spec.shape) or any(d is not None and d != e for d, e in zip(spec.shape, x.shape))
        if bad:
            raise ValueError("Input %d (%s) of model %s is incompatible: expected shape %s, got %s"
                             % (i, spec.name, self.name, spec.shape, tuple(x.shape)))
        return x

    def _convert_inputs(self, x):
        return x  # call() converts each input to its Input's dtype

    def call(self, inputs, training=None):
        return pack_like(self._graph.outputs, self._graph.run(self._flatten_inputs(inputs)))

    # --- training with several outputs -------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, run_eagerly=None,
                jit_compile=None, **kwargs):
        """As Model.compile; with several outputs `loss`, `loss_weights` and `metrics` may be lists (in output
        order) or dicts (by output name), and the total loss is the weighted sum of the outputs' losses."""
        n = len(self._graph.flat_outputs)
        if n == 1 and not isinstance(loss, (list, dict)) and loss_weights is None \
                and not isinstance(metrics, dict) and not (isinstance(metrics, list) and any(
                    isinstance(m, (list, tuple)) for m in metrics)):
            return super().compile(optimizer=optimizer, loss=loss, metrics=metrics, run_eagerly=run_eagerly,
                                   jit_compile=jit_compile, **kwargs)
        per_loss = self._per_output(loss, "loss", broadcast=True)
        weights = self._per_output(loss_weights, "loss_weights", broadcast=False)
        structured = training.OutputsLoss(self, per_loss, [1.0 if w is None else float(w) for w in weights])
        super().compile(optimizer=optimizer, loss=structured, metrics=None, run_eagerly=run_eagerly,
                        jit_compile=jit_compile, **kwargs)
        self.loss = loss
        self._compile_args = {"loss": loss, "metrics": metrics, "loss_weights": loss_weights}
        if metrics:
            per_metrics = self._per_output(metrics, "metrics", broadcast=False, lists=True)
            self._compile_metrics = training.OutputsMetrics(self, per_metrics)

    def _per_output(self, value, what, broadcast, lists=False):
        names = self.output_names
        n = len(names)
        if value is None:
            return [None] * n
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ValueError("compile: %s names %s, which are not outputs of model %s (its outputs are %s)"
                                 % (what, unknown, self.name, names))
            return [value.get(k) for k in names]
        if isinstance(value, (list, tuple)) and not (lists and n == 1 and not any(
                isinstance(v, (list, tuple)) for v in value)):
            if len(value) != n:
                raise ValueError("compile: %s is a list of %d entries, but model %s has %d outputs %s"
                                 % (what, len(value), self.name, n, names))
            return list(value)
        if broadcast or n == 1:
            return [value] * n
        raise ValueError("compile: with %d outputs, %s must be a list (one per output) or a dict by output name %s"
                         % (n, what, names))

    def _align(self, data, what):
        """Targets (or sample weights) as a list in output order, from one array, a list or a dict."""
        names = self.output_names
        if isinstance(data, dict):
            missing = [k for k in names if k not in data]
            if missing and what == "y":
                raise ValueError("Model %s: the targets dict lacks outputs %s (it has %s)"
                                 % (self.name, missing, list(data)))
            return [data.get(k) for k in names]
        if isinstance(data, (list, tuple)):
            if len(data) != len(names):
                raise ValueError("Model %s has %d outputs %s, but %d %s were given"
                                 % (self.name, len(names), names, len(data), what))
            return list(data)
        if data is None or what == "sample_weight":
            return [data] * len(names)
        if len(names) != 1:
            raise ValueError("Model %s has %d outputs %s: give y as a list or a dict of %d arrays"
                             % (self.name, len(names), names, len(names)))
        return [data]


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

    def get_config(self):
        entries = [] if self._input is None else [configs.serialize_keras_object(self._input._keras_history[0])]
        entries += [configs.serialize_keras_object(layer) for layer in self._layers]
        return {"name": self.name, "trainable": self.trainable, "dtype": configs.policy_config(self.dtype_policy.name),
                "layers": entries}

    def _keras_names(self):
        return "keras", type(self).__name__, None

    def _build_config(self):
        return None if self._input is None else {"input_shape": list(self._input.shape)}

    def call(self, inputs, training=None):
        x = inputs
        for layer in self._layers:
            x = layer(x, training=training)
        return x


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """A model from a Keras 3 `.keras` file (see accel.keras.saving.load_model)."""
    return saving.load_model(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)


def save_model(model, filepath, overwrite=True):
    saving.save_model(model, filepath, overwrite=overwrite)
