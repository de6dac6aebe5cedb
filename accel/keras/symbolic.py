"""Symbolic tensors for Keras's functional API: `KerasTensor` (a shape, a dtype and the call that made it), the
`Node` that records a call of a layer or op on KerasTensors, and `symbolic_call`, which makes one.

Calling a layer on KerasTensors runs it once on zeros of those shapes (which also builds it) to learn the output
shapes, and records a `Node`. This module sits below the layers: `Layer.__call__` (layers/base.py) calls
`symbolic_call` directly, and accel/keras/functional.py builds graphs of the nodes.
"""

from __future__ import annotations

import numpy as np

import accel
from accel.keras.naming import to_snake_case, unique_name

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


class Operation:
    """A step of a functional graph (Keras 3's Operation): a layer, or one of Keras's numpy ops. A call on
    KerasTensors records a Node through `symbolic_call`, which runs `_build_call` on zeros."""

    def _build_call(self, inputs, args, kwargs):
        raise NotImplementedError

    def _keras_names(self):
        """(module, class_name, registered_name) of this object's entry in a Keras 3 config."""
        return "keras.layers", type(self).__name__, None

    def _build_config(self):
        """The `build_config` Keras writes beside this object's config, or None."""
        return None


class OpLayer(Operation):
    """One of Keras's numpy ops (`x + 1`, `x * y`) as a graph step. It is not in `model.layers` (as in Keras):
    it has a name and nodes, but no weights."""

    built = True
    trainable = True

    def __init__(self, op, name=None):
        if op not in _OPS:
            raise ValueError("accel reads only these Keras ops in a model: %s; got %r" % (sorted(_OPS), op))
        self.name = name or unique_name(to_snake_case(op))
        self.op = op
        self._display_class = op
        self._inbound_nodes = []
        self._last_output_shape = None

    def __repr__(self):
        return "<OpLayer %s name=%s>" % (self.op, self.name)

    def __call__(self, *args, **kwargs):
        if any(isinstance(a, KerasTensor) for a in args):
            return symbolic_call(self, args[0], args[1:], kwargs)
        return self.call(*args, **kwargs)

    def _build_call(self, inputs, args, kwargs):
        return self.call(inputs, *args)

    def call(self, *args):
        args = [a if isinstance(a, accel.Tensor) or not isinstance(a, np.ndarray) else accel.convert_to_tensor(a)
                for a in args]
        if self.op in ("Add", "Subtract", "Multiply", "TrueDivide", "Divide", "Power"):
            dts = [a.dtype for a in args if isinstance(a, accel.Tensor)]
            if dts:  # python numbers take the tensor's dtype, as in Keras
                args = [a if isinstance(a, accel.Tensor) else accel.constant(a, dtype=dts[0]) for a in args]
        return _OPS[self.op](*args)

    def _keras_names(self):
        return "keras.src.ops.numpy", self.op, self.op

    def get_config(self):
        return {"name": self.name}

    def count_params(self):
        return 0


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
        return layer._build_call(map_structure(conv, inputs), map_structure(conv, args), map_structure(conv, kwargs))

    try:
        first = run((1, 16))
        second = run((2, 32)) if any(unknown) else None
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
    node_index = len(getattr(layer, "_inbound_nodes", ()))
    outs = [KerasTensor(s, dt, name="%s_%d" % (layer.name, i) if i else layer.name, history=(layer, node_index, i))
            for i, (s, dt) in enumerate(specs)]
    Node(layer, inputs, args, kwargs, outs)
    layer._last_output_shape = tuple(specs[0][0]) if len(specs) == 1 else [tuple(s) for s, _ in specs]
    return pack_like(first, outs)
