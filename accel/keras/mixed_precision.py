"""`accel.keras.mixed_precision`: Keras 3's dtype policies and dynamic loss scaling.

    accel.keras.mixed_precision.set_global_policy("mixed_float16")
    model = ...                     # layers keep float32 variables and compute in float16
    model.compile(optimizer="adam", loss=...)   # the optimizer is wrapped in a LossScaleOptimizer

A layer under a mixed policy casts its float inputs and, for the duration of its call, its own float32 weights
to the compute dtype (the casts are recorded, so gradients reach the float32 variables in float32). Layers that
need float32 arithmetic (LayerNormalization, BatchNormalization) compute in float32 and cast their output back,
and the losses cast predictions to float32, as Keras 3 does.
"""

from __future__ import annotations

import threading

import accel

_MIXED = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


class DTypePolicy:
    """A dtype policy: `variable_dtype` for weights, `compute_dtype` for a layer's arithmetic.

    Names: "mixed_float16", "mixed_bfloat16", or a float dtype ("float32", "float16", "float64", "bfloat16").
    """

    def __init__(self, name=None):
        if isinstance(name, DTypePolicy):
            name = name.name
        if name is None:
            name = global_policy().name
        if not isinstance(name, str):
            try:
                name = accel.as_dtype(name).name
            except TypeError:
                name = repr(name)
        if name in _MIXED:
            compute, variable = _MIXED[name], "float32"
        else:
            try:
                dt = accel.as_dtype(name)
            except TypeError:
                dt = None
            if dt is None or not dt.is_floating:
                raise ValueError(
                    "Cannot convert %r to a mixed precision DTypePolicy. Valid policies include 'mixed_float16', "
                    "'mixed_bfloat16', and the name of any float dtype such as 'float32'." % (name,))
            compute = variable = dt.name
        self._name = name
        self._compute_dtype = compute
        self._variable_dtype = variable

    @property
    def name(self):
        return self._name

    @property
    def compute_dtype(self):
        return self._compute_dtype

    @property
    def variable_dtype(self):
        return self._variable_dtype

    def get_config(self):
        return {"name": self._name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self):
        return hash(self._name)

    def __repr__(self):
        return '<DTypePolicy "%s">' % self._name


Policy = DTypePolicy


class _Global(threading.local):
    policy = None


_global = _Global()
_DEFAULT = None


def global_policy():
    """The policy layers get when created without `dtype=` (float32 unless set_global_policy changed it)."""
    global _DEFAULT
    if _global.policy is not None:
        return _global.policy
    if _DEFAULT is None:
        _DEFAULT = DTypePolicy("float32")
    return _DEFAULT


def set_global_policy(policy):
    """Sets the default policy of new layers: a DTypePolicy, a policy name, or None for float32."""
    if policy is None:
        _global.policy = None
        return
    if isinstance(policy, str) or not isinstance(policy, DTypePolicy):
        policy = DTypePolicy(policy)
    _global.policy = policy


set_dtype_policy = set_global_policy
dtype_policy = global_policy


def get(value):
    """A DTypePolicy from None (the global one), a name, a DTypePolicy, an accel DType or a config dict."""
    if value is None:
        return global_policy()
    if isinstance(value, DTypePolicy):
        return value
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "Policy"):
        return DTypePolicy((value.get("config") or {}).get("name"))
    return DTypePolicy(value)


def __getattr__(name):
    # LossScaleOptimizer needs accel.optimizers, an optional module: imported when first asked for
    if name == "LossScaleOptimizer":
        from accel.keras.loss_scale_optimizer import LossScaleOptimizer  # noqa: PLC0415

        return LossScaleOptimizer
    raise AttributeError("module 'accel.keras.mixed_precision' has no attribute %r" % name)
