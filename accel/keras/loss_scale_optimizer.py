"""Keras 3's LossScaleOptimizer (`accel.keras.mixed_precision.LossScaleOptimizer`): dynamic loss scaling."""

from __future__ import annotations

import numpy as np

import accel
from accel import backend, optimizers
from accel.optimizers.base import Optimizer
from accel.recorder import state as _rec
from accel.variables import Variable


class LossScaleOptimizer(Optimizer):
    """Dynamic loss scaling around `inner_optimizer`, as Keras 3.

    `scale_loss(loss)` multiplies by the current scale (fit does this for you); `apply_gradients` then
    - with all gradients finite: divides them by the scale, lets the inner optimizer step, and doubles the scale
      after `dynamic_growth_steps` such steps in a row;
    - otherwise: skips the step (no variable, slot or `iterations` changes) and halves the scale.
    """

    def __init__(self, inner_optimizer, initial_scale=2.0**15, dynamic_growth_steps=2000, name=None, **kwargs):
        if not kwargs.pop("dynamic", True):
            raise ValueError("LossScaleOptimizer no longer supports `dynamic=False`. Instead, simply set "
                             "`loss_scale_factor` directly on the `inner_optimizer`.")
        defaults = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                    "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                    "loss_scale_factor": None, "gradient_accumulation_steps": None}
        for key, default in defaults.items():
            if key in kwargs and kwargs.pop(key) != default:
                raise ValueError("LossScaleOptimizer does not support `%s`. Instead, set `%s` on the "
                                 "`inner_optimizer`." % (key, key))
        if kwargs:
            raise ValueError("LossScaleOptimizer does not support arguments: `%s`." % "`, `".join(kwargs))
        if not isinstance(inner_optimizer, Optimizer):
            raise TypeError("LossScaleOptimizer: inner_optimizer must be an accel optimizer, got %r"
                            % (inner_optimizer,))
        if isinstance(inner_optimizer, LossScaleOptimizer):
            raise TypeError("LossScaleOptimizer: inner_optimizer is already a LossScaleOptimizer")
        initial_scale = float(initial_scale)
        if not np.isfinite(initial_scale) or initial_scale <= 0:
            raise ValueError("LossScaleOptimizer: initial_scale must be a positive finite number, got %r"
                             % (initial_scale,))
        if int(dynamic_growth_steps) != dynamic_growth_steps or dynamic_growth_steps < 1:
            raise ValueError("LossScaleOptimizer: dynamic_growth_steps must be an integer >= 1, got %r"
                             % (dynamic_growth_steps,))
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self.initial_scale = initial_scale
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        inner_optimizer.loss_scale_factor = None  # the scaling is this optimizer's; never twice
        self._scale_vars = None

    # --- state: Keras' order: own iteration and learning_rate, step_counter, dynamic_scale, then the inner's ---
    def build(self, var_list):
        if self._scale_vars is None:
            with backend.device("cpu"):
                self._scale_vars = (
                    Variable(0, dtype=accel.int64, trainable=False, name=self.name + "/step_counter"),
                    Variable(self.initial_scale, dtype=accel.float32, trainable=False,
                             name=self.name + "/dynamic_scale"))
        self.inner_optimizer.build(var_list)

    @property
    def built(self):
        return self._scale_vars is not None and self.inner_optimizer.built

    @property
    def step_counter(self):
        self._require_built()
        return self._scale_vars[0]

    @property
    def dynamic_scale(self):
        self._require_built()
        return self._scale_vars[1]

    def _require_built(self):
        if self._scale_vars is None:
            raise ValueError("LossScaleOptimizer %s is not built yet: apply gradients or call build(var_list)"
                             % self.name)

    @property
    def variables(self):
        own = [self._iterations, self._learning_rate] + list(self._scale_vars or ())
        return own + self.inner_optimizer.variables

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.inner_optimizer.learning_rate = value

    def scale_loss(self, loss):
        scale = self._scale_vars[1] if self._scale_vars is not None else self.initial_scale
        return loss * (accel.cast(scale, loss.dtype) if isinstance(scale, Variable) else scale)

    def __getattr__(self, name):
        if name in ("get_scaled_loss", "get_unscaled_gradients", "loss_scale"):
            raise AttributeError(
                "LossScaleOptimizer has no %r in Keras 3 (it was Keras 2's API): scale the loss with "
                "optimizer.scale_loss(loss) inside the tape and pass the scaled gradients to apply_gradients, "
                "which unscales them and skips steps with non-finite gradients; the scale is "
                "optimizer.dynamic_scale" % name)
        raise AttributeError("'LossScaleOptimizer' object has no attribute %r" % name)

    # --- the step ---------------------------------------------------------------------------------------------
    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        trace = _rec.trace
        if trace is not None and not trace.paused:  # inside accel.function: one host step, as every optimizer
            return self._traced_apply(trace, grads, trainable_variables)
        if trainable_variables is None:
            raise ValueError("LossScaleOptimizer.apply: pass trainable_variables (or use apply_gradients)")
        trainable_variables = list(trainable_variables)
        self.build(trainable_variables)
        counter, scale = self._scale_vars
        if not all(_finite(g) for g in grads):
            counter.assign(0)
            scale.assign(scale.read_value() * 0.5)
            return self.iterations
        s = scale.read_value()
        unscaled = [None if g is None else _divide(g, s) for g in grads]
        self.inner_optimizer.apply(unscaled, trainable_variables)
        if bool(accel.equal(counter.read_value(), self.dynamic_growth_steps - 1)):
            counter.assign(0)
            scale.assign(s * 2.0)
        else:
            counter.assign_add(1)
        return self.iterations

    def apply_gradients(self, grads_and_vars):
        pairs = list(grads_and_vars)
        return self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self):
        return {"name": self.name, "inner_optimizer": optimizers.serialize(self.inner_optimizer),
                "initial_scale": self.initial_scale, "dynamic_growth_steps": self.dynamic_growth_steps}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = config.pop("inner_optimizer")
        if isinstance(inner, dict):
            inner = optimizers.deserialize(inner, custom_objects)
        return cls(inner, **config)

    def __repr__(self):
        return "<accel.keras.mixed_precision.LossScaleOptimizer name=%r inner=%r>" % (self.name, self.inner_optimizer)


def _values(g):
    return g.values if hasattr(g, "values") and hasattr(g, "indices") else g


def _finite(g):
    if g is None:
        return True
    return bool(accel.reduce_all(accel.math.is_finite(accel.convert_to_tensor(_values(g)))))


def _divide(g, s):
    if hasattr(g, "values") and hasattr(g, "indices"):
        return type(g)(_divide(g.values, s), g.indices, getattr(g, "dense_shape", None))
    g = accel.convert_to_tensor(g)
    return g / accel.cast(s, g.dtype)
