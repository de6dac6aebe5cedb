"""Keras's functional API: symbolic `Input`s, layers called on them, and the graph `Model(inputs, outputs)` runs.

Calling a layer on KerasTensors (accel/keras/symbolic.py) records a `Node`; a `Graph` orders the recorded nodes
between some inputs and outputs and replays them on real tensors, in Keras's order. `Functional`, the model
around a graph, is accel/keras/models.py's.
"""

from __future__ import annotations

import numpy as np

import accel
from accel.keras.configs import short_repr, serialize_keras_object, to_json
from accel.keras.layers.base import Layer
from accel.keras.naming import unique_name
from accel.keras.serialization import deserialize_keras_object
from accel.keras.symbolic import (  # noqa: F401  (KerasTensor, OpLayer, Node: the functional API's names)
    _OPS, KerasTensor, Node, OpLayer, flatten, map_structure, pack_like)


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

    def get_config(self):
        return {"batch_shape": list(self.batch_shape), "dtype": self.dtype, "sparse": False, "ragged": False,
                "name": self.name, "optional": False}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None, tensor=None,
          optional=False, ragged=None):
    """A symbolic input: `x = Input(shape=(784,))` has shape (None, 784); pass it to layers, then to `Model`."""
    if tensor is not None:
        raise NotImplementedError("Input: accel does not wrap an existing tensor (tensor=)")
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape, name=name,
                       sparse=sparse, ragged=ragged, optional=optional)
    return layer.output


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



# --- configs -----------------------------------------------------------------------------------------------
def graph_config(graph):
    """The Keras 3 config of a Functional model's graph: its layers (each with the nodes of its calls in this
    graph) and where its inputs and outputs come from."""

    def tensor(t):
        layer, i, j = t._keras_history
        return {"class_name": "__keras_tensor__", "config": {
            "shape": list(t.shape), "dtype": t.dtype,
            "keras_history": [layer.name, graph.node_index(layer, layer._inbound_nodes[i]), j]}}

    def value(v):
        if isinstance(v, KerasTensor):
            return tensor(v)
        return map_structure(lambda x: tensor(x) if isinstance(x, KerasTensor) else to_json(x),
                                        v) if isinstance(v, (list, tuple, dict)) else to_json(v)

    layers = []
    for op in graph.operations:
        entry = serialize_keras_object(op)
        entry["name"] = op.name
        entry["inbound_nodes"] = [
            {"args": [value(n.call_inputs)] + [value(a) for a in n.call_args],
             "kwargs": {k: value(v) for k, v in n.call_kwargs.items()}}
            for n in op._inbound_nodes if id(n) in graph.node_ids and not n.is_input]
        layers.append(entry)
    ref = lambda t: [t._keras_history[0].name, 0, 0]  # noqa: E731
    out_ref = lambda t: tensor(t)["config"]["keras_history"]  # noqa: E731
    return {"layers": layers,
            "input_layers": map_structure(ref, graph.inputs),
            "output_layers": map_structure(out_ref, graph.outputs)}


def graph_from_config(config):
    """(inputs, outputs) of the graph a Functional model's config describes: its layers rebuilt and called on
    each other's KerasTensors as its nodes say."""
    created, pending = {}, {}
    tensors = {}  # (layer name, node index, tensor index) -> KerasTensor
    order = []
    for entry in config["layers"]:
        if not isinstance(entry, dict):
            raise ValueError("each entry of 'layers' must be an object, got %r" % (short_repr(entry),))
        name = entry.get("name") or (entry.get("config") or {}).get("name")
        if not isinstance(name, str) or name in created:
            raise ValueError("layer entries need distinct names; got %r" % (name,))
        if entry.get("module") == "keras.src.ops.numpy" or entry.get("class_name") in _OPS and \
                entry.get("module", "").startswith("keras.src.ops"):
            layer = OpLayer(entry["class_name"], name=name)
        else:
            layer = deserialize_keras_object(entry)
        created[name] = layer
        order.append(name)
        nodes = entry.get("inbound_nodes", [])
        if not isinstance(nodes, list):
            raise ValueError("layer %s: inbound_nodes must be a list" % name)
        pending[name] = list(nodes)
        if isinstance(layer, InputLayer):
            tensors[(name, 0, 0)] = layer.output

    def ready(v):
        return all(key in tensors for key in _refs(v))

    progress = True
    while progress and any(pending.values()):
        progress = False
        for name in order:
            while pending[name] and ready(pending[name][0]):
                node = pending[name].pop(0)
                index = len(created[name]._inbound_nodes) if hasattr(created[name], "_inbound_nodes") else 0
                args, kwargs = _node_call(node, tensors)
                outs = created[name](*args, **kwargs)
                for j, t in enumerate(flatten(outs)):
                    tensors[(name, index, j)] = t
                progress = True
    stuck = [n for n in order if pending[n]]
    if stuck:
        raise ValueError("the model config cannot be built: layers %s wait for tensors no layer makes" % stuck)

    def lookup(ref):
        if not (isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str)):
            raise ValueError("a model input or output must be [layer name, node index, tensor index], got %r"
                             % (ref,))
        key = (ref[0], int(ref[1]), int(ref[2]))
        if key not in tensors:
            raise ValueError("the model config names %r, which no layer makes" % (ref,))
        return tensors[key]

    def structure(value):
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
            return lookup(value)
        if isinstance(value, dict):
            return {k: structure(v) for k, v in value.items()}
        if isinstance(value, list):
            return [structure(v) for v in value]
        raise ValueError("cannot read the model's inputs or outputs %r" % (short_repr(value),))

    return structure(config.get("input_layers")), structure(config.get("output_layers"))


def _refs(value):
    """The (layer, node, tensor) keys of the KerasTensors a node's data refers to."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            h = (value.get("config") or {}).get("keras_history")
            if not (isinstance(h, list) and len(h) == 3):
                raise ValueError("a __keras_tensor__ needs keras_history [layer, node, tensor], got %r" % (h,))
            return [(h[0], int(h[1]), int(h[2]))]
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        if len(value) == 4 and isinstance(value[0], str) and isinstance(value[3], dict):  # Keras 2 [name, n, t, {}]
            return [(value[0], int(value[1]), int(value[2]))]
        return [r for v in value for r in _refs(v)]
    return []


def _node_call(node, tensors):
    """(args, kwargs) of a node, with its KerasTensors; Keras 3's {'args', 'kwargs'} or Keras 2's list form."""
    def sub(v):
        if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__":
            h = v["config"]["keras_history"]
            return tensors[(h[0], int(h[1]), int(h[2]))]
        if isinstance(v, dict):
            return {k: sub(x) for k, x in v.items()}
        if isinstance(v, list):
            return [sub(x) for x in v]
        return v

    if isinstance(node, dict):
        args = node.get("args", [])
        kwargs = node.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict) or not args:
            raise ValueError("a node needs 'args' (a non-empty list) and 'kwargs' (an object), got %r"
                             % (short_repr(node),))
        # Keras records `mask=None` on every call of a layer whose call() takes a mask
        return [sub(a) for a in args], {k: sub(v) for k, v in kwargs.items() if not (k == "mask" and v is None)}
    if isinstance(node, list):  # Keras 2: [[name, node, tensor, kwargs], ...]
        ins = [tensors[(r[0], int(r[1]), int(r[2]))] for r in node]
        kwargs = node[0][3] if node and len(node[0]) > 3 and isinstance(node[0][3], dict) else {}
        return [ins[0] if len(ins) == 1 else ins], dict(kwargs)
    raise ValueError("cannot read node %r" % (short_repr(node),))
