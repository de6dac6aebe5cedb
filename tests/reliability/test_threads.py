"""Threads: tapes and the fused-kernel mode are thread-local. Two threads training two models at once
give bitwise the serial results, a tape recording in one thread never captures another thread's ops,
and a thread's fused mode decides its own kernels only. The environment is read once, in accel.settings."""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

import accel as tf
from accel import backend, config, kernel_registry

STEPS = 150


def _make_model(seed, kind):
    rng = np.random.default_rng(seed)
    w1 = tf.Variable((rng.standard_normal((16, 32)) * 0.3).astype(np.float32), name="w1_%d" % seed)
    b1 = tf.Variable(np.zeros(32, np.float32), name="b1_%d" % seed)
    w2 = tf.Variable((rng.standard_normal((32, 4)) * 0.3).astype(np.float32), name="w2_%d" % seed)
    b2 = tf.Variable(np.zeros(4, np.float32), name="b2_%d" % seed)
    params = [w1, b1, w2, b2]
    x = tf.constant(rng.standard_normal((24, 16)).astype(np.float32))
    y = tf.constant(rng.integers(0, 4, 24).astype(np.int32))
    opt = {"adam": lambda: tf.optimizers.Adam(1e-2), "sgd": lambda: tf.optimizers.SGD(0.05, momentum=0.9),
           "raw": lambda: None}[kind]()
    return params, x, y, opt


def _train(seed, kind, steps=STEPS, barrier=None, trace=None):
    params, x, y, opt = _make_model(seed, kind)
    w1, b1, w2, b2 = params
    losses = []
    for i in range(steps):
        if barrier is not None and i % 10 == 0:
            barrier.wait()  # keep the two threads interleaved step by step
        with tf.GradientTape() as tape:
            h = tf.nn.relu(tf.matmul(x, w1) + b1)
            logits = tf.matmul(h, w2) + b2
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            loss = loss + 1e-3 * tf.add_n([tf.reduce_sum(tf.square(p)) for p in (w1, w2)]) \
                if hasattr(tf, "add_n") else loss + 1e-3 * (tf.reduce_sum(tf.square(w1)) + tf.reduce_sum(tf.square(w2)))
        if trace is not None:
            trace.append(len(tape._nodes))
        grads = tape.gradient(loss, params)
        if opt is None:
            for p, g in zip(params, grads):
                p.assign_sub(0.05 * g)
        else:
            opt.apply_gradients(zip(grads, params))
        losses.append(loss.numpy().copy())
    return [p.numpy().copy() for p in params], np.array(losses)


@pytest.mark.parametrize("kinds", [("adam", "adam"), ("sgd", "raw"), ("adam", "sgd")])
def test_two_threads_training_match_serial_bitwise(kinds):
    serial = [_train(seed, kind) for seed, kind in zip((1, 2), kinds)]
    results = [None, None]
    errors = []
    barrier = threading.Barrier(2, timeout=60)

    def worker(k):
        try:
            results[k] = _train(k + 1, kinds[k], barrier=barrier)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for k in range(2):
        params, losses = results[k]
        sparams, slosses = serial[k]
        np.testing.assert_array_equal(losses, slosses, err_msg="thread %d losses" % k)
        for p, sp in zip(params, sparams):
            np.testing.assert_array_equal(p, sp, err_msg="thread %d parameters" % k)
        assert slosses[-1] < slosses[0]  # they did train


def test_threads_record_the_same_number_of_ops_as_serial():
    serial_trace = []
    _train(3, "adam", steps=20, trace=serial_trace)
    traces = [[], []]
    barrier = threading.Barrier(2, timeout=60)
    threads = [threading.Thread(target=_train, args=(3, "adam"),
                                kwargs=dict(steps=20, barrier=barrier, trace=traces[k]))
               for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert traces[0] == serial_trace and traces[1] == serial_trace


def test_tape_never_records_another_threads_ops():
    """Thread A watches x and records; thread B computes from the very same x while A's tape is open.
    A's tape must hold only A's ops, B's results must have no gradient on A's tape, and B's own tape
    must not see A's ops."""
    x = tf.constant([1.0, 2.0, 3.0])
    a_ready, b_done = threading.Event(), threading.Event()
    out = {}

    def thread_b():
        a_ready.wait(30)
        with tf.GradientTape() as tb:
            tb.watch(x)
            yb = tf.sin(x) * 3.0
            yb2 = tf.exp(x)  # noqa: F841 - recorded on tb only
        out["b_nodes"] = len(tb._nodes)
        out["yb"] = yb
        out["b_grad"] = tb.gradient(yb, x).numpy()
        b_done.set()

    tb_thread = threading.Thread(target=thread_b)
    tb_thread.start()
    with tf.GradientTape(persistent=True) as ta:
        ta.watch(x)
        ya = x * 2.0
        a_ready.set()
        assert b_done.wait(30)
        ya = ya + 1.0
    tb_thread.join(30)
    assert len(ta._nodes) == 2, "A's tape recorded %d ops (B's leaked in?)" % len(ta._nodes)
    assert ta.gradient(out["yb"], x) is None
    np.testing.assert_array_equal(ta.gradient(ya, x).numpy(), [2.0, 2.0, 2.0])
    assert out["b_nodes"] == 3  # sin, multiply, exp: none of A's
    np.testing.assert_allclose(out["b_grad"], 3 * np.cos([1.0, 2.0, 3.0]), rtol=1e-6)


def test_variable_read_in_other_thread_is_not_watched():
    """Reading a trainable variable watches it only on the reading thread's tapes."""
    v = tf.Variable([1.0, 2.0])
    go, done = threading.Event(), threading.Event()

    def other():
        go.wait(30)
        _ = v * 5.0  # accessed on this thread, with no tape here
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with tf.GradientTape() as tape:
        go.set()
        assert done.wait(30)
        c = tf.constant([1.0, 1.0]) * 2.0
    t.join(30)
    assert tape.watched_variables() == ()
    assert tape.gradient(c, v) is None


def test_stop_recording_and_nesting_are_per_thread():
    """A thread pausing its tape, or nesting tapes, does not affect the other thread's tape."""
    x = tf.constant(2.0)
    paused, resumed = threading.Event(), threading.Event()
    res = {}

    def pauser():
        with tf.GradientTape() as t:
            t.watch(x)
            with t.stop_recording():
                paused.set()
                resumed.wait(30)
                _ = x * x
            y = x * 3.0
        res["pauser"] = float(t.gradient(y, x).numpy())

    th = threading.Thread(target=pauser)
    th.start()
    paused.wait(30)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = x * x * x
        dy = inner.gradient(y, x)
    resumed.set()
    th.join(30)
    assert float(dy.numpy()) == 12.0
    assert float(outer.gradient(dy, x).numpy()) == 12.0  # d/dx 3x^2 = 6x
    assert res["pauser"] == 3.0


def test_many_threads_independent_gradients():
    n = 8
    results = [None] * n
    barrier = threading.Barrier(n, timeout=60)

    def work(k):
        x = tf.constant(np.full(5, float(k + 1)))
        barrier.wait()
        for _ in range(50):
            with tf.GradientTape() as t:
                t.watch(x)
                y = tf.reduce_sum(x ** 3)
            g = t.gradient(y, x)
        results[k] = g.numpy()

    ts = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    for k in range(n):
        np.testing.assert_array_equal(results[k], np.full(5, 3.0 * (k + 1) ** 2))


def test_fused_mode_blocks_are_per_thread():
    """`with accel.config.fused(...)` in one thread leaves another thread's mode alone (as tapes do)."""
    seen = {}
    inside = threading.Event()
    checked = threading.Event()

    def other():
        inside.wait(10)
        seen["other"] = backend.fused_mode()
        checked.set()

    default = backend.fused_mode()
    t = threading.Thread(target=other)
    t.start()
    with tf.config.fused("never" if default != "never" else "always"):
        seen["mine"] = backend.fused_mode()
        inside.set()
        checked.wait(10)
    t.join(10)
    assert seen["other"] == default and seen["mine"] != default and backend.fused_mode() == default
    with pytest.raises(ValueError, match="fused mode"):
        with tf.config.fused("sometimes"):
            pass


# ---- fused mode per thread: each thread's mode picks its own kernels and gives its own results ----

ROOT = pathlib.Path(__file__).resolve().parents[2]
TWIN_STEPS = 20


@pytest.fixture
def twin_calls(monkeypatch):
    """Counts the CPU twin (fused kernel) calls per thread: {thread name: n}."""
    from accel import cpu_kernels

    with tf.config.fused("always"):
        if not cpu_kernels.available() or backend.fused_mode() != "always":
            pytest.skip("numba not installed: there is no fused CPU path to count")
    calls = {}
    lock = threading.Lock()

    def spy(fn):
        def counted(*args, **kwargs):
            with lock:
                name = threading.current_thread().name
                calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)
        return counted

    for name in kernel_registry.ENTRY_POINTS["accel.cpu_kernels"]:
        monkeypatch.setattr(cpu_kernels, name, spy(getattr(cpu_kernels, name)))
    yield calls
    tf.config.set_fused_mode(config.ENV.fused)  # the main thread's mode, should a failed test leave it changed


def _run_in_mode(mode, how, barrier=None):
    if how == "set":
        tf.config.set_fused_mode(mode)
        return _train(5, "adam", steps=TWIN_STEPS, barrier=barrier)
    with tf.config.fused(mode):
        return _train(5, "adam", steps=TWIN_STEPS, barrier=barrier)


# (thread a's mode, thread b's mode, how each sets it: set_fused_mode or a `with fused(...)` block)
TWO_MODES = [
    ("always", "never", "set"),
    ("never", "always", "set"),
    ("always", "never", "with"),
    ("always", "always", "set"),
    ("never", "never", "with"),
]


@pytest.mark.parametrize("mode_a, mode_b, how", TWO_MODES)
def test_two_threads_in_different_fused_modes_run_independently(twin_calls, mode_a, mode_b, how):
    serial = {}
    for mode in {mode_a, mode_b}:
        twin_calls.clear()
        with tf.config.fused(mode):
            serial[mode] = _train(5, "adam", steps=TWIN_STEPS)
        serial[mode] += (twin_calls.get("MainThread", 0),)
    for mode, (_, _, calls) in serial.items():
        assert (calls > 0) == (mode == "always"), (mode, calls)  # xent forward and backward, relu, Adam
    twin_calls.clear()
    results, errors = {}, []
    barrier = threading.Barrier(2, timeout=60)

    def worker(name, mode):
        try:
            results[name] = _run_in_mode(mode, how, barrier)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(n, m), name=n) for n, m in (("a", mode_a), ("b", mode_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert backend.fused_mode() == config.ENV.fused and "MainThread" not in twin_calls
    for name, mode in (("a", mode_a), ("b", mode_b)):
        params, losses = results[name]
        want_params, want_losses, want_calls = serial[mode]
        assert twin_calls.get(name, 0) == want_calls, "thread %s in mode %r: %r" % (name, mode, twin_calls)
        np.testing.assert_array_equal(losses, want_losses, err_msg="thread %s (%s) losses" % (name, mode))
        for p, sp in zip(params, want_params):
            np.testing.assert_array_equal(p, sp, err_msg="thread %s (%s) parameters" % (name, mode))


def test_a_new_thread_starts_from_the_process_default():
    other = "never" if config.ENV.fused != "never" else "always"
    seen = {}
    tf.config.set_fused_mode(other)
    try:
        t = threading.Thread(target=lambda: seen.setdefault("new", backend.fused_mode()))
        t.start()
        t.join(10)
        assert backend.fused_mode() == other
    finally:
        tf.config.set_fused_mode(config.ENV.fused)
    assert seen["new"] == config.ENV.fused


def test_op_determinism_is_process_wide_as_in_tf():
    """TF 2.21: enable_op_determinism() in one thread is seen by every thread."""
    seen = {}
    assert not tf.config.op_determinism_enabled()
    t = threading.Thread(target=tf.config.experimental.enable_op_determinism)
    t.start()
    t.join(10)
    try:
        seen["main"] = tf.config.op_determinism_enabled()
        t = threading.Thread(target=lambda: seen.setdefault("new", tf.config.op_determinism_enabled()))
        t.start()
        t.join(10)
    finally:
        tf.config.experimental.disable_op_determinism()
    assert seen == {"main": True, "new": True}


# ---- the environment: read once, in accel/settings.py, documented in the README ----

# (environment, the settings read from it)
GOOD_ENV = [
    ({}, dict(device="", fused="auto", deterministic_ops=False, numba=True, numba_parallel=False)),
    ({"ACCEL_FUSED": "NEVER", "ACCEL_NUMBA": "0", "ACCEL_NUMBA_PARALLEL": "1"},
     dict(fused="never", numba=False, numba_parallel=True)),
    ({"ACCEL_DEVICE": " cpu ", "ACCEL_DETERMINISTIC_OPS": "true", "ACCEL_NUMBA": "off"},
     dict(device="cpu", deterministic_ops=True, numba=False)),
    ({"ACCEL_FUSED": "", "ACCEL_NUMBA": ""}, dict(fused="auto", numba=True)),  # set but empty: the default
]


@pytest.mark.parametrize("environ, want", GOOD_ENV)
def test_read_environment(environ, want):
    env = config.read_environment(environ)
    assert {k: getattr(env, k) for k in want} == want


# (environment, the error naming the variable and the value)
BAD_ENV = [
    ({"ACCEL_FUSED": "sometimes"}, r"ACCEL_FUSED: expected one of auto\|always\|never, got 'sometimes'"),
    ({"ACCEL_NUMBA": "2"}, r"ACCEL_NUMBA: expected 1 or 0 .*got '2'"),
    ({"ACCEL_NUMBA_PARALLEL": "fast"}, r"ACCEL_NUMBA_PARALLEL: expected 1 or 0 .*got 'fast'"),
    ({"ACCEL_DETERMINISTIC_OPS": "y"}, r"ACCEL_DETERMINISTIC_OPS: expected 1 or 0 .*got 'y'"),
]


@pytest.mark.parametrize("environ, msg", BAD_ENV)
def test_read_environment_rejects_bad_values(environ, msg):
    with pytest.raises(ValueError, match=msg):
        config.read_environment(environ)


def test_no_module_but_settings_reads_the_environment():
    readers = []
    for path in sorted((ROOT / "accel").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "getenvb", "environb"):
                readers.append("%s:%d" % (path.relative_to(ROOT), node.lineno))
    assert readers and all(r.startswith("accel/settings.py:") for r in readers), readers


# Imports accel with os.environ replaced by a mapping that notes which file reads each ACCEL_ variable
# (numba copies the whole environment: the test keeps reads from accel's own files),
# then runs ops down every path that consults a setting (default device, fused twins, numba load).
_RECORD_READS = r"""
import collections.abc, json, os, sys
reads = []

class Recorder(collections.abc.MutableMapping):
    def __init__(self, env):
        self.env = env
    def _note(self, key):
        if str(key).startswith("ACCEL_"):
            f = sys._getframe(2)
            while f.f_code.co_filename == "<string>" or "_collections_abc" in f.f_code.co_filename:
                f = f.f_back
            reads.append((key, f.f_code.co_filename))
    def __getitem__(self, key):
        self._note(key)
        return self.env[key]
    def __contains__(self, key):
        self._note(key)
        return key in self.env
    def __setitem__(self, key, value):
        self.env[key] = value
    def __delitem__(self, key):
        del self.env[key]
    def __iter__(self):
        return iter(self.env)
    def __len__(self):
        return len(self.env)

os.environ = Recorder(os.environ)
import numpy as np
import accel as tf
from accel import backend, cpu_kernels
os.environ["ACCEL_FUSED"] = "never"  # too late: read at import
x = tf.Variable(np.linspace(-1, 1, 64, dtype=np.float32))
with tf.GradientTape() as tape:
    y = tf.reduce_sum(tf.nn.gelu(x) * tf.nn.relu(x))
tf.optimizers.Adam(0.1).apply_gradients([(tape.gradient(y, x), x)])
cpu_kernels.wait_warmed(60)
print(json.dumps({"reads": reads, "mode": backend.fused_mode(), "device": backend.default_device().kind,
                  "numba": cpu_kernels.available(), "deterministic": tf.config.op_determinism_enabled()}))
"""


def test_the_environment_is_read_once_in_settings():
    env = dict(os.environ, ACCEL_DEVICE="cpu", ACCEL_FUSED="always", ACCEL_NUMBA="1", ACCEL_DETERMINISTIC_OPS="1")
    proc = subprocess.run([sys.executable, "-c", _RECORD_READS], capture_output=True, text=True, env=env,
                          cwd=str(ROOT), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    mine = [(k, os.path.relpath(f, ROOT)) for k, f in got["reads"] if f.startswith(str(ROOT / "accel") + os.sep)]
    assert sorted(mine) == sorted((k, os.path.join("accel", "settings.py")) for k in config.VARIABLES), mine
    assert got["mode"] == "always" and got["device"] == "cpu" and got["numba"] and got["deterministic"]


def _readme_table():
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Environment variables\n", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `(ACCEL_\w+)` \| `?([^|`]*)`? \|", section, re.M)}


def test_the_readme_documents_every_variable_with_its_default():
    table = _readme_table()
    assert table == {name: default or "(unset)" for name, (_, default) in config.VARIABLES.items()}
