"""Inputs and float64 references for every generated backward kernel (accel/ops/generated_loops.py):
the independent formula of references.ACTIVATIONS where it has one, else the op's own forward and
rule run by NumPy in float64 (a new op's rule is checked against finite differences by tests/test_ops.py)."""

import numpy as np

import references as R
from accel.ops import core, generated_loops
from accel.ops.core import REGISTRY

KERNELS = list(generated_loops.KERNELS)
SCALAR = 0.3  # a non-default value for kernels' scalars (leaky_relu's alpha) catches a dropped one


def alpha(name):
    return SCALAR if generated_loops.KERNELS[name]["scalars"] else None


def _attrs(name):
    spec = generated_loops.KERNELS[name]
    return dict(spec["attrs"], **{s: SCALAR for s in spec["scalars"]})


def act_inputs(name, n, dtype, rng):
    """(g, saved): x spans both sides of every kink; the first entries hit x = 0 and x = 6 exactly."""
    x = rng.standard_normal(n) * 4
    x[: min(n, 3)] = [0.0, 6.0, -1.5][: min(n, 3)]
    spec = generated_loops.KERNELS[name]
    if spec["saved"] == ("x",):
        saved = x
    elif name in R.ACTIVATIONS:
        saved = R.ACTIVATIONS[name][1](x, alpha(name))
    else:
        saved = REGISTRY[spec["op"]].forward(np, x, **_attrs(name))
    return rng.standard_normal(n).astype(dtype), np.asarray(saved).astype(dtype)


def act_grad_ref(name, g, saved):
    """g * f' in float64 from the (already rounded) inputs."""
    s = saved.astype(np.float64)
    if name in R.ACTIVATIONS:
        return g.astype(np.float64) * R.ACTIVATIONS[name][2](s, alpha(name))
    spec = generated_loops.KERNELS[name]
    x, out = (s, None) if spec["saved"] == ("x",) else (None, s)
    with np.errstate(all="ignore"):
        return REGISTRY[spec["op"]].rules[0](core.array_ns(np), g.astype(np.float64), out, x, **_attrs(name))
