"""Keras's functional API: symbolic `Input`s, layers called on them, and `Model(inputs, outputs)`.

A `KerasTensor` holds a shape, a dtype and its history (the layer, node index and output index that made it).
Calling a layer on KerasTensors runs it once on zeros of those shapes (which also builds it) to learn the output
shapes, and records a `Node`. `Functional` replays the recorded nodes on real tensors, in Keras's order.
"""

from __future__ import annotations

import functools

import numpy as np

import accel
from accel.keras.layers import base as _base
from accel.keras.layers.base import Layer, to_snake_case, unique_name


# --- symbolic tensors ----------------------------------------------------------------------------------------
# Keras 3's words (KerasTensor.__tf_tensor__), with accel's names
_SYMBOLIC_MESSAGE = (
    "A KerasTensor cannot be used as input to an accel (TensorFlow) function. A KerasTensor is a symbolic "
    "placeholder for a shape and dtype, used when constructing Keras Functional models or Keras Functions. You "
    "can only use it as input to a Keras layer or a Keras operation (the operators + - * / ** @ and unary -). "
    "You are likely doing something like:\n\n```\nx = Input(...)\n...\ntf_fn(x)  # Invalid.\n```\n\nWhat you "
    "should do instead is wrap `tf_fn` in a layer:\n\n```\nclass MyLayer(Layer):\n    def call(self, x):\n"
    "        return tf_fn(x)\n\nx = MyLayer()(x)\n```\n\nor, for a one-off function, "
    "`x = accel.keras.layers.Lambda(tf_fn)(x)`.\n")


class KerasTensor:
    """A symbolic tensor: `shape` (None for unknown sizes), `dtype` (a string) and `_keras_history`."""

    __array_priority__ = 1000  # so `np_array + kt` defers to KerasTensor.__radd__

    def __init__(self, shape, dtype="float32", name=None, history=None):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = accel.as_dtype(dtype).name
        self.name = name
        self._keras_history = history  # (layer, node_index, tensor_index)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return "<KerasTensor shape=%s, dtype=%s, name=%s>" % (self.shape, self.dtype, self.name)

    def __tf_tensor__(self, dtype=None, name=None):
        """TF's conversion protocol (accel's convert_to_tensor calls it): refused with Keras 3's message."""
        raise ValueError(_SYMBOLIC_MESSAGE)

    def __array__(self, *args, **kwargs):
        raise TypeError(_SYMBOLIC_MESSAGE)

    def __bool__(self):
        raise TypeError("A KerasTensor is symbolic and has no truth value; use a Lambda layer for control flow")

    def numpy(self):
        self.__array__()

    def _op(self, name, *args):
        return OpLayer(name)(*args)

    __hash__ = object.__hash__

    def __add__(self, other):
        return self._op("Add", self, other)

    def __radd__(self, other):
        return self._op("Add", other, self)

    def __sub__(self, other):
        return self._op("Subtract", self, other)

    def __rsub__(self, other):
        return self._op("Subtract", other, self)

    def __mul__(self, other):
        return self._op("Multiply", self, other)

    def __rmul__(self, other):
        return self._op("Multiply", other, self)

    def __truediv__(self, other):
        return self._op("TrueDivide", self, other)

    def __rtruediv__(self, other):
        return self._op("TrueDivide", other, self)

    def __pow__(self, other):
        return self._op("Power", self, other)

    def __rpow__(self, other):
        return self._op("Power", other, self)

    def __matmul__(self, other):
        return self._op("Matmul", self, other)

    def __rmatmul__(self, other):
        return self._op("Matmul", other, self)

    def __neg__(self):
        return self._op("Negative", self)


# Keras 3 writes operators on KerasTensors as op entries of module keras.src.ops.numpy; these are the ones accel
# reads and writes
_OPS = {
    "Add": lambda x, y: accel.add(x, y),
    "Subtract": lambda x, y: accel.subtract(x, y),
    "Multiply": lambda x, y: accel.multiply(x, y),
    "TrueDivide": lambda x, y: accel.divide(x, y),
    "Divide": lambda x, y: accel.divide(x, y),
    "Power": lambda x, y: accel.pow(x, y),
    "Matmul": lambda x, y: accel.matmul(x, y),
    "Negative": lambda x: accel.negative(x),
    "NotEqual": lambda x, y: accel.not_equal(x, y),
    "Equal": lambda x, y: accel.equal(x, y),
}


class OpLayer(Layer):
    """One of Keras's numpy ops (`x + 1`, `x * y`) as a graph step. It is not in `model.layers` (as in Keras)."""

    _is_op = True

    def __init__(self, op, name=None, **kwargs):
        if op not in _OPS:
            raise ValueError("accel reads only these Keras ops in a model: %s; got %r" % (sorted(_OPS), op))
        super().__init__(name=name or unique_name(to_snake_case(op)), **kwargs)
        self.op = op
        self._display_class = op
        self.built = True

    def __call__(self, *args, **kwargs):
        if any(isinstance(a, KerasTensor) for a in args):
            return symbolic_call(self, args[0], args[1:], kwargs)
        return self.call(*args, **kwargs)

    def call(self, *args):
        args = [a if isinstance(a, accel.Tensor) or not isinstance(a, np.ndarray) else accel.convert_to_tensor(a)
                for a in args]
        if self.op in ("Add", "Subtract", "Multiply", "TrueDivide", "Divide", "Power"):
            dts = [a.dtype for a in args if isinstance(a, accel.Tensor)]
            if dts:  # python numbers take the tensor's dtype, as in Keras
                args = [a if isinstance(a, accel.Tensor) else accel.constant(a, dtype=dts[0]) for a in args]
        return _OPS[self.op](*args)

    def get_config(self):
        return {"name": self.name}


class InputLayer(Layer):
    """The layer behind an `Input`: it has no weights and one node, whose output is the input KerasTensor."""

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None, sparse=None,
                 ragged=None, optional=False, input_tensor=None, **kwargs):
        if sparse or ragged:
            raise NotImplementedError("InputLayer: accel has no sparse or ragged tensors")
        if optional:
            raise NotImplementedError("InputLayer: accel has no optional inputs")
        if (shape is None) == (batch_shape is None):
            raise ValueError("Input: give exactly one of `shape` and `batch_shape`")
        if batch_shape is None:
            if isinstance(shape, (int, np.integer)):
                shape = (shape,)
            batch_shape = (batch_size,) + tuple(shape)
        if not isinstance(batch_shape, (list, tuple)) or not all(
                d is None or (isinstance(d, (int, np.integer)) and d >= 0) for d in batch_shape):
            raise ValueError("Input: shape must be a tuple of non-negative ints or None, got %r" % (batch_shape,))
        kwargs.pop("trainable", None)
        super().__init__(name=name if name is not None else unique_name("input_layer"), **kwargs)
        self.batch_shape = tuple(None if d is None else int(d) for d in batch_shape)
        self._input_dtype = accel.as_dtype("float32" if dtype is None else dtype).name
        self.built = True
        self._inbound_nodes = []
        self._last_output_shape = self.batch_shape
        tensor = KerasTensor(self.batch_shape, self._input_dtype, name=self.name, history=(self, 0, 0))
        Node(self, (), (), {}, [tensor], is_input=True)
        self.output = tensor

    @property
    def dtype(self):
        return self._input_dtype

    def call(self, inputs):
        return inputs


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None, tensor=None,
          optional=False, ragged=None):
    """A symbolic input: `x = Input(shape=(784,))` has shape (None, 784); pass it to layers, then to `Model`."""
    if tensor is not None:
        raise NotImplementedError("Input: accel does not wrap an existing tensor (tensor=)")
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape, name=name,
                       sparse=sparse, ragged=ragged, optional=optional)
    return layer.output


# --- nodes ---------------------------------------------------------------------------------------------------
class Node:
    """One call of `layer` in a graph: the call's arguments (with KerasTensors in them) and its outputs."""

    def __init__(self, layer, inputs, args, kwargs, outputs, is_input=False):
        self.layer = layer
        self.call_inputs = inputs
        self.call_args = tuple(args)
        self.call_kwargs = dict(kwargs)
        self.outputs = list(outputs)
        self.is_input = is_input
        if not hasattr(layer, "_inbound_nodes"):
            layer._inbound_nodes = []
        layer._inbound_nodes.append(self)

    @property
    def input_tensors(self):
        return [t for t in flatten((self.call_inputs, self.call_args, self.call_kwargs)) if isinstance(t, KerasTensor)]

    @property
    def parent_nodes(self):
        return [t._keras_history[0]._inbound_nodes[t._keras_history[1]] for t in self.input_tensors]


def flatten(x):
    """The leaves of nested lists, tuples and dicts (dicts in key order of insertion)."""
    if isinstance(x, (list, tuple)):
        return [leaf for v in x for leaf in flatten(v)]
    if isinstance(x, dict):
        return [leaf for v in x.values() for leaf in flatten(v)]
    return [x]


def map_structure(fn, x):
    if isinstance(x, dict):
        return {k: map_structure(fn, v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(map_structure(fn, v) for v in x)
    return fn(x)


def pack_like(structure, flat):
    """`flat` (a list of leaves) arranged as `structure`."""
    it = iter(flat)
    return map_structure(lambda _: next(it), structure)


def has_symbolic(inputs, args=(), kwargs=None):
    if isinstance(inputs, KerasTensor):
        return True
    if isinstance(inputs, (list, tuple, dict)) or args or kwargs:
        return any(isinstance(t, KerasTensor) for t in flatten((inputs, args, kwargs or {})))
    return False


def _concrete(x, sizes):
    """Zeros for a KerasTensor (unknown batch size -> sizes[0], other unknown sizes -> sizes[1])."""
    if not isinstance(x, KerasTensor):
        return x
    shape = tuple(sizes[0 if i == 0 else 1] if d is None else d for i, d in enumerate(x.shape))
    return accel.zeros(shape, dtype=x.dtype)


def symbolic_call(layer, inputs, args, kwargs):
    """Calls `layer` on KerasTensors: runs it on zeros to build it and find its output shapes, records a Node,
    and returns KerasTensors shaped like the outputs."""
    tensors = [t for t in flatten((inputs, args, kwargs)) if isinstance(t, KerasTensor)]
    unknown = [d is None for t in tensors for d in t.shape[1:]]

    def run(sizes):
        conv = lambda v: _concrete(v, sizes)  # noqa: E731
        c_in, c_args, c_kwargs = map_structure(conv, inputs), map_structure(conv, args), map_structure(conv, kwargs)
        if isinstance(layer, OpLayer):
            return layer.call(c_in, *c_args)
        saved_training = _base._context.training
        _base._context.training = None  # a model being built by a call is not training
        try:
            out = Layer.__call__(layer, c_in, *c_args, **c_kwargs)
        finally:
            _base._context.training = saved_training
        for _, sub in layer._iter_layers():
            sub._added_losses = []  # a building call on zeros is not a call of the user's
        return out

    try:
        first = run((1, 16))
        second = run((2, 32)) if any(unknown) else None
    except KerasTensorError:
        raise
    except Exception as e:
        raise type(e)("while calling layer %s (%s) on symbolic inputs %s: %s"
                      % (layer.name, type(layer).__name__, [t.shape for t in tensors], e)) from e
    batch_unknown = any(t.shape and t.shape[0] is None for t in tensors)

    def spec(i, t1, t2):
        if not isinstance(t1, accel.Tensor):
            raise TypeError("layer %s returned %r, not a tensor; accel's functional API needs tensor outputs"
                            % (layer.name, type(t1).__name__))
        shape = list(t1.shape)
        if t2 is not None:
            shape = [a if a == b else None for a, b in zip(t1.shape, t2.shape)]
        elif batch_unknown and shape:
            shape[0] = None
        return shape, t1.dtype.name

    flat1 = flatten(first)
    flat2 = flatten(second) if second is not None else [None] * len(flat1)
    specs = [spec(i, a, b) for i, (a, b) in enumerate(zip(flat1, flat2))]
    if not hasattr(layer, "_inbound_nodes"):
        layer._inbound_nodes = []
    node_index = len(layer._inbound_nodes)
    outs = [KerasTensor(s, dt, name="%s_%d" % (layer.name, i) if i else layer.name, history=(layer, node_index, i))
            for i, (s, dt) in enumerate(specs)]
    Node(layer, inputs, args, kwargs, outs)
    layer._last_output_shape = tuple(specs[0][0]) if len(specs) == 1 else [tuple(s) for s, _ in specs]
    return pack_like(first, outs)


class KerasTensorError(TypeError):
    pass


def _hook(layer, inputs, args, kwargs):
    if has_symbolic(inputs, args, kwargs):
        return symbolic_call(layer, inputs, args, kwargs)
    return NotImplemented


_base.symbolic_hook = _hook


# --- graphs --------------------------------------------------------------------------------------------------
def map_graph(inputs, outputs):
    """Keras's map_graph: (nodes in an order that runs, operations in Keras's `layers` order, node set)."""
    input_ids = {id(t) for t in inputs}
    finished, in_progress, order, indices = set(), set(), [], {}

    def visit(tensor):
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if id(node) in finished:
            return
        if id(node) in in_progress:
            raise ValueError("The graph has a cycle at layer %s" % layer.name)
        indices.setdefault(layer, len(indices))
        in_progress.add(id(node))
        if not node.is_input and id(tensor) not in input_ids:
            for t in node.input_tensors:
                visit(t)
        finished.add(id(node))
        in_progress.discard(id(node))
        order.append(node)

    for t in outputs:
        visit(t)
    node_depth, layer_depth = {}, {}
    for node in reversed(order):
        depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(node.layer, 0))
        layer_depth[node.layer] = depth
        node_depth[id(node)] = depth
        if id(node.outputs[0]) in input_ids or node.is_input:
            continue
        for parent in node.parent_nodes:
            node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for t in inputs:
        layer = t._keras_history[0]
        if layer not in layer_depth:
            layer_depth[layer] = 0
            indices[layer] = -1
            order.insert(0, layer._inbound_nodes[0])
    by_depth = {}
    for layer, d in layer_depth.items():
        by_depth.setdefault(d, []).append(layer)
    operations = []
    for d in sorted(by_depth, reverse=True):
        operations.extend(sorted(by_depth[d], key=lambda op: indices[op]))
    return order, operations


class Graph:
    """The part of a layer graph between `inputs` and `outputs` (nested structures of KerasTensors)."""

    def __init__(self, inputs, outputs):
        flat_in, flat_out = flatten(inputs), flatten(outputs)
        for where, flat in (("inputs", flat_in), ("outputs", flat_out)):
            if not flat:
                raise ValueError("Model: %s must not be empty" % where)
            for t in flat:
                if not isinstance(t, KerasTensor):
                    raise TypeError("Model: %s must be KerasTensors (from accel.keras.Input and layers called on "
                                    "them), got %s %r" % (where, type(t).__name__, t))
        for t in flat_in:
            layer = t._keras_history[0]
            if not isinstance(layer, InputLayer):
                raise ValueError("Model: each input must come from accel.keras.Input(...); %s is the output of "
                                 "layer %s" % (t.name, layer.name))
        self.inputs, self.outputs = inputs, outputs
        self.flat_inputs, self.flat_outputs = flat_in, flat_out
        self.nodes, self.operations = map_graph(flat_in, flat_out)
        known = {id(t) for t in flat_in}
        for node in self.nodes:
            if node.is_input and id(node.outputs[0]) not in known:
                raise ValueError("Graph disconnected: cannot obtain the value of tensor %s (input layer %s), which "
                                 "is not among the model's inputs %s"
                                 % (node.outputs[0], node.layer.name, [t.name for t in flat_in]))
        self.node_ids = {id(n) for n in self.nodes}

    def run(self, flat_values):
        values = {id(t): v for t, v in zip(self.flat_inputs, flat_values)}
        for node in self.nodes:
            if node.is_input or all(id(t) in values for t in node.outputs):
                continue
            sub = lambda v: values[id(v)] if isinstance(v, KerasTensor) else v  # noqa: E731
            ins = map_structure(sub, node.call_inputs)
            args = map_structure(sub, node.call_args)
            kwargs = map_structure(sub, node.call_kwargs)
            out = node.layer(ins, *args, **kwargs)
            for t, v in zip(node.outputs, flatten(out)):
                values[id(t)] = v
        return [values[id(t)] for t in self.flat_outputs]

    def node_index(self, layer, node):
        """The node's index among `layer`'s nodes that are in this graph (Keras's re-indexing on save)."""
        return [n for n in layer._inbound_nodes if id(n) in self.node_ids].index(node)


# --- the Functional model ----------------------------------------------------------------------------------
from accel.keras.models import Model, keyed_layers  # noqa: E402  (models.py imports this module after Model)


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
        self._layers = [op for op in graph.operations if not getattr(op, "_is_op", False)]
        self._output_losses = None
        self.built = True
        outs = graph.flat_outputs
        self._last_output_shape = outs[0].shape if len(outs) == 1 else [t.shape for t in outs]

    # --- structure ---------------------------------------------------------------------------------------
    @property
    def layers(self):
        return list(self._layers)

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
        from accel.keras import losses as losses_module  # noqa: PLC0415
        from accel.keras.training import CompileMetrics  # noqa: PLC0415

        names = self.output_names
        per_loss = self._per_output(loss, "loss", broadcast=True)
        weights = self._per_output(loss_weights, "loss_weights", broadcast=False)
        outputs_loss, outputs_metrics = _output_classes()
        structured = outputs_loss(self, [losses_module.get(v) if v is not None else None for v in per_loss],
                                  [1.0 if w is None else float(w) for w in weights])
        super().compile(optimizer=optimizer, loss=structured, metrics=None, run_eagerly=run_eagerly,
                        jit_compile=jit_compile, **kwargs)
        self.loss = loss
        self._compile_args = {"loss": loss, "metrics": metrics, "loss_weights": loss_weights}
        if metrics:
            per_metrics = self._per_output(metrics, "metrics", broadcast=False, lists=True)
            self._compile_metrics = outputs_metrics(
                self, [CompileMetrics(m if isinstance(m, (list, tuple)) else [m]) if m else None for m in per_metrics],
                names)

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


@functools.lru_cache(maxsize=None)
def _output_classes():
    """The multi-output loss and metrics classes; built on first use, as losses and metrics are optional modules."""
    from accel.keras import losses as losses_module  # noqa: PLC0415
    from accel.keras import metrics as metrics_module  # noqa: PLC0415

    class OutputsLoss(losses_module.Loss):
        """The compiled loss of a model with several outputs: sum of weight_i * loss_i(y_i, pred_i)."""

        def __init__(self, model, losses, weights):
            super().__init__(name="loss")
            self.model, self.weights = model, weights
            self.losses = [None if fn is None else fn if isinstance(fn, losses_module.Loss)
                           else losses_module.LossFunctionWrapper(fn) for fn in losses]
            # Keras 3 tracks each output's unweighted loss as "<output>_loss" when there are several losses
            named = [n for n, fn in zip(model.output_names, self.losses) if fn is not None]
            self.trackers = ([metrics_module.Mean(name="%s_loss" % n) for n in named] if len(named) > 1 else [])
            self._tracker_of = dict(zip(named, self.trackers))

        def __call__(self, y_true, y_pred, sample_weight=None):
            preds = flatten(y_pred)
            trues = self.model._align(y_true, "y")
            sws = self.model._align(sample_weight, "sample_weight")
            total = None
            for name, fn, w, t, p, sw in zip(self.model.output_names, self.losses, self.weights, trues, preds, sws):
                if fn is None or t is None:
                    continue
                term = fn(t, p, sample_weight=sw)
                tracker = self._tracker_of.get(name)
                if tracker is not None:
                    # Keras weighs by the batch size, which is None inside TF's traced train step: every batch
                    # counts once (recorded: tests/data/keras_training.npz)
                    tracker.update_state(term)
                term = term * w
                total = term if total is None else total + term
            if total is None:
                raise ValueError("compile: no output of model %s has both a loss and a target" % self.model.name)
            return total

    class OutputsMetrics(metrics_module.Metric):
        """Per-output compiled metrics; results are named '<output>_<metric>' as in Keras 3."""

        def __init__(self, model, per_output, names):
            super().__init__(name="compile_metrics")
            self.model, self.per_output, self.names = model, per_output, names

        def update_state(self, y_true, y_pred, sample_weight=None):
            preds = flatten(y_pred)
            trues = self.model._align(y_true, "y")
            sws = self.model._align(sample_weight, "sample_weight")
            for m, t, p, sw in zip(self.per_output, trues, preds, sws):
                if m is not None and t is not None:
                    m.update_state(t, p, sample_weight=sw)

        def result(self):
            out = {}
            for m, name in zip(self.per_output, self.names):
                if m is not None:
                    out.update({"%s_%s" % (name, k): v for k, v in m.result().items()})
            return out

        def reset_state(self):
            for m in self.per_output:
                if m is not None:
                    m.reset_state()

    return OutputsLoss, OutputsMetrics
