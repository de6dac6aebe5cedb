"""Every op's `save=` says exactly what its gradient rules (and fused backward hook) read.

The recorder keeps an op's inputs and output for the backward pass only where `save=` says so; a rule that
reads what was not kept gets None in a real backward pass, and a value kept that no rule reads holds memory
for nothing. Here every row of the gradient tables (tests/op_rows.py) is recorded with everything kept, then
each node's rules run on arrays (NumPy) and on Tensors (the higher-order path) with the values its op did not
declare replaced by a poison that reports any use; and each declared value must be read by some rule on some
row.
"""

import numpy as np
import pytest

import accel as tf
from accel import backend
from accel.ops import core, shape
from accel.ops.core import REGISTRY
from accel.ops.tensor_ns import TENSOR_NS
from accel.tensor import Tensor
from tests import op_rows
from tests.test_ops import CASES

ROWS = op_rows.rows(CASES)


class _Read(Exception):
    pass


def _touch(self, *args, **kwargs):
    object.__getattribute__(self, "_log").append(object.__getattribute__(self, "_what"))
    raise _Read(object.__getattribute__(self, "_what"))


class Poison:
    """Stands for an unsaved array: any use (attribute, operator, NumPy function) is logged and raises."""

    def __init__(self, what, log):
        object.__setattr__(self, "_what", what)
        object.__setattr__(self, "_log", log)

    __getattr__ = __array__ = __array_ufunc__ = __array_function__ = __len__ = __iter__ = __bool__ = _touch
    __getitem__ = __float__ = __int__ = __index__ = __neg__ = __abs__ = _touch
    __hash__ = object.__hash__


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or"):
    setattr(Poison, "__%s__" % _name, _touch)
    setattr(Poison, "__r%s__" % _name, _touch)
for _name in ("gt", "lt", "ge", "le", "eq", "ne"):
    setattr(Poison, "__%s__" % _name, _touch)


class TensorPoison(Tensor):
    """Stands for an unsaved Tensor on the higher-order path: isinstance(x, Tensor) holds, any use raises."""

    __slots__ = ("_what", "_log")

    def __init__(self, what, log):
        object.__setattr__(self, "_what", what)
        object.__setattr__(self, "_log", log)

    def __getattribute__(self, name):
        _touch(self)


def _declared(op):
    """What op's save= keeps: {"inputs", "out"} (multi-output ops always keep their outputs: the tape needs
    them for the zero cotangents of unused outputs)."""
    return {part for part, kept in (("inputs", op.save_inputs), ("out", op.save_out)) if kept}


@pytest.fixture(scope="module")
def nodes():
    """{row id: that row's tape nodes, recorded with every op keeping its inputs and output}."""
    ops = set(REGISTRY.values()) | set(shape._N_ARY.values())
    before = {op: (op.save_inputs, op.save_out) for op in ops}
    try:
        for op in ops:
            op.save_inputs = op.save_out = True
        return {row.id: op_rows.record(row) for row in ROWS}
    finally:
        for op, (si, so) in before.items():
            op.save_inputs, op.save_out = si, so


def _cotangent(out, rng, tensor_mode):
    outs = out if isinstance(out, tuple) else (out,)
    gs = [rng.standard_normal(o._data.shape).astype(o._data.dtype) for o in outs]
    if tensor_mode:
        gs = [Tensor(g) for g in gs]
    return gs if isinstance(out, tuple) else gs[0]


def _calls(node, tensor_mode):
    """(label, fn(poisoned parts, log) -> runs the rule or hook) for each rule of the node, and for its fused
    hook (fused mode "always", arrays only)."""
    op, in_ids, out_ids, saved, out, attrs, in_shapes = node
    attrs = attrs or {}
    rng = np.random.default_rng(0)
    g = _cotangent(out, rng, tensor_mode)
    if tensor_mode:
        F, vals, outv, poison_cls = TENSOR_NS, list(saved), out, TensorPoison
    else:
        F = core.array_ns(np)
        vals = [t._data for t in saved]
        outv = tuple(o._data for o in out) if op.multi_out else out._data
        poison_cls = Poison

    def args(poisoned, log):
        v = [poison_cls("inputs", log) for _ in vals] if "inputs" in poisoned else vals
        o = poison_cls("out", log) if "out" in poisoned else outv
        return o, v

    calls = []
    for k, rule in enumerate(op.rules):
        if rule is None or saved[k]._data.dtype.kind != "f":  # the tape reaches float inputs only
            continue

        def run(poisoned, log, rule=rule):
            o, v = args(poisoned, log)
            return rule(F, g, o, *v, **attrs)

        calls.append(("rule %d (%s)" % (k, "Tensors" if tensor_mode else "arrays"), run))
    if op.fused is not None and not tensor_mode:
        def run_fused(poisoned, log):
            o, v = args(poisoned, log)
            with backend.fused("always"):
                return op.fused(np, g, o, *v, **attrs)

        calls.append(("fused hook", run_fused))
    return calls


def _reads(node):
    """[(label, parts a call read)] over the node's rules and hook, both modes; calls that fail with every value
    kept (a rule a table never reaches, e.g. batched gather on Tensors) are left out."""
    op = node[0]
    out = []
    for tensor_mode in (False, True):
        for label, run in _calls(node, tensor_mode):
            try:
                run(set(), [])
            except Exception:  # noqa: BLE001 - not a path the tables run
                continue
            read = set()
            for part in ("inputs", "out"):
                log = []
                try:
                    run({part}, log)
                except Exception:  # noqa: BLE001 - the poison raises; the log says whether it was used
                    pass
                if log:
                    read.add(part)
            out.append(("%s %s" % (op.name, label), read))
    return out


def _float_out(node):
    out = node[4]
    return all(o._data.dtype.kind == "f" for o in (out if isinstance(out, tuple) else (out,)))


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_rules_read_only_what_their_op_saves(row, nodes):
    wrong = []
    for node in nodes[row.id]:
        op = node[0]
        if op.rules is None or not _float_out(node):
            continue
        for label, read in _reads(node):
            kept = _declared(op)
            if read - kept:
                wrong.append("%s reads %s, but %s's save= keeps %s" % (
                    label, "+".join(sorted(read - kept)), op.name, "+".join(sorted(kept)) or "nothing"))
    assert not wrong, "\n".join(sorted(set(wrong)))


# ops declared outside the modules converted to defop so far, whose save= keeps more than their rules read
KNOWN_UNREAD = {}


def test_every_saved_value_is_read_by_some_rule(nodes):
    """save= keeps nothing no rule reads (the row tables reach every rule; multi-output ops keep their outputs
    regardless)."""
    used = {}
    for row in ROWS:
        for node in nodes[row.id]:
            op = node[0]
            if op.rules is None or not _float_out(node):
                continue
            parts = used.setdefault(op.name, set())
            for _, read in _reads(node):
                parts |= read
    unread = []
    for name, parts in sorted(used.items()):
        op = REGISTRY[name]
        extra = _declared(op) - parts - ({"out"} if op.multi_out else set())
        if extra and name not in KNOWN_UNREAD:
            unread.append("%s keeps %s, which no rule reads on any row" % (name, "/".join(sorted(extra))))
        elif name in KNOWN_UNREAD and not extra:
            unread.append("%s keeps only what its rules read now: drop it from KNOWN_UNREAD" % name)
    assert not unread, "\n".join(unread)


# --- the checks themselves fail where they should ----------------------------------------------------------

def _probe_op(save, rule):
    op = core.Op("probe", lambda xp, x: x * 2, save=save)
    return op.defvjp(rule)


@pytest.mark.parametrize("save,rule,declared_ok", [
    ("out", lambda F, g, out, x: g * x, False),  # reads x, keeps only out
    ("none", lambda F, g, out, x: g * F.shape(out)[0], False),  # reads out's shape
    ("inputs", lambda F, g, out, x: g * x, True),
])
def test_a_rule_reading_an_unsaved_value_is_caught(save, rule, declared_ok):
    op = _probe_op(save, rule)
    x = Tensor(np.arange(3.0))
    node = (op, (x._id,), (0,), (x,), Tensor(x._data * 2), {}, (x._data.shape,))
    reads = _reads(node)
    assert reads and all((read <= _declared(op)) == declared_ok for _, read in reads)


def test_unused_saved_value_is_caught():
    op = _probe_op("inputs+out", lambda F, g, out, x: g * x)
    x = Tensor(np.arange(3.0))
    node = (op, (x._id,), (0,), (x,), Tensor(x._data * 2), {}, (x._data.shape,))
    assert {part for _, read in _reads(node) for part in read} == {"inputs"}


def test_registry_coverage_check_fails_for_an_op_without_a_row(monkeypatch):
    from tests import test_ops

    monkeypatch.setitem(REGISTRY, "probe", _probe_op("inputs", lambda F, g, out, x: g))
    with pytest.raises(AssertionError, match="probe"):
        test_ops.test_every_registry_op_has_a_gradient_row()


def test_poison_reports_numpy_and_tensor_use():
    log = []
    for use in (lambda p: np.exp(p), lambda p: p.shape, lambda p: p * 2, lambda p: np.zeros_like(p),
                lambda p: tf.reduce_sum(TensorPoison("inputs", log))):
        with pytest.raises(_Read):
            use(Poison("inputs", log))
    assert len(log) == 5
