"""Kernels generated from the ops' own gradient rules: one scalar expression, two renderings.

An op declared with `fused=fusion.Generated(...)` gets its backward kernel from its rule: the rule is
traced once with accel.ops.symbolic's namespace, and the expression is rendered as a numba loop
(accel/ops/generated_loops.py, float32 math through accel.cpu_math so LLVM vectorizes it) and as a
CUDA template (kernels/elementwise.cu). tools/gen_kernels.py writes both files; a test checks that
they are what the rules give today.
"""

from __future__ import annotations

from dataclasses import dataclass

from accel.ops import symbolic
from accel.ops.symbolic import postorder, var

SAVED_ORDER = ("x", "out")  # the arrays a backward kernel may read besides g, in argument order


@dataclass(frozen=True)
class BackwardKernel:
    name: str  # e.g. "gelu_tanh": CUDA gelu_tanh_bwd<T>, numba gelu_tanh_bwd_f32 / _f64
    op: str
    attrs: tuple  # the static attributes this variant fixes, ((name, value), ...)
    saved: tuple  # what it reads besides g: a subset of SAVED_ORDER
    scalars: tuple  # runtime scalar attributes, passed as kernel arguments
    expr: symbolic.Expr


def trace_backward(op, name, static=(), scalars=()):
    """The BackwardKernel of a one-input elementwise op's rule, for one variant."""
    if op.rules is None or len(op.rules) != 1:
        raise symbolic.NotElementwise("%s: a generated backward needs exactly one rule" % op.name)
    attrs = dict(static)
    attrs.update({s: var(s) for s in scalars})
    expr = symbolic.const(op.rules[0](symbolic.NS, var("g"), var("out"), var("x"), **attrs))
    used = {n.value for n in postorder(expr) if n.op == "var"}
    saved = tuple(v for v in SAVED_ORDER if v in used)
    declared = {"x": op.save_inputs, "out": op.save_out}
    for v in saved:
        if not declared[v]:
            raise ValueError("%s: its rule reads %r but the op does not save it (defop save=)" % (op.name, v))
    return BackwardKernel(name, op.name, tuple(sorted(dict(static).items())), saved, tuple(scalars), expr)


def backward_kernels(registry):
    """Every generated backward kernel of the registry's ops, in a stable order."""
    out = []
    for op in registry.values():
        gen = op.fused
        if getattr(gen, "generated", False):
            for name, static in gen.variants.items():
                out.append(trace_backward(op, name, tuple(static.items()), gen.scalars))
    return sorted(out, key=lambda k: k.name)


@dataclass(frozen=True)
class UpdateKernel:
    """An in-place elementwise update (an optimizer step): reads `arrays`, writes `outputs` (a subset)."""

    name: str  # e.g. "adam_amsgrad": numba adam_amsgrad_update_f32 / _f64
    arrays: tuple
    outputs: tuple
    scalars: tuple
    exprs: tuple  # one per output


def trace_update(name, rule, arrays, scalars, static=()):
    """The UpdateKernel of rule(xp, *arrays, **scalars, **static) -> {array name: new value}."""
    new = rule(symbolic.NS, *(var(a) for a in arrays), **{s: var(s) for s in scalars}, **dict(static))
    unknown = set(new) - set(arrays)
    if unknown:
        raise ValueError("%s: the rule returns %s, which are not among its arrays %s" % (name, sorted(unknown), arrays))
    outputs = tuple(a for a in arrays if a in new)
    return UpdateKernel(name, tuple(arrays), outputs, tuple(scalars), tuple(symbolic.const(new[o]) for o in outputs))


def update_kernels(declarations):
    """UpdateKernels of {name: (rule, arrays, scalars, static)} in a stable order."""
    return [trace_update(n, *declarations[n]) for n in sorted(declarations)]


# --- rendering ------------------------------------------------------------------------------

_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "gt": ">", "ge": ">=", "lt": "<", "le": "<=",
           "eq": "==", "ne": "!="}
# op: (Python, C) templates over the operands {0}, {1}, {2}. NaN propagates through maximum/minimum,
# as in np.maximum: a NaN first operand is kept, a NaN second operand fails the comparison and is taken
_TEMPLATES = {
    "where": ("({1} if {0} else {2})", "({0} ? {1} : {2})"),
    "max": ("({0} if ({0} >= {1} or {0} != {0}) else {1})", "(({0} >= {1} || {0} != {0}) ? {0} : {1})"),
    "min": ("({0} if ({0} <= {1} or {0} != {0}) else {1})", "(({0} <= {1} || {0} != {0}) ? {0} : {1})"),
    "and": ("({0} & {1})", "({0} && {1})"),
    "or": ("({0} | {1})", "({0} || {1})"),
    "not": ("(not {0})", "(!{0})"),
    "neg": ("-{0}", "-{0}"),
}
_PY = {op: py for op, (py, _) in _TEMPLATES.items()}
_C = {op: c for op, (_, c) in _TEMPLATES.items()}


def _erf_gauss_pairs(order):
    """{id(erf node): exp node} where erf(u) and exp(-(u*u)) both occur: accel.cpu_math.erf_gauss_f32
    computes the two from one exp, bit-identical to erf_f32(u) and exp_f32(-(u*u))."""
    erfs = {id(n.args[0]): n for n in order if n.op == "erf"}
    pairs = {}
    for n in order:
        if n.op == "exp" and n.args[0].op == "neg":
            sq = n.args[0].args[0]
            if sq.op == "mul" and sq.args[0] is sq.args[1] and id(sq.args[0]) in erfs:
                pairs[id(erfs[id(sq.args[0])])] = n
    return pairs


def _lines(roots, dialect, const, call, erf_gauss=False, arrays=("g",) + SAVED_ORDER):
    """(temporaries as [(name, is_bool, code)], the roots' codes): one line per interior node, each
    subexpression once across all roots; variables named in `arrays` are the loaded elements (name_)."""
    names, lines = {}, []
    order = []
    seen = set()
    for r in roots:
        for n in postorder(r):
            if id(n) not in seen:
                seen.add(id(n))
                order.append(n)
    pairs = _erf_gauss_pairs(order) if erf_gauss else {}
    by_id = {id(n): n for n in order}
    partner = {}
    for erf_id, ex in pairs.items():
        partner[erf_id], partner[id(ex)] = ex, by_id[erf_id]
    needed, stack = set(), list(roots)  # an exp that erf_gauss supplies needs none of its operands
    while stack:
        n = stack.pop()
        if id(n) not in needed:
            needed.add(id(n))
            if not (n.op == "exp" and id(n) in partner):
                stack.extend(n.args)
    for n in order:
        if id(n) in names or id(n) not in needed:  # named with its erf_gauss partner, or unused
            continue
        other = partner.get(id(n))
        if other is not None:
            erf, ex = (n, other) if n.op == "erf" else (other, n)
            t = "t%d" % len(lines)
            lines.append(("%s, %s_g" % (t, t), False, "erf_gauss(%s)" % names[id(erf.args[0])]))
            names[id(erf)], names[id(ex)] = t, t + "_g"
            continue
        if n.op == "var":
            names[id(n)] = n.value + "_" if n.value in arrays else n.value
            continue
        if n.op == "const":
            names[id(n)] = const(n.value)
            continue
        a = [names[id(x)] for x in n.args]
        if n.op in dialect:
            code = dialect[n.op].format(*a)
        elif n.op in _BINARY:
            code = "%s %s %s" % (a[0], _BINARY[n.op], a[1])
        else:
            code = "%s(%s)" % (call(n.op), a[0])
        t = "t%d" % len(lines)
        lines.append((t, n.is_bool, code))
        names[id(n)] = t
    return lines, [names[id(r)] for r in roots]


def _py_float(v):
    if isinstance(v, bool):
        return repr(v)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError("generated kernels embed finite constants only, got %r" % v)
    return "F(%r)" % v


# functions the loop factories take, so one source serves float32 (accel.cpu_math's vectorizable
# versions) and float64 (libm); the rest are numba's math functions, typed by their argument
_MATH_ARGS = ("exp", "tanh", "erf", "erf_gauss")
_FACTORY_ARGS = ("F", "prange") + _MATH_ARGS


def _nb_call(fn):
    if fn == "abs":
        return "abs"
    return fn if fn in _MATH_ARGS else "math." + fn


def _factory(name, params, first, loads, lines, stores):
    """A loop factory: name(F, prange, exp, tanh, erf, erf_gauss) -> the loop, with F the float type of
    its constants (np.float32 keeps a float32 loop in float32) and prange range or numba.prange."""
    out = ["def %s(%s):" % (name, ", ".join(_FACTORY_ARGS)), "    def loop(%s):" % ", ".join(params),
           "        for i in prange(%s.size):" % first]
    out += ["            %s_ = %s[i]" % (v, v) for v in loads]
    out += ["            %s = %s" % (t, code) for t, _, code in lines]
    out += ["            %s[i] = %s" % st for st in stores]
    return out + ["", "    return loop"]


def render_numba(kernels, updates=()):
    """The Python module of numba loop factories (not jitted: accel.cpu_kernels instantiates them per
    float dtype and jits them): the backward loops of `kernels` and the in-place loops of `updates`."""
    out = [
        '"""Generated by tools/gen_kernels.py from the gradient rules in accel/ops; do not edit.',
        "",
        "Loop factories: name(F, prange, exp, tanh, erf, erf_gauss) -> loop. Backward loops of elementwise ops,",
        "gx[i] = rule(g[i], saved[i], scalars), and in-place optimizer updates. accel.cpu_kernels",
        "instantiates each for float32 (F = np.float32 and accel.cpu_math's functions) and float64.",
        '"""',
        "",
        "import math",
        "",
        "KERNELS = {",
    ]
    for k in kernels:
        out.append('    %r: {"op": %r, "attrs": %r, "saved": %r, "scalars": %r},' % (
            k.name, k.op, dict(k.attrs), k.saved, k.scalars))
    out.append("}")
    for k in kernels:
        lines, (res,) = _lines([k.expr], _PY, _py_float, _nb_call, erf_gauss=True)
        out += ["", "", "# " + _title(k)]
        out += _factory(k.name + "_bwd", ("gx", "g") + k.saved + k.scalars, "gx", ("g",) + k.saved, lines,
                        [("gx", res)])
    out += ["", "", "UPDATES = {"]
    for u in updates:
        out += ["    %r: {" % u.name, '        "arrays": %r,' % (u.arrays,), '        "outputs": %r,' % (u.outputs,),
                '        "scalars": %r,' % (u.scalars,), "    },"]
    out.append("}")
    for u in updates:
        lines, res = _lines(list(u.exprs), _PY, _py_float, _nb_call, erf_gauss=True, arrays=u.arrays)
        out += ["", "", "# the update rule %s" % u.name]
        out += _factory(u.name + "_update", u.arrays + u.scalars, u.arrays[0], u.arrays, lines,
                        list(zip(u.outputs, res)))
    return "\n".join(out) + "\n"


def render_cuda(kernels):
    """kernels/elementwise.cu: one template per kernel, gx = rule(...) in the accumulator type."""
    out = [
        "// Generated by tools/gen_kernels.py from the gradient rules in accel/ops: do not edit.",
        "// Backward kernels of elementwise ops, gx[i] = rule(g[i], saved[i], scalars), computed in ACC(T)",
        "// (float for __half). Signature: output, upstream g, the saved arrays, the scalars, n.",
        '#include "common.cuh"',
    ]
    for k in kernels:
        lines, (res,) = _lines([k.expr], _C, _c_const, lambda fn: "m_" + fn)
        params = ["T* gx", "const T* g"] + ["const T* " + s for s in k.saved] + ["ACC(T) " + s for s in k.scalars]
        out += ["", "// " + _title(k), "template <typename T>",
                "__global__ void %s_bwd(%s, long long n) {" % (k.name, ", ".join(params)),
                "  typedef ACC(T) A;", "  GRID_STRIDE(i, n) {"]
        out += ["    const A %s_ = ld(%s, i);" % (v, v) for v in ("g",) + k.saved]
        out += ["    const %s %s = %s;" % ("bool" if b else "A", t, code) for t, b, code in lines]
        out += ["    st(gx, i, %s);" % res, "  }", "}"]
    return "\n".join(out) + "\n"


def _title(k):
    attrs = ", ".join("%s=%r" % kv for kv in k.attrs)
    return "the gradient rule of %s%s" % (k.op, " (%s)" % attrs if attrs else "")


def _c_const(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return "A(%s)" % _py_float(v)[2:-1]
