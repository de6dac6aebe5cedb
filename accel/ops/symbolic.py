"""Elementwise rules as scalar expressions, for the kernel generator (tools/gen_kernels.py).

An elementwise op's forward and gradient rules are written against a namespace (`xp` / `F`) and
Python operators. Called with `NS` and `Expr` symbols instead of arrays, they build the scalar
expression the op computes per element, once; accel.ops.codegen renders it as a numba loop and as
CUDA source. Nodes are interned, so a subexpression the rule computes twice is one node (one
temporary in the generated code). Anything the vocabulary below lacks raises NotElementwise.
"""

from __future__ import annotations

import math


class NotElementwise(TypeError):
    """The traced function did something that is not a per-element scalar computation."""


_nodes: dict = {}  # (op, args by id, value) -> Expr: interning makes equal subexpressions one node

# name -> Python function on floats (constant folding, and the reference evaluator in tests)
UNARY = {
    "neg": lambda a: -a,
    "abs": abs,
    "exp": math.exp,
    "expm1": math.expm1,
    "log": math.log,
    "log1p": math.log1p,
    "sqrt": math.sqrt,
    "tanh": math.tanh,
    "erf": math.erf,
    "sin": math.sin,
    "cos": math.cos,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "floor": math.floor,
    "not": lambda a: not a,
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "max": lambda a, b: a if a >= b or a != a else b,  # NaN propagates, as np.maximum
    "min": lambda a, b: a if a <= b or a != a else b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "and": lambda a, b: a and b,
    "or": lambda a, b: a or b,
}
BOOLEAN = {"gt", "ge", "lt", "le", "eq", "ne", "and", "or", "not"}


class Expr:
    """One node of a scalar expression: a variable, a constant, or an operation on nodes."""

    __slots__ = ("op", "args", "value", "__weakref__")
    __array_ufunc__ = None  # NumPy scalars defer to Expr's reflected operators

    def __new__(cls, op, args=(), value=None):
        key = (op, tuple(id(a) for a in args), value, type(value))
        node = _nodes.get(key)
        if node is None:
            node = object.__new__(cls)
            node.op, node.args, node.value = op, tuple(args), value
            _nodes[key] = node
        return node

    @property
    def is_bool(self):
        return self.op in BOOLEAN or (self.op == "where" and self.args[1].is_bool) or (
            self.op == "const" and type(self.value) is bool)

    def __repr__(self):
        if self.op == "var":
            return self.value
        if self.op == "const":
            return repr(self.value)
        return "%s(%s)" % (self.op, ", ".join(map(repr, self.args)))

    def __hash__(self):
        return id(self)

    def __bool__(self):
        raise NotElementwise("a traced rule turned an element into a Python bool (data-dependent control flow)")

    __add__ = lambda a, b: _binary("add", a, b)  # noqa: E731
    __radd__ = lambda a, b: _binary("add", b, a)  # noqa: E731
    __sub__ = lambda a, b: _binary("sub", a, b)  # noqa: E731
    __rsub__ = lambda a, b: _binary("sub", b, a)  # noqa: E731
    __mul__ = lambda a, b: _binary("mul", a, b)  # noqa: E731
    __rmul__ = lambda a, b: _binary("mul", b, a)  # noqa: E731
    __truediv__ = lambda a, b: _binary("div", a, b)  # noqa: E731
    __rtruediv__ = lambda a, b: _binary("div", b, a)  # noqa: E731
    __gt__ = lambda a, b: _binary("gt", a, b)  # noqa: E731
    __ge__ = lambda a, b: _binary("ge", a, b)  # noqa: E731
    __lt__ = lambda a, b: _binary("lt", a, b)  # noqa: E731
    __le__ = lambda a, b: _binary("le", a, b)  # noqa: E731
    __eq__ = lambda a, b: _binary("eq", a, b)  # noqa: E731
    __ne__ = lambda a, b: _binary("ne", a, b)  # noqa: E731
    __and__ = lambda a, b: _binary("and", a, b)  # noqa: E731
    __or__ = lambda a, b: _binary("or", a, b)  # noqa: E731
    __neg__ = lambda a: _unary("neg", a)  # noqa: E731
    __abs__ = lambda a: _unary("abs", a)  # noqa: E731
    __invert__ = lambda a: _unary("not", a)  # noqa: E731

    def __pow__(self, e):
        # x ** k for a small integer k is k - 1 multiplies (NumPy's own fast paths do the same for 2)
        if isinstance(e, int) or (isinstance(e, float) and e.is_integer()):
            k = int(e)
            if 1 <= k <= 4:
                r = self
                for _ in range(k - 1):
                    r = r * self
                return r
        raise NotElementwise("x ** %r is not in the generator's vocabulary" % (e,))


def var(name):
    return Expr("var", (), name)


def const(v):
    if isinstance(v, Expr):
        return v
    if isinstance(v, bool):
        return Expr("const", (), v)
    if isinstance(v, (int, float)) or hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0:
        return Expr("const", (), float(v))
    raise NotElementwise("%s is not a scalar the generator can embed" % type(v).__name__)


def _unary(name, a):
    a = const(a)
    if a.op == "const":
        return const(UNARY[name](a.value))
    if name == "neg" and a.op == "neg":
        return a.args[0]
    if name == "abs" and a.op == "neg":
        return _unary("abs", a.args[0])
    return Expr(name, (a,))


def _binary(name, a, b):
    a, b = const(a), const(b)
    if a.op == "const" and b.op == "const":
        return const(BINARY[name](a.value, b.value))
    return Expr(name, (a, b))


def where(c, a, b):
    c, a, b = const(c), const(a), const(b)
    if c.op == "const":
        return a if c.value else b
    if not c.is_bool:
        raise NotElementwise("where() needs a boolean condition, got %r" % (c,))
    return Expr("where", (c, a, b))


class SymbolicNS:
    """The array namespace as rules and forwards use it (`xp.exp(x)`, `F.where(c, g, 0)`), on Exprs."""

    def __init__(self):
        self.xp = self  # rules that reach for F.xp (e.g. sigmoid_of) get the symbolic namespace too
        for name in ("exp", "expm1", "log", "log1p", "sqrt", "tanh", "erf", "sin", "cos", "sinh", "cosh", "floor",
                     "abs"):
            setattr(self, name, lambda x, _n=name: _unary(_n, x))
        self.negative = lambda x: _unary("neg", x)
        self.maximum = lambda a, b: _binary("max", a, b)
        self.minimum = lambda a, b: _binary("min", a, b)
        self.greater = lambda a, b: _binary("gt", a, b)
        self.greater_equal = lambda a, b: _binary("ge", a, b)
        self.less = lambda a, b: _binary("lt", a, b)
        self.less_equal = lambda a, b: _binary("le", a, b)
        self.equal = lambda a, b: _binary("eq", a, b)
        self.logical_and = lambda a, b: _binary("and", a, b)
        self.logical_or = lambda a, b: _binary("or", a, b)
        self.logical_not = lambda a: _unary("not", a)
        self.where = where

    def square(self, x):
        return x * x

    def reciprocal(self, x):
        return 1.0 / x

    def sign(self, x):
        return where(x > 0, 1.0, where(x < 0, -1.0, x))

    def clip(self, x, lo, hi):
        return _binary("min", _binary("max", x, lo), hi)

    def zeros_like(self, x):
        return const(0.0)

    def ones_like(self, x):
        return const(1.0)

    def full_like(self, x, value):
        return const(value)


NS = SymbolicNS()


def postorder(root):
    """Every node root depends on, each once, operands before their users."""
    seen, order, stack = set(), [], [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((a, False) for a in reversed(node.args) if id(a) not in seen)
    return order


def evaluate(root, env):
    """The expression's value in Python floats (float64): the generator's own reference in tests."""
    vals = {}
    for n in postorder(root):
        if n.op == "var":
            v = env[n.value]
        elif n.op == "const":
            v = n.value
        elif n.op == "where":
            v = vals[id(n.args[1])] if vals[id(n.args[0])] else vals[id(n.args[2])]
        elif n.op in UNARY:
            v = UNARY[n.op](vals[id(n.args[0])])
        else:
            v = BINARY[n.op](vals[id(n.args[0])], vals[id(n.args[1])])
        vals[id(n)] = v
    return vals[id(root)]
