"""The kernel generator: the committed kernels are what the rules give, and the traced expression
computes what the rule computes on arrays."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from accel.ops import codegen, core, symbolic
from accel.ops.core import REGISTRY, defop

ROOT = pathlib.Path(__file__).resolve().parents[2]
KERNELS = codegen.backward_kernels(REGISTRY)


def test_generated_files_are_current():
    """accel/ops/generated_loops.py and kernels/elementwise.cu: run python tools/gen_kernels.py after a rule changes."""
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_kernels.py"), "--check"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("k", KERNELS, ids=[k.name for k in KERNELS])
def test_traced_expression_equals_the_rule_on_arrays(k):
    """symbolic.evaluate (Python floats) against the rule run by NumPy on float64 arrays, per element."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(200) * 4, [0.0, -0.0, 6.0, -6.0, 30.0, -30.0]])
    g = rng.standard_normal(x.size)
    op = REGISTRY[k.op]
    out = np.asarray(op.forward(np, x, **dict(k.attrs, **{s: 0.3 for s in k.scalars})), np.float64)
    attrs = dict(k.attrs, **{s: 0.3 for s in k.scalars})
    with np.errstate(all="ignore"):
        want = op.rules[0](core.array_ns(np), g, out, x, **attrs)
    got = [symbolic.evaluate(k.expr, {"g": g[i], "x": x[i], "out": out[i], **{s: 0.3 for s in k.scalars}})
           for i in range(x.size)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # libm vs NumPy tanh, where 1 + t cancels


def test_a_rule_reading_what_its_op_does_not_save_is_refused():
    op = core.Op("tests_reads_x", lambda xp, x: x, save="out").defvjp(lambda F, g, out, x: g * x)
    with pytest.raises(ValueError, match="reads 'x' but the op does not save it"):
        codegen.trace_backward(op, "tests_reads_x")


@pytest.mark.parametrize("rule, why", [
    (lambda F, g, out, x: g if x > 0 else -g, "Python bool"),
    (lambda F, g, out, x: g * F.cumsum(x), "cumsum"),
    (lambda F, g, out, x: g * x ** 0.5, "x \\*\\* 0.5"),
])
def test_what_is_not_elementwise_is_refused(rule, why):
    op = core.Op("tests_not_elementwise", lambda xp, x: x).defvjp(rule)
    with pytest.raises((symbolic.NotElementwise, AttributeError), match=why):
        codegen.trace_backward(op, "tests_not_elementwise")


def test_equal_subexpressions_are_one_node_and_constants_fold():
    x = symbolic.var("x")
    a = symbolic.NS.exp(-abs(x)) * 2
    b = symbolic.NS.exp(-abs(x)) * 2
    assert a is b
    assert symbolic.const(2.0) * 3 is symbolic.const(6.0)
    assert len([n for n in symbolic.postorder(a * a) if n.op == "exp"]) == 1


def test_renderings_name_every_saved_array_and_scalar():
    src = codegen.render_cuda(KERNELS)
    loops = codegen.render_numba(KERNELS)
    for k in KERNELS:
        params = ", ".join(["T* gx", "const T* g"] + ["const T* " + s for s in k.saved]
                           + ["ACC(T) " + s for s in k.scalars])
        assert "__global__ void %s_bwd(%s, long long n)" % (k.name, params) in src
        assert "def %s_bwd(F, prange, exp, tanh, erf, erf_gauss):\n    def loop(%s):" % (
            k.name, ", ".join(("gx", "g") + k.saved + k.scalars)) in loops


def test_defop_refuses_a_second_op_of_the_same_name():
    with pytest.raises(ValueError, match="already declared"):
        defop("relu", lambda xp, x: x)
