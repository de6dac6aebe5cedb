"""custom_gradient and the graph-mode `gradients` (which eager accel refuses, as TF does)."""

from __future__ import annotations

import functools
import inspect

from accel import tape as _tape
from accel.recorder import state as _rec
from accel.ops.core import Op, apply, convert
from accel.tensor import Tensor


def gradients(ys, xs, grad_ys=None, name="gradients", gate_gradients=False, aggregation_method=None,
              stop_gradients=None, unconnected_gradients=None):
    raise RuntimeError(
        "accel.gradients is not supported when eager execution is enabled (accel is always eager). "
        "Use accel.GradientTape instead: `with accel.GradientTape() as tape: y = f(x)` then "
        "`tape.gradient(y, x)`.")


def _flat(x):
    return _tape._flatten(x)


def custom_gradient(f=None):
    """Decorator: f returns (y, grad_fn); grad_fn(upstream) returns the inputs' gradients.

    If f reads Variables, grad_fn takes `variables=` and returns (input_grads, variable_grads).
    """
    if f is None:
        return custom_gradient

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        inputs = [convert(a) if not isinstance(a, Tensor) else a for a in args]
        outer = [t for t in _rec.tapes if t._recording]
        probe = _tape.GradientTape(watch_accessed_variables=True)
        for t in outer:
            t._recording = False
        try:
            with probe:
                y, grad_fn = f(*inputs, **kwargs)
        finally:
            for t in outer:
                t._recording = True
        # as TF: a Variable passed as an argument gets its gradient as an input, not through `variables`
        variables = [v for v in probe.watched_variables() if all(v is not a for a in inputs)]
        takes_vars = "variables" in inspect.signature(grad_fn).parameters
        if variables and not takes_vars:
            raise TypeError("custom_gradient: %s reads variables %s, so its grad_fn must accept a "
                            "`variables=` keyword argument" % (f.__name__, [v.name for v in variables]))
        ys = _flat(y)
        multi = not isinstance(y, Tensor)
        n_in = len(inputs)
        y_datas = [convert(t)._data for t in ys]

        def forward(xp, *datas):  # y is already computed; apply gives it fresh identities
            return tuple(y_datas) if multi else y_datas[0]

        def make_rule(k):
            def rule(F, g, out, *vals):
                cache = rule_cache
                if cache.get("g") is not g:  # grad_fn runs once per backward pass, for all inputs
                    cache["g"] = g
                    gs = g if isinstance(g, list) else [g]
                    tensor_mode = isinstance(gs[0], Tensor)
                    gs = [x if isinstance(x, Tensor) else Tensor(x) for x in gs]
                    up = gs if multi else gs[0]
                    if takes_vars:
                        in_g, var_g = grad_fn(*up if multi else [up], variables=variables)
                    else:
                        in_g, var_g = grad_fn(*up if multi else [up]), []
                    in_g = list(in_g) if isinstance(in_g, (list, tuple)) else [in_g]
                    if len(in_g) != n_in:
                        raise ValueError("custom_gradient: grad_fn of %s returned %d gradients for %d inputs"
                                         % (f.__name__, len(in_g), n_in))
                    allg = in_g + list(var_g)
                    cache["grads"] = [None if x is None else (convert(x) if tensor_mode else convert(x)._data)
                                      for x in allg]
                return cache["grads"][k]

            return rule

        rule_cache = {}
        # not registered: one Op per call of a custom_gradient function, saving only what its rules read
        op = Op("custom_gradient:" + f.__name__, forward, save="out" if multi else "none", multi_out=multi)
        op.defvjp(*[make_rule(k) for k in range(n_in + len(variables))])
        result = apply(op, tuple(inputs) + tuple(variables))
        if multi:
            return _tape._pack_like(y, list(result))
        return result

    return wrapper


def recompute_grad(f):
    """Accepted for TF code that uses it; gradients are the same, but accel keeps f's intermediates
    (it does not trade recomputation for memory)."""
    return f
