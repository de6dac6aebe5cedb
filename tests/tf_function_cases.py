"""Retracing programs run on both TensorFlow 2.21 and accel: tools/record_tf_function.py records what
tf.function does into tests/data/tf_function.json, and tests/test_function_retracing.py runs the same
programs with accel.function and compares. Each case takes the framework module and returns plain data:
per call the result (value and dtype) or the error, how many times the Python body has run so far
(`body`) and `experimental_get_tracing_count()` (`count`), plus what the case logs.

No AutoGraph here (no Python control flow on tensor values): accel guards such code instead of
converting it, so its counts differ by design (tests/test_function_retracing.py has its own table)."""

import contextlib
import dataclasses
import io
import logging
import os
import tempfile
import warnings

import numpy as np


def _val(x):
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return [_val(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _val(v) for k, v in sorted(x.items())}
    if isinstance(x, (bool, int, float, str)):
        return {"py": type(x).__name__, "value": x}
    if hasattr(x, "numpy"):
        a = np.asarray(x.numpy())
        if a.dtype.kind in "OSU":  # a TF string tensor
            return {"dtype": "string", "value": np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else b,
                                                             otypes=[object])(a).tolist()}
        return {"dtype": a.dtype.name, "value": a.tolist()}
    return {"py": type(x).__name__}


def _builtin_base(e):
    return next(c.__name__ for c in type(e).__mro__ if c.__module__ == "builtins")


class _LogCatcher(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


class Run:
    """Calls a traced function and records, per call, what came back and how many traces ran."""

    def __init__(self, tf):
        self.tf = tf
        self.body = 0
        self.log = []
        self.calls = []
        fd, self.print_path = tempfile.mkstemp(suffix=".txt")
        os.close(fd)
        self._printed = 0

    def tick(self):
        self.body += 1

    def tf_print(self, *values):
        """tf.print to a file, read back after each call (TF's C++ print bypasses sys.stderr)."""
        self.tf.print(*values, output_stream="file://" + self.print_path)

    def call(self, fn, /, *args, **kwargs):
        out = io.StringIO()
        catcher = _LogCatcher()
        tf_logger = logging.getLogger("tensorflow")
        tf_logger.addHandler(catcher)
        try:
            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
                warnings.simplefilter("always")
                try:
                    ev = {"result": _val(fn(*args, **kwargs))}
                except Exception as e:  # an error is a result too
                    ev = {"error": type(e).__name__, "base": _builtin_base(e), "message": str(e)[:300],
                          "message_end": str(e)[-300:]}
        finally:
            tf_logger.removeHandler(catcher)
        ev["body"] = self.body
        ev["count"] = fn.experimental_get_tracing_count()
        ev["stdout_lines"] = len(out.getvalue().splitlines())
        with open(self.print_path) as f:
            text = f.read()
        ev["printed"] = text[self._printed:].splitlines()
        self._printed = len(text)
        retrace_warnings = [str(w.message) for w in caught if "trac" in str(w.message)] + [
            m for m in catcher.messages if "retracing" in m]
        ev["warnings"] = [m[:300] for m in retrace_warnings]
        self.calls.append(ev)
        return ev

    def done(self, **extra):
        os.unlink(self.print_path)
        return dict(calls=self.calls, log=self.log, **extra)


def _f32(tf, value):
    return tf.constant(np.asarray(value, np.float32))


# --- Python values --------------------------------------------------------------------------------

def python_scalars(tf):
    """1 == 1.0 == True hash alike: they share one trace, which returns what the first call returned."""
    r = Run(tf)

    def f(x):
        r.tick()
        return tf.convert_to_tensor(x)

    fn = tf.function(f)
    for x in [1, 2, 1, 1.0, True, 0, False, 2.5, 2.5, 0.0]:
        r.call(fn, x)
    return r.done()


def python_strings(tf):
    r = Run(tf)

    def f(x, s):
        r.tick()
        return x * float(len(s))

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    for s in ["a", "b", "a", "ab"]:
        r.call(fn, a, s)
    return r.done()


def python_scalars_reduce_retracing(tf):
    r = Run(tf)

    def f(x):
        r.tick()
        return tf.convert_to_tensor(x) * 2

    fn = tf.function(f, reduce_retracing=True)
    for x in [1, 2, 3, 1, 1.0]:
        r.call(fn, x)
    return r.done()


# --- tensors and arrays ---------------------------------------------------------------------------

def tensor_shapes(tf):
    r = Run(tf)

    def f(x):
        r.tick()
        return x * 2

    fn = tf.function(f)
    for v in [1.0, [1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], [5.0, 6.0], [[1.0], [2.0]], 7.0]:
        r.call(fn, _f32(tf, v))
    r.call(fn, tf.constant([1, 2], dtype=tf.int32))
    return r.done()


def tensor_dtypes(tf):
    r = Run(tf)

    def f(x):
        r.tick()
        return x + x

    fn = tf.function(f)
    for dt in [tf.float32, tf.float64, tf.int32, tf.int64, tf.float32, tf.float16, tf.int32]:
        r.call(fn, tf.constant([1, 2], dtype=dt))
    return r.done()


def numpy_arrays(tf):
    """NumPy arrays are keyed like tensors (shape + dtype), not by value."""
    r = Run(tf)

    def f(x):
        r.tick()
        return x * 2

    fn = tf.function(f)
    r.call(fn, np.array([1.0, 2.0], np.float32))
    r.call(fn, np.array([3.0, 4.0], np.float32))
    r.call(fn, np.array([1.0, 2.0], np.float64))
    r.call(fn, _f32(tf, [5.0, 6.0]))  # a tensor of the same shape and dtype as the first array
    r.call(fn, np.array([1.0, 2.0, 3.0], np.float32))
    r.call(fn, np.array([1, 2], np.int32))
    return r.done()


def numpy_scalars(tf):
    r = Run(tf)

    def f(x, s):
        r.tick()
        return x * s

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    for s in [np.float32(2.0), np.float32(3.0), np.float32(2.0)]:
        r.call(fn, a, s)
    return r.done()


def none_vs_tensor(tf):
    r = Run(tf)

    def f(x, y=None):
        r.tick()
        return x if y is None else x + y

    fn = tf.function(f)
    a, b = _f32(tf, [1.0, 2.0]), _f32(tf, [10.0, 20.0])
    r.call(fn, a)
    r.call(fn, a, b)
    r.call(fn, a)
    r.call(fn, a, None)
    r.call(fn, a, y=b)
    return r.done()


def positional_vs_keyword(tf):
    r = Run(tf)

    def f(x, y):
        r.tick()
        return x * y

    fn = tf.function(f)
    a, b = _f32(tf, [1.0, 2.0]), _f32(tf, [3.0, 4.0])
    r.call(fn, a, b)
    r.call(fn, a, y=b)
    r.call(fn, x=a, y=b)
    r.call(fn, y=b, x=a)
    return r.done()


def default_arguments(tf):
    r = Run(tf)

    def f(x, scale=2.0):
        r.tick()
        return x * scale

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    r.call(fn, a)
    r.call(fn, a, 2.0)
    r.call(fn, a, scale=2.0)
    r.call(fn, a, 3.0)
    r.call(fn, a)
    return r.done()


def var_positional(tf):
    r = Run(tf)

    def f(*xs):
        r.tick()
        return tf.add_n(list(xs))

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    r.call(fn, a)
    r.call(fn, a, a)
    r.call(fn, a)
    r.call(fn, a, a, a)
    return r.done()


# --- nested structures ----------------------------------------------------------------------------

def nested_list_tuple(tf):
    r = Run(tf)

    def f(xs):
        r.tick()
        return tf.add_n(list(xs))

    fn = tf.function(f)
    a, b = _f32(tf, [1.0, 2.0]), _f32(tf, [3.0, 4.0])
    r.call(fn, [a])
    r.call(fn, [a, b])
    r.call(fn, (a,))
    r.call(fn, [b])
    r.call(fn, (b, a))
    r.call(fn, [a, a])
    return r.done()


def nested_dict_keys(tf):
    r = Run(tf)

    def f(d):
        r.tick()
        return tf.add_n([d[k] * float(i + 1) for i, k in enumerate(sorted(d))])

    fn = tf.function(f)
    a, b = _f32(tf, [1.0, 2.0]), _f32(tf, [3.0, 4.0])
    r.call(fn, {"a": a})
    r.call(fn, {"a": a, "b": b})
    r.call(fn, {"b": b, "a": a})  # the same keys in another order
    r.call(fn, {"a": a, "c": b})
    r.call(fn, {"a": b})
    return r.done()


def nested_python_leaves(tf):
    r = Run(tf)

    def f(x, cfg):
        r.tick()
        return x * float(cfg["k"]) + float(sum(cfg["extra"]))

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    for cfg in [{"k": 2, "extra": [1, 2]}, {"k": 3, "extra": [1, 2]}, {"k": 2, "extra": [1, 2]},
                {"k": 2, "extra": [1, 3]}, {"k": 2, "extra": (1, 2)}]:
        r.call(fn, a, cfg)
    return r.done()


def nested_mixed_tensor_and_python(tf):
    r = Run(tf)

    def f(pair):
        r.tick()
        t, n = pair
        return t * float(n)

    fn = tf.function(f)
    for t, n in [([1.0, 2.0], 2), ([3.0, 4.0], 2), ([1.0, 2.0], 3), ([1.0, 2.0, 3.0], 2)]:
        r.call(fn, (_f32(tf, t), n))
    return r.done()


# --- Variables ------------------------------------------------------------------------------------

def variables_as_arguments(tf):
    """Variables key by shape and dtype: one trace serves every such Variable, and writes go to the one
    passed in, not to the one traced with."""
    r = Run(tf)

    def f(v):
        r.tick()
        v.assign_add(v * 0 + 1)
        return v.read_value() * 2

    fn = tf.function(f)
    v1 = tf.Variable(np.array([1.0, 2.0], np.float32))
    v2 = tf.Variable(np.array([10.0, 20.0], np.float32))
    v3 = tf.Variable(np.array([1.0, 2.0, 3.0], np.float32))
    v4 = tf.Variable(np.array([1.0, 2.0], np.float64))
    for v in [v1, v2, v1, v3, v4, v2]:
        r.call(fn, v)
    return r.done(final=[_val(v) for v in [v1, v2, v3, v4]])


def variables_in_a_list(tf):
    """A Keras-like step over a list of Variables: another list of the same shapes reuses the trace."""
    r = Run(tf)

    def f(vs, x):
        r.tick()
        for v in vs:
            v.assign_sub(x * v)
        return tf.add_n([tf.reduce_sum(v) for v in vs])

    fn = tf.function(f)
    a = [tf.Variable(np.array([1.0, 2.0], np.float32)), tf.Variable(np.array(3.0, np.float32))]
    b = [tf.Variable(np.array([4.0, 5.0], np.float32)), tf.Variable(np.array(6.0, np.float32))]
    x = _f32(tf, 0.5)
    for vs in [a, b, a, b[:1]]:
        r.call(fn, vs, x)
    return r.done(final=[_val(v) for v in a + b])


def no_return_value(tf):
    r = Run(tf)
    v = tf.Variable(np.array([0.0, 0.0], np.float32))

    def f(x):
        r.tick()
        v.assign_add(x)

    fn = tf.function(f)
    for _ in range(3):
        r.call(fn, _f32(tf, [1.0, 2.0]))
    return r.done(final=[_val(v)])


def python_outputs(tf):
    """Non-tensor outputs come back as the Python values of the trace."""
    r = Run(tf)

    def f(x, n):
        r.tick()
        return {"y": x * 2, "n": n + 1, "none": None, "pair": (x, "s")}

    fn = tf.function(f)
    r.call(fn, _f32(tf, [1.0]), 1)
    r.call(fn, _f32(tf, [2.0]), 1)
    r.call(fn, _f32(tf, [2.0]), 2)
    return r.done()


def variable_vs_tensor(tf):
    r = Run(tf)

    def f(x):
        r.tick()
        return x * 2

    fn = tf.function(f)
    v = tf.Variable(np.array([1.0, 2.0], np.float32))
    r.call(fn, v)
    r.call(fn, _f32(tf, [1.0, 2.0]))
    r.call(fn, v)
    return r.done()


def variable_created_on_first_call(tf):
    """The lazy-build pattern. TF traces twice on the first call (once creating, once with creation
    forbidden); accel traces once, by design (tests/test_function_retracing.py)."""
    r = Run(tf)
    state = {}

    def f(x):
        r.tick()
        if "v" not in state:
            state["v"] = tf.Variable(np.array([1.0, 2.0], np.float32))
        state["v"].assign_add(state["v"] * 0 + tf.reduce_sum(x))
        return state["v"] * 1.0

    fn = tf.function(f)
    r.call(fn, _f32(tf, [1.0, 1.0]))
    r.call(fn, _f32(tf, [2.0, 2.0]))
    r.call(fn, _f32(tf, [1.0, 1.0, 1.0]))  # a new shape: a later trace, no variable created
    return r.done(final=[_val(state["v"])])


def variable_created_every_call(tf):
    r = Run(tf)

    def f(x):
        r.tick()
        v = tf.Variable(1.0)
        return x + v

    fn = tf.function(f)
    r.call(fn, _f32(tf, 1.0))
    r.call(fn, _f32(tf, [1.0, 2.0]))  # a later trace creates one more
    return r.done()


def variable_created_on_later_call(tf):
    r = Run(tf)
    made = []

    def f(x, make):
        r.tick()
        if make:
            made.append(tf.Variable(1.0))
        return x * 2

    fn = tf.function(f)
    r.call(fn, _f32(tf, 1.0), False)
    r.call(fn, _f32(tf, 1.0), True)
    return r.done()


# --- closures and objects: frozen at trace time ---------------------------------------------------

def closure_python_value(tf):
    r = Run(tf)
    n = 1.0

    def f(x):
        r.tick()
        return x + n

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    r.call(fn, a)
    n = 5.0  # rebinding the closed-over name: stale
    r.call(fn, a)
    r.call(fn, _f32(tf, [1.0, 2.0, 3.0]))  # a new trace reads the new value
    r.call(fn, a)
    return r.done()


def closure_eager_tensor(tf):
    r = Run(tf)
    c = _f32(tf, 1.0)

    def f(x):
        r.tick()
        return x + c

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    r.call(fn, a)
    c = _f32(tf, 5.0)
    r.call(fn, a)
    return r.done()


def closure_mutated_dict(tf):
    r = Run(tf)
    cfg = {"k": 2.0}

    def f(x):
        r.tick()
        return x * cfg["k"]

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    r.call(fn, a)
    cfg["k"] = 3.0
    r.call(fn, a)
    return r.done()


def closure_variable(tf):
    r = Run(tf)
    v = tf.Variable(1.0)

    def f(x):
        r.tick()
        return x + v

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    r.call(fn, a)
    v.assign(5.0)  # a Variable is read on every call
    r.call(fn, a)
    return r.done()


def closure_variable_rebound(tf):
    """Rebinding the closed-over name to another Variable: the trace keeps the first one."""
    r = Run(tf)
    v = tf.Variable(1.0)

    def f(x):
        r.tick()
        return x + v

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    r.call(fn, a)
    v = tf.Variable(10.0)
    r.call(fn, a)
    return r.done()


class _Unhashable:
    __hash__ = None

    def __init__(self, k):
        self.k = k

    def __eq__(self, other):
        return isinstance(other, _Unhashable) and other.k == self.k


def unhashable_object(tf):
    r = Run(tf)

    def f(o, x):
        r.tick()
        return x * o.k

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    o = _Unhashable(2.0)
    r.call(fn, o, a)
    r.call(fn, o, a)
    r.call(fn, _Unhashable(2.0), a)
    return r.done()


class _Obj:
    def __init__(self, k):
        self.k = k


@dataclasses.dataclass(frozen=True)
class _Cfg:
    k: float


def custom_object(tf):
    r = Run(tf)

    def f(o, x):
        r.tick()
        return x * o.k

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    o1 = _Obj(2.0)
    r.call(fn, o1, a)
    o1.k = 3.0  # a mutated attribute is not part of the key: stale
    r.call(fn, o1, a)
    o2 = _Obj(2.0)  # a new instance retraces
    r.call(fn, o2, a)
    r.call(fn, o1, a)
    return r.done()


def hashable_value_object(tf):
    """A frozen dataclass defines __eq__ and __hash__: equal instances."""
    r = Run(tf)

    def f(c, x):
        r.tick()
        return x * c.k

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    r.call(fn, _Cfg(2.0), a)
    r.call(fn, _Cfg(2.0), a)
    r.call(fn, _Cfg(3.0), a)
    return r.done()


def method_per_instance(tf):
    r = Run(tf)

    class M:
        def __init__(self, k):
            self.k = k

        @tf.function
        def f(self, x):
            r.tick()
            return x * self.k

    m1, m2 = M(2.0), M(3.0)
    a = _f32(tf, [1.0, 2.0])
    r.call(m1.f, a)
    r.call(m2.f, a)
    r.call(m1.f, a)
    r.call(m1.f, _f32(tf, [1.0]))
    return r.done()


# --- side effects ---------------------------------------------------------------------------------

def side_effects(tf):
    """Python print and list.append run while tracing only; tf.print runs on every call."""
    r = Run(tf)

    def f(x):
        r.tick()
        r.log.append("traced")
        print("python print")
        r.tf_print("tf.print", x)
        return x + 1

    fn = tf.function(f)
    r.call(fn, _f32(tf, [1.0, 2.0]))
    r.call(fn, _f32(tf, [3.0, 4.0]))
    r.call(fn, _f32(tf, [5.0, 6.0]))
    r.call(fn, _f32(tf, [1.0]))
    return r.done()


def numpy_inside(tf):
    """.numpy() on a traced value: TF's symbolic tensor has no such attribute (accel: tested apart)."""
    r = Run(tf)

    def f(x):
        r.tick()
        return x.numpy() * 2

    fn = tf.function(f)
    r.call(fn, _f32(tf, [1.0, 2.0]))
    return r.done()


# --- input_signature ------------------------------------------------------------------------------

def input_signature_none_dim(tf):
    r = Run(tf)

    def f(x):
        r.tick()
        return x * 2

    fn = tf.function(f, input_signature=[tf.TensorSpec(shape=[None], dtype=tf.float32)])
    for v in [[1.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0, 5.0]]:
        r.call(fn, _f32(tf, v))
    r.call(fn, np.array([1.0, 2.0], np.float32))
    r.call(fn, x=_f32(tf, [4.0]))
    r.call(fn, [1.0, 2.0])  # a Python list
    # mismatches
    r.call(fn, _f32(tf, [[1.0, 2.0]]))  # rank
    r.call(fn, tf.constant([1.0, 2.0], dtype=tf.float64))  # dtype
    r.call(fn, tf.constant([1, 2], dtype=tf.int32))
    r.call(fn, 1.0)  # a Python float: rank 0
    r.call(fn, _f32(tf, [1.0]), _f32(tf, [1.0]))  # one argument too many
    return r.done()


def input_signature_matrix(tf):
    r = Run(tf)

    def f(x):
        r.tick()
        return tf.reduce_sum(x, axis=1)

    fn = tf.function(f, input_signature=[tf.TensorSpec(shape=[None, 2], dtype=tf.float32)])
    r.call(fn, _f32(tf, np.ones((3, 2))))
    r.call(fn, _f32(tf, np.ones((5, 2))))
    r.call(fn, _f32(tf, np.ones((3, 3))))
    r.call(fn, _f32(tf, np.ones(2)))
    return r.done()


def input_signature_scalar(tf):
    r = Run(tf)

    def f(x):
        r.tick()
        return x * 2

    fn = tf.function(f, input_signature=[tf.TensorSpec(shape=[], dtype=tf.float32)])
    r.call(fn, _f32(tf, 1.0))
    r.call(fn, 2.0)  # a Python float converts to a float32 scalar
    r.call(fn, 3)
    r.call(fn, _f32(tf, [1.0]))
    return r.done()


# --- reduce_retracing -----------------------------------------------------------------------------

def reduce_retracing_shapes(tf):
    r = Run(tf)

    def f(x):
        r.tick()
        return x * 2

    fn = tf.function(f, reduce_retracing=True)
    for n in [1, 2, 3, 4, 5]:
        r.call(fn, _f32(tf, np.arange(n)))
    r.call(fn, _f32(tf, np.ones((2, 2))))  # a new rank: the shape becomes unknown
    r.call(fn, _f32(tf, np.ones((3, 3))))
    r.call(fn, _f32(tf, np.ones(7)))
    r.call(fn, _f32(tf, np.ones((2, 2, 2))))
    r.call(fn, tf.constant([1, 2], dtype=tf.int32))  # a new dtype
    return r.done()


# --- get_concrete_function ------------------------------------------------------------------------

def concrete_function(tf):
    r = Run(tf)

    def f(x):
        r.tick()
        return x * 2

    fn = tf.function(f)
    cf = fn.get_concrete_function(tf.TensorSpec(shape=[None], dtype=tf.float32))
    after_get = {"body": r.body, "count": fn.experimental_get_tracing_count()}
    cf_result = _val(cf(_f32(tf, [1.0, 2.0, 3.0])))
    r.call(fn, _f32(tf, [1.0, 2.0, 3.0]))  # a call compatible with the [None] trace
    r.call(fn, _f32(tf, [1.0]))
    fn.get_concrete_function(_f32(tf, [5.0, 6.0]))
    after_second_get = {"body": r.body, "count": fn.experimental_get_tracing_count()}
    return r.done(after_get=after_get, cf_result=cf_result, after_second_get=after_second_get)


# --- the retracing warning ------------------------------------------------------------------------

def warning_changing_python_argument(tf):
    r = Run(tf)

    def f(x, n):
        r.tick()
        return x * float(n)

    fn = tf.function(f)
    a = _f32(tf, [1.0, 2.0])
    for n in range(10):
        r.call(fn, a, n)
    return r.done()


def warning_rewrapped_in_loop(tf):
    """A new tf.function object per call over the same Python function: TF counts per code object."""
    r = Run(tf)

    def f(x):
        r.tick()
        return x * 2

    a = _f32(tf, [1.0, 2.0])
    for _ in range(8):
        r.call(tf.function(f), a)
    return r.done()


CASES = {name: fn for name, fn in list(globals().items())
         if callable(fn) and not name.startswith("_") and getattr(fn, "__module__", None) == __name__
         and not isinstance(fn, type)}
