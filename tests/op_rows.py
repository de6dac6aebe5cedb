"""The gradient tables of the op tests as one list of rows, and the op nodes each row records.

Two checks run over every op in accel.ops.core.REGISTRY with these rows: tests/test_ops.py (every op has a
row whose gradient is checked against finite differences) and tests/test_op_registry.py (every rule reads
only what its op's `save=` keeps).
"""

from dataclasses import dataclass

import numpy as np

import accel as tf
from tests import test_conv_ops, test_linalg_ops, test_scatter_ops


@dataclass
class Row:
    table: str  # the test module whose table the row comes from
    name: str
    fn: object  # accel function of tensors
    arrays: list  # its inputs
    backward: object = None  # for a row the table also checks to second order: its first gradient, as the table
    # computes it (under the caller's tape, so the rules run on Tensors)

    @property
    def id(self):
        return "%s:%s%s" % (self.table, self.name, ":2nd" if self.backward else "")


def _cotangent_grads(fn, arrays):
    """The first gradient of tests/test_ops.py's and tests/test_linalg_ops.py's second-order checks: the vjp
    with a fixed random cotangent."""
    r = np.random.default_rng(4).standard_normal(fn(*[tf.constant(a) for a in arrays]).shape)

    def backward(*ts):
        floats = [t for t in ts if t.dtype.is_floating]
        with tf.GradientTape() as tape:
            tape.watch(floats)
            y = fn(*ts)
        return tape.gradient(y, floats, output_gradients=tf.constant(r), unconnected_gradients="zero")

    return backward


def rows(op_cases):
    """Every row of the gradient tables; op_cases: tests/test_ops.py's CASES (passed in: that module imports
    this one)."""
    out = []
    for c in op_cases:
        arrays = c.arrays(np.random.default_rng(2))
        out.append(Row("ops", c.id or c.name, c.fn, arrays))
        if c.second_order:
            out.append(Row("ops", c.id or c.name, c.fn, arrays, _cotangent_grads(c.fn, arrays)))
    linalg = test_linalg_ops
    for n in linalg.FD_CASES:
        fn, arrays = linalg._fd_fn(n), linalg.record.inputs_for(n, np.float64)
        out.append(Row("linalg", n, fn, arrays))
        if n in linalg.SECOND_ORDER:
            out.append(Row("linalg", n, fn, arrays, _cotangent_grads(fn, arrays)))
    out += [Row("scatter", n, f, arrays) for n, f, arrays in test_scatter_ops.GRAD_CASES]
    out += [Row("scatter", n, f, arrays, test_scatter_ops._grad_of(f, wrt))
            for n, f, arrays, wrt in test_scatter_ops.SECOND_ORDER]
    conv_second = {c.name for c in test_conv_ops.SECOND_ORDER}
    rng = np.random.default_rng(7)  # not the table's generator: its tests keep the values they draw
    for c in test_conv_ops.GRAD_CASES:
        arrays = [rng.permutation(int(np.prod(c.shapes[0]))).reshape(c.shapes[0]) * 0.1] if c.distinct else \
            [rng.standard_normal(s) for s in c.shapes]
        out.append(Row("conv", c.name, c.fn, arrays))
        if c.name in conv_second:
            grads = [test_conv_ops._grad_of(c.fn, k) for k in range(len(arrays))]
            out.append(Row("conv", c.name, c.fn, arrays, lambda *ts, grads=grads: [g(*ts) for g in grads]))
    return out


def record(row):
    """The tape nodes of the row's forward or, for a second-order row, of its first gradient (its forward and
    its backward pass, whose rules run on Tensors: gather's scatter_add, getitem's setitem_zeros, ...)."""
    ts = [tf.constant(a) for a in row.arrays]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([t for t in ts if t.dtype.is_floating])
        if row.backward is None:
            row.fn(*ts)
        else:
            row.backward(*ts)
    return list(tape._nodes)
