"""accel.print: TensorFlow's tf.print, with its number formatting (the shortest of 6 or 9 significant digits
for float32, 15 or 17 for float64, booleans as 1/0, long axes summarized as `a b c ... x y z`)."""

from __future__ import annotations

import sys

import numpy as np

from accel import backend
from accel.recorder import state as _rec
from accel.tensor import Tensor


def _scalar(v, dt):
    if dt.kind == "b":
        return "1" if v else "0"
    if dt.kind in "iu":
        return str(int(v))
    # TF's SimpleFtoa/SimpleDtoa: the short form (6 or 15 digits) when it reads back as the same value
    short, full = ("%.15g", "%.17g") if dt.itemsize >= 8 else ("%.6g", "%.9g")
    text = short % float(v)
    as_ = np.float64 if dt.itemsize >= 8 else np.float32  # float16 prints as the float32 it widens to
    return text if as_(text) == as_(v) or v != v else full % float(v)


def _array(a, summarize, depth=0):
    if a.ndim == 0:
        return _scalar(a[()], a.dtype)
    n = a.shape[0]
    if 0 <= summarize < n and n > 2 * summarize:
        idx = list(range(summarize)) + [None] + list(range(n - summarize, n))
    else:
        idx = list(range(n))
    parts = ["..." if i is None else _array(a[i], summarize, depth + 1) for i in idx]
    sep = " " if a.ndim == 1 else "\n" * (a.ndim - 1) + " " * (depth + 1)
    return "[" + sep.join(parts) + "]"


def format_value(x, summarize=3):
    """The text tf.print writes for x: tensors in TF's layout, structures with their tensors formatted."""
    if isinstance(x, Tensor):
        return _array(backend.to_numpy(x._data), -1 if summarize is None else int(summarize))
    if isinstance(x, dict):
        return "{" + ", ".join("%r: %s" % (k, format_value(v, summarize)) for k, v in x.items()) + "}"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(format_value(v, summarize) for v in x)
        return "(" + inner + ("," if len(x) == 1 else "") + ")" if isinstance(x, tuple) else "[" + inner + "]"
    if isinstance(x, (np.ndarray, np.generic)):
        return _array(np.asarray(x), -1 if summarize is None else int(summarize))
    return str(x)


def print_(*inputs, output_stream=None, summarize=3, sep=" ", end="\n", name=None):
    """Prints tensors and Python values as tf.print does, to stderr by default (`output_stream=sys.stdout`
    or a file-like object to redirect). `summarize=-1` prints every element."""
    trace = _rec.trace
    if trace is not None and not trace.paused:  # inside accel.function: prints now and on every replay
        tensors = [x for x in inputs if isinstance(x, Tensor)]

        def replay(*arrays):
            it = iter(arrays)
            print_(*[Tensor(next(it)) if isinstance(x, Tensor) else x for x in inputs], output_stream=output_stream,
                   summarize=summarize, sep=sep, end=end)

        trace.call("accel.print", replay, tensors)
    stream = sys.stderr if output_stream is None else output_stream
    if isinstance(stream, str):
        if not stream.startswith("file://"):
            raise ValueError("accel.print: output_stream must be a file-like object or 'file://<path>', got %r"
                             % stream)
        with open(stream[len("file://"):], "a") as f:
            f.write(sep.join(format_value(x, summarize) for x in inputs) + end)
        return
    stream.write(sep.join(format_value(x, summarize) for x in inputs) + end)
