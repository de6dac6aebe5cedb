"""Layer: Keras's building block. Weights are created on the first call, when the input shape is known.

Sub-layers and Variables held in attributes (directly, or in lists, tuples and dicts) are tracked by walking
the attributes when asked, so `self.blocks = []; self.blocks.append(Dense(3))` is tracked too.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref

import numpy as np

import accel
from accel import module as _module
from accel import tape as _tape
from accel.keras import configs, initializers, mixed_precision, regularizers
from accel.keras.naming import to_snake_case, unique_name
from accel.keras.symbolic import Operation, has_symbolic, symbolic_call
from accel.module import Module, name_scope


class _CallContext(threading.local):
    training = None  # the `training` value of the innermost layer call in progress


_context = _CallContext()

# Keras arguments accel accepts only as None: constraints only through add_weight
_UNSUPPORTED_KWARGS = frozenset(
    "%s_constraint" % w for w in ("kernel", "bias", "embeddings", "beta", "gamma", "recurrent", "depthwise"))


# --- masks (Keras's `_keras_mask`) ---------------------------------------------------------------------
# A layer output carries its mask to the next layer's `mask=` argument. accel Tensors have __slots__, so the
# masks live in a side table keyed by id and dropped when the tensor dies.
_masks: dict[int, tuple] = {}


def get_keras_mask(x):
    """The mask a layer attached to tensor `x`, or None."""
    entry = _masks.get(id(x))
    return entry[1] if entry is not None and entry[0]() is x else None


def set_keras_mask(x, mask):
    key = id(x)
    _masks[key] = (weakref.ref(x, lambda _, key=key: _masks.pop(key, None)), mask)


@functools.lru_cache(maxsize=None)
def _accepts_mask(call):
    return "mask" in inspect.signature(call).parameters


@functools.lru_cache(maxsize=None)
def _accepts_training(call):
    params = inspect.signature(call).parameters.values()
    return any(p.name == "training" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _is_shape(s):
    return isinstance(s, (tuple, list)) and all(d is None or isinstance(d, (int, np.integer)) for d in s)


def _shapes(x):
    if isinstance(x, accel.Tensor):  # bookkeeping for summary(): not a size the call computes with
        return tuple(x._data.shape)
    if isinstance(x, (list, tuple)):
        return [_shapes(v) for v in x]
    if isinstance(x, dict):
        return {k: _shapes(v) for k, v in x.items()}
    return None


def _leaves(x):
    """The tensors in a structure of tensors and other values."""
    return [t for t in _tape._flatten(x) if isinstance(t, accel.Tensor)]


def _walk(path, value):
    """(path, obj) for every Module (Layers included) and Variable in `value`, looking inside lists, tuples
    and dicts."""
    if isinstance(value, (Module, accel.Variable)):
        yield path, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk("%s/%d" % (path, i), v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk("%s/%s" % (path, k), v)


class Layer(Module, Operation):
    """Base class of all layers: override `build(input_shape)` to create weights and `call(inputs)`.

    >>> class Scale(Layer):
    ...     def build(self, input_shape):
    ...         self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")
    ...     def call(self, inputs):
    ...         return inputs * self.w
    """

    # attributes that hold bookkeeping, not state to track
    _NOT_TRACKED = frozenset({"_own_weights", "_frozen", "_weight_regularizers", "_added_losses"})

    def __init__(self, trainable=True, name=None, dtype=None, **kwargs):
        input_shape = kwargs.pop("input_shape", None)
        input_dim = kwargs.pop("input_dim", None)
        for key in _UNSUPPORTED_KWARGS & kwargs.keys():
            if kwargs.pop(key) is not None:
                raise NotImplementedError("%s: accel layers do not support `%s`" % (type(self).__name__, key))
        # `kernel_regularizer=` etc.: penalties on the weight of that name, summed into `losses`
        self._regularizers = {}
        for key in [k for k in kwargs if k.endswith("_regularizer")]:
            reg = regularizers.get(kwargs.pop(key))
            if reg is not None:
                self._regularizers[key[: -len("_regularizer")]] = reg
        self._activity_regularizer = self._regularizers.pop("activity", None)
        self._weight_regularizers = []  # (Variable, regularizer)
        self._added_losses = []  # add_loss() values (and activity penalties) of the latest call
        if kwargs:
            raise TypeError("Unrecognized keyword arguments passed to %s: %s" % (type(self).__name__, kwargs))
        self.name = name if name is not None else unique_name(to_snake_case(type(self).__name__))
        # Keras names need not be Python identifiers, so Module.__init__ (which checks that) is not called
        with name_scope(self.name) as scope:
            self._name_scope = name_scope(scope)
        try:
            self._dtype_policy = mixed_precision.get(dtype)
        except ValueError as e:
            raise ValueError("%s: dtype must be a float type or a policy name, got %r (%s)"
                             % (self.name, dtype, e)) from None
        if "bfloat16" in (self._dtype_policy.compute_dtype, self._dtype_policy.variable_dtype):
            raise NotImplementedError(
                "%s: policy %r: accel's layers do not compute in bfloat16 yet (NumPy's matmul on ml_dtypes' "
                "bfloat16 returns float32, so results would not stay bfloat16); use 'mixed_float16'. accel.bfloat16 "
                "works for storage and casts" % (self.name, self._dtype_policy.name))
        self._dtype = accel.as_dtype(self._dtype_policy.variable_dtype)  # of the weights
        self._compute_dtype = accel.as_dtype(self._dtype_policy.compute_dtype)
        self._trainable = bool(trainable)
        self.built = False
        self._own_weights = []  # (name, Variable) from add_weight, in creation order
        self._frozen = []  # own Variables made non-trainable by `trainable = False`, restored by `True`
        if input_shape is not None:
            self._input_shape_arg = (None,) + tuple(input_shape)
        elif input_dim is not None:
            self._input_shape_arg = (None, int(input_dim))
        else:
            self._input_shape_arg = None
        self._last_output_shape = None

    def __repr__(self):
        return "<%s name=%s, built=%s>" % (type(self).__name__, self.name, self.built)

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        self._name = value

    def _module_leaves(self):
        """Module's view of a layer: its own weights in Keras order, then its nested layers and modules."""
        for name, v in self._own_variables():
            yield (name,), v
        for path, child in self._children():
            if isinstance(child, Module):
                yield tuple(path.split("/")), child

    @property
    def dtype(self):
        """The dtype of the layer's weights, as a string ('float32'), as Keras 3's `layer.dtype`."""
        return self._dtype.name

    @property
    def dtype_policy(self):
        """The layer's DTypePolicy (accel.keras.mixed_precision): variable and compute dtypes."""
        return self._dtype_policy

    @dtype_policy.setter
    def dtype_policy(self, value):
        policy = mixed_precision.get(value)
        if self.built and policy.variable_dtype != self._dtype.name:
            raise ValueError("%s: the built layer's weights are %s; a policy with variable dtype %s needs a new "
                             "layer" % (self.name, self._dtype.name, policy.variable_dtype))
        self._dtype_policy = policy
        self._dtype = accel.as_dtype(policy.variable_dtype)
        self._compute_dtype = accel.as_dtype(policy.compute_dtype)

    @property
    def compute_dtype(self):
        return self._compute_dtype.name

    @property
    def variable_dtype(self):
        return self._dtype.name

    # Keras' `autocast`: under a mixed policy, the layer's float weights are read in the compute dtype during
    # call. Layers that compute in float32 whatever the policy (normalizations) set it False.
    autocast = True

    def _autocast_weights(self):
        """Replaces, until _restore_weights, each trainable float weight held in an attribute of this layer and
        of its nested layers by its cast to the compute dtype (recorded: the gradient reaches the variable)."""
        swapped = []
        if self._compute_dtype == self._dtype:
            return swapped
        for _, layer in self._iter_layers():
            if not layer.autocast or layer._compute_dtype == layer._dtype:
                continue
            frozen = {id(v) for v in layer._frozen}
            attrs = vars(layer)
            for attr, value in list(attrs.items()):
                if (isinstance(value, accel.Variable) and value.dtype == layer._dtype
                        and (value.trainable or id(value) in frozen)):
                    attrs[attr] = accel.cast(value, layer._compute_dtype)
                    swapped.append((attrs, attr, value))
        return swapped

    @staticmethod
    def _restore_weights(swapped):
        for attrs, attr, value in swapped:
            attrs[attr] = value

    # --- building and calling ---------------------------------------------------------------
    def build(self, input_shape=None):
        """Creates the weights. This default builds nested layers by calling the layer once on zeros of
        `input_shape` (an unknown batch size becomes 1)."""
        if (
            type(self).build is Layer.build
            and input_shape is not None
            and any(not layer.built for _, layer in self._iter_layers() if layer is not self)
        ):
            self(self._zeros(input_shape), training=False)
            for _, layer in self._iter_layers():
                layer._added_losses = []  # a building call on zeros is not a call of the user's
        self.built = True

    def _zeros(self, shape):
        if _is_shape(shape):
            return accel.zeros(tuple(1 if d is None else int(d) for d in shape), dtype=self._compute_dtype)
        if isinstance(shape, dict):
            return {k: self._zeros(s) for k, s in shape.items()}
        return [self._zeros(s) for s in shape]

    def call(self, inputs, *args, **kwargs):
        raise NotImplementedError("Layer %s (%s) has no call() method" % (self.name, type(self).__name__))

    def __call__(self, inputs, *args, **kwargs):
        if has_symbolic(inputs, args, kwargs):  # the functional API: records a graph node
            return symbolic_call(self, inputs, args, kwargs)
        # masks: as Keras 3, a single-tensor call gets the mask attached to its input
        previous_mask = kwargs.get("mask")
        if previous_mask is None:
            previous_mask = get_keras_mask(inputs) if isinstance(inputs, accel.Tensor) else None
            if (previous_mask is not None and _accepts_mask(type(self).call)
                    and not _leaves([args, {k: v for k, v in kwargs.items() if k != "mask"}])):
                kwargs["mask"] = previous_mask
        inputs = self._convert_inputs(inputs)
        # Keras's rule: an explicit `training`, else the enclosing layer call's, else call()'s default
        outer = _context.training
        training = kwargs.pop("training", None)
        if training is None:
            training = outer
        if training is not None and _accepts_training(type(self).call):
            kwargs["training"] = training
        if not self.built and type(self).build is not Layer.build:
            self.build(_shapes(inputs))
        _context.training = training
        self._added_losses = []
        swapped = self._autocast_weights()
        try:
            outputs = self.call(inputs, *args, **kwargs)
        finally:
            _context.training = outer
            self._restore_weights(swapped)
        if self._activity_regularizer is not None:
            for out in _leaves(outputs):
                penalty = self._activity_regularizer(out)
                self._added_losses.append(penalty / float(out.shape[0]) if out.ndim else penalty)
        self.built = True
        self._last_output_shape = _shapes(outputs)
        if self.supports_masking:
            out_masks = self.compute_mask(inputs, previous_mask)
            flat_out = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            flat_masks = out_masks if isinstance(out_masks, (list, tuple)) else [out_masks]
            for out, m in zip(flat_out, flat_masks):
                if m is not None and isinstance(out, accel.Tensor):
                    set_keras_mask(out, m)
        return outputs

    def _build_call(self, inputs, args, kwargs):
        """The call on zeros by which symbolic_call builds the layer: not training, and adding no losses."""
        saved_training = _context.training
        _context.training = None
        try:
            out = Layer.__call__(self, inputs, *args, **kwargs)
        finally:
            _context.training = saved_training
        for _, sub in self._iter_layers():
            sub._added_losses = []
        return out

    supports_masking = False  # whether compute_mask gives the outputs' masks (Keras's flag)

    def compute_mask(self, inputs, mask=None):
        """The mask of the outputs (Keras 3): the input's mask passed through, for layers that support masking."""
        return mask if self.supports_masking else None

    def _convert_inputs(self, x):
        """Arrays become tensors; float tensors are cast to the layer's compute dtype (Keras's autocast)."""
        if isinstance(x, dict):
            return {k: self._convert_inputs(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)) and any(isinstance(v, (accel.Tensor, np.ndarray, dict)) for v in x):
            return type(x)(self._convert_inputs(v) for v in x)
        if isinstance(x, (accel.Tensor, np.ndarray, np.generic, list, tuple)):
            t = x if isinstance(x, accel.Tensor) else accel.convert_to_tensor(x)
            if t.dtype.is_floating and t.dtype != self._compute_dtype:
                t = accel.cast(t, self._compute_dtype)
            return t
        if isinstance(x, (str, bytes)) or x is None:
            raise TypeError("%s: inputs must be tensors or arrays of numbers, got %s %r"
                            % (self.name, type(x).__name__, x))
        return x

    # --- weights ----------------------------------------------------------------------------
    def add_weight(
        self,
        *args,
        shape=None,
        initializer=None,
        dtype=None,
        trainable=True,
        name=None,
        constraint=None,
        regularizer=None,
    ):
        """A new Variable owned by this layer.

        Positional arguments follow Keras 3, `(shape, initializer, dtype, trainable)`, or Keras 2 when the
        first is a string, `(name, shape, dtype, initializer, trainable)`.
        """
        if args:
            keras2 = isinstance(args[0], str)
            order = (
                ("name", "shape", "dtype", "initializer", "trainable")
                if keras2
                else ("shape", "initializer", "dtype", "trainable")
            )
            if len(args) > len(order):
                raise TypeError("add_weight takes at most %d positional arguments" % len(order))
            given = dict(zip(order[: len(args)], args, strict=True))
            name = given.get("name", name)
            shape = given.get("shape", shape)
            initializer = given.get("initializer", initializer)
            dtype = given.get("dtype", dtype)
            trainable = given.get("trainable", trainable)
        dt = self._dtype if dtype is None else accel.as_dtype(dtype)
        if initializer is None:
            initializer = "glorot_uniform" if dt.is_floating else "zeros"
        shape = () if shape is None else tuple(int(s) for s in shape)
        name = name or "variable_%d" % len(self._own_weights)
        value = initializers.get(initializer)(shape, dtype=dt)
        frozen = bool(trainable) and not self._trainable
        var = accel.Variable(
            value,
            trainable=bool(trainable) and not frozen,
            dtype=dt,
            constraint=constraint,
        )
        var._name = "%s/%s" % (self.name, name)  # Keras names weights by layer, whatever name_scope is open
        self._own_weights.append((name, var))
        if regularizer is None:
            regularizer = self._regularizers.get(name) or self._regularizers.get(name.removesuffix("_kernel"))
        if regularizer is not None:
            self._weight_regularizers.append((var, regularizers.get(regularizer)))
        if frozen:
            self._frozen.append(var)
        _module.variables_created(self)
        return var

    # --- losses ------------------------------------------------------------------------------
    def add_loss(self, loss):
        """Adds a value to `losses` (cleared when the layer is called again); fit adds them to the loss."""
        self._added_losses.append(accel.convert_to_tensor(loss))

    @property
    def losses(self):
        """The penalties of this layer and its nested layers: add_loss() values of their latest calls, and
        each weight regularizer evaluated now (so a tape around the access differentiates it)."""
        out = []
        for _, layer in self._iter_layers():
            out.extend(layer._added_losses)
            out.extend(reg(v) for v, reg in layer._weight_regularizers)
        return out

    def _children(self):
        """(attribute path, obj) for the Layers and Variables this layer holds, in assignment order."""
        for attr, value in vars(self).items():
            if attr not in self._NOT_TRACKED:
                yield from _walk(attr, value)

    def _iter_layers(self):
        """(path prefix, layer) for this layer and each nested layer once, depth first."""
        seen = {id(self)}

        def visit(prefix, layer):
            yield prefix, layer
            for path, child in layer._children():
                if isinstance(child, Layer) and id(child) not in seen:
                    seen.add(id(child))
                    yield from visit(prefix + path + "/", child)

        return visit("", self)

    def _own_variables(self):
        """(name, Variable) owned directly, trainable ones first as in Keras (frozen ones count as such)."""
        frozen = {id(v) for v in self._frozen}
        items, seen = [], set()
        attr_vars = [(p, c) for p, c in self._children() if isinstance(c, accel.Variable)]
        for name, v in self._own_weights + attr_vars:
            if id(v) not in seen:
                seen.add(id(v))
                items.append((name, v))
        first = [it for it in items if it[1].trainable or id(it[1]) in frozen]
        return first + [it for it in items if not (it[1].trainable or id(it[1]) in frozen)]

    def _weight_items(self):
        """(path, Variable) for every weight, each once: own weights first, then nested layers' in order."""
        seen = set()
        for prefix, layer in self._iter_layers():
            for name, v in layer._own_variables():
                if id(v) not in seen:
                    seen.add(id(v))
                    yield prefix + name, v

    @property
    def weights(self):
        return [v for _, v in self._weight_items()]

    variables = weights

    @property
    def trainable_weights(self):
        return [v for v in self.weights if v.trainable] if self._trainable else []

    @property
    def non_trainable_weights(self):
        return [v for v in self.weights if not v.trainable] if self._trainable else self.weights

    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """Freezing a layer freezes its nested layers, and the tape stops watching their weights."""
        value = bool(value)
        for _, layer in self._iter_layers():
            if value:
                for v in layer._frozen:
                    v._trainable = True  # accel.Variable has no public setter for this flag
                layer._frozen = []
            else:
                now = [v for _, v in layer._own_variables() if v.trainable]
                for v in now:
                    v._trainable = False
                layer._frozen += now
            layer._trainable = value

    # --- configs: accel/keras/configs.py ---
    def get_config(self):
        """The constructor arguments as JSON-able values, as Keras's `get_config()`."""
        return configs.layer_config(self, Layer)

    @classmethod
    def from_config(cls, config):
        return configs.layer_from_config(cls, config, Layer)

    def _keras_names(self):
        cls = type(self)
        if not cls.__module__.startswith("accel.keras"):
            raise TypeError("cannot serialise layer %s of class %s.%s: register the class with "
                            "accel.keras.saving.register_keras_serializable" % (self.name, cls.__module__,
                                                                                cls.__name__))
        return "keras.layers", cls.__name__, None

    def _weight_tree_children(self):
        """(path, layer) of the nested layers in Keras 3's weights layout (a model's are `layers/<key>`)."""
        for path, child in self._children():
            if isinstance(child, Layer):
                yield path, child

    def count_params(self):
        if not self.built:
            raise ValueError("count_params: layer %s is not built yet; call it on data first" % self.name)
        return int(sum(int(np.prod(v.shape)) for v in self.weights))

    def get_weights(self):
        """Copies of the weights as NumPy arrays, in `weights` order."""
        return [np.array(v.numpy(), copy=True) for v in self.weights]

    def set_weights(self, weights):
        """Assigns all weights, or none if any value has the wrong count, shape or dtype."""
        variables = self.weights
        weights = list(weights)
        if len(weights) != len(variables):
            raise ValueError(
                "set_weights: layer %s has %d weights, but %d values were given"
                % (self.name, len(variables), len(weights))
            )
        values, problems = [], []
        for i, (v, w) in enumerate(zip(variables, weights, strict=True)):
            a = np.asarray(w.numpy() if isinstance(w, accel.Tensor) else w)
            target = v.dtype.dtype
            if tuple(a.shape) != tuple(v.shape):
                problems.append(
                    "weight %d (%s): expected shape %s, got %s" % (i, v.name, tuple(v.shape), a.shape)
                )
            elif a.dtype.kind not in "biuf" or not np.can_cast(a.dtype, target, "same_kind"):
                problems.append(
                    "weight %d (%s): cannot use a %s value for a %s weight" % (i, v.name, a.dtype, target)
                )
            else:
                values.append(a.astype(target, copy=False))
        if problems:
            raise ValueError(
                "set_weights on layer %s changed nothing:\n  %s" % (self.name, "\n  ".join(problems))
            )
        for v, a in zip(variables, values, strict=True):
            v.assign(a)
