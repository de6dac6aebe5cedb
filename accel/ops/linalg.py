"""Linear algebra: matmul (batched, broadcast batch), tensordot, einsum, eye, trace-free helpers."""

from __future__ import annotations

import numpy as np

from accel.errors import InvalidArgumentError
from accel.ops.core import Op, REGISTRY, apply, convert_pair
from accel.ops.shape import reshape, transpose


def _mT(F, a):
    return F.swapaxes(a, -1, -2)


_matmul = Op("matmul", lambda xp, a, b: xp.matmul(a, b))
# batch dimensions that were broadcast are summed back by the tape
_matmul.defvjp(lambda F, g, out, a, b: F.matmul(g, _mT(F, b)),
               lambda F, g, out, a, b: F.matmul(_mT(F, a), g))
REGISTRY["matmul"] = _matmul


def _swap_last(t):
    nd = t._data.ndim
    return transpose(t, tuple(range(nd - 2)) + (nd - 1, nd - 2))


def matmul(a, b, transpose_a=False, transpose_b=False, adjoint_a=False, adjoint_b=False,
           a_is_sparse=False, b_is_sparse=False, output_type=None, name=None):
    """Matrix product of the last two axes; leading (batch) axes broadcast."""
    a, b = convert_pair(a, b, "matmul")
    if a._data.ndim < 2 or b._data.ndim < 2:
        raise InvalidArgumentError(None, None, "matmul: both inputs need rank >= 2, got shapes %s and %s (use "
                                   "accel.tensordot or reshape a vector to [n, 1])"
                                   % (tuple(a._data.shape), tuple(b._data.shape)))
    if transpose_a or adjoint_a:
        a = _swap_last(a)
    if transpose_b or adjoint_b:
        b = _swap_last(b)
    if a._data.shape[-1] != b._data.shape[-2]:
        raise InvalidArgumentError(None, None, "matmul: inner dimensions differ: a has shape %s, b has shape %s "
                                   "(a's last axis %d must equal b's second-to-last %d)"
                                   % (tuple(a._data.shape), tuple(b._data.shape), a._data.shape[-1],
                                      b._data.shape[-2]))
    return apply(_matmul, (a, b))


def tensordot(a, b, axes, name=None):
    a, b = convert_pair(a, b, "tensordot")
    na, nb = a._data.ndim, b._data.ndim
    if isinstance(axes, (int, np.integer)):
        ax_a = list(range(na - int(axes), na))
        ax_b = list(range(int(axes)))
    else:
        ax_a, ax_b = axes
        ax_a = [ax_a] if isinstance(ax_a, (int, np.integer)) else list(ax_a)
        ax_b = [ax_b] if isinstance(ax_b, (int, np.integer)) else list(ax_b)
    for axes_t, nd, nm in ((ax_a, na, "a"), (ax_b, nb, "b")):
        for x in axes_t:
            if not -nd <= x < nd:
                raise InvalidArgumentError(None, None, "tensordot: axis %d is out of range for %s of rank %d"
                                           % (x, nm, nd))
    if len(ax_a) != len(ax_b):
        raise InvalidArgumentError(None, None, "tensordot: axes pair %s and %s differ in length" % (ax_a, ax_b))
    ax_a = [x % na for x in ax_a]
    ax_b = [x % nb for x in ax_b]
    for i, j in zip(ax_a, ax_b):
        if a._data.shape[i] != b._data.shape[j]:
            raise InvalidArgumentError(None, None, "tensordot: axis %d of a (size %d) and axis %d of b (size %d) "
                                       "differ" % (i, a._data.shape[i], j, b._data.shape[j]))
    free_a = [i for i in range(na) if i not in ax_a]
    free_b = [i for i in range(nb) if i not in ax_b]
    sa, sb = a._data.shape, b._data.shape
    k = int(np.prod([sa[i] for i in ax_a])) if ax_a else 1
    am = reshape(transpose(a, free_a + ax_a), (-1 if free_a else 1, k))
    bm = reshape(transpose(b, ax_b + free_b), (k, -1 if free_b else 1))
    return reshape(matmul(am, bm), tuple(sa[i] for i in free_a) + tuple(sb[i] for i in free_b))


def _parse_einsum(equation, n):
    eq = equation.replace(" ", "")
    if "..." in eq:
        raise NotImplementedError("einsum: '...' is not supported yet; write the axes out")
    if "->" in eq:
        lhs, out = eq.split("->")
    else:
        lhs = eq
        letters = lhs.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    ins = lhs.split(",")
    if len(ins) != n:
        raise ValueError("einsum: equation %r has %d operands, got %d tensors" % (equation, len(ins), n))
    return ins, out


def _einsum_rule(k):
    def rule(F, g, out, *xs, ins, out_sub, sizes):
        others = [x for j, x in enumerate(xs) if j != k]
        other_subs = [s for j, s in enumerate(ins) if j != k]
        mine = ins[k]
        if len(set(mine)) != len(mine):
            raise NotImplementedError("einsum gradient: repeated index within one operand (%r)" % mine)
        avail = set(out_sub) | set("".join(other_subs))
        reduced = "".join(c for c in mine if c in avail)
        eq = ",".join([out_sub] + other_subs) + "->" + reduced
        gk = F.einsum(eq, g, *others)
        if reduced != mine:  # indices summed only inside this operand: broadcast back
            shape_r = tuple(sizes[c] if c in reduced else 1 for c in mine)
            order = [reduced.index(c) for c in mine if c in reduced]
            gk = F.transpose(gk, order) if order != sorted(order) else gk
            gk = F.broadcast_to(F.reshape(gk, shape_r), tuple(sizes[c] for c in mine))
        return gk

    return rule


_einsum_ops = {}


def einsum(equation, *inputs, **kwargs):
    from accel.ops.core import convert  # noqa: PLC0415

    ts = [convert(x) for x in inputs]
    ins, out_sub = _parse_einsum(equation, len(ts))
    sizes = {}
    for sub, t in zip(ins, ts):
        if len(sub) != t._data.ndim:
            raise InvalidArgumentError(None, None, "einsum: operand %r has rank %d but the equation gives it %d "
                                       "indices" % (sub, t._data.ndim, len(sub)))
        for c, s in zip(sub, t._data.shape):
            if sizes.setdefault(c, s) != s:
                raise InvalidArgumentError(None, None, "einsum: index %r has sizes %d and %d" % (c, sizes[c], s))
    op = _einsum_ops.get(len(ts))
    if op is None:
        op = Op("einsum", lambda xp, *xs, ins, out_sub, sizes: xp.einsum(",".join(ins) + "->" + out_sub, *xs))
        op.defvjp(*[_einsum_rule(k) for k in range(len(ts))])
        _einsum_ops[len(ts)] = op
        REGISTRY.setdefault("einsum", op)
    return apply(op, tuple(ts), {"ins": tuple(ins), "out_sub": out_sub, "sizes": sizes})
