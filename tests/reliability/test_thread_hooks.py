"""The profiler and the numerics check are per thread (accel.recorder.hooks), like the tapes: one thread's
hook never sees, counts or checks another thread's ops, and running them leaves the other thread's
arrays plain."""

import threading

import numpy as np
import pytest

import accel as tf
from accel import cpu_kernels, profiler, recorder
from accel.errors import InvalidArgumentError

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def _run_in_thread(fn):
    """Runs fn() in a new thread; returns its result, re-raising what it raised."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001  (handed back to the test's thread)
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the other thread did not finish"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _other_work():
    """Forward and backward of ops the observing thread never runs (sin, cos, log of a negative)."""
    x = tf.Variable(np.linspace(0.1, 1.0, 64).astype(np.float32))
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(tf.sin(x) * tf.cos(x))
    g = tape.gradient(y, x)
    bad = tf.math.log(tf.constant([-1.0, 2.0]))  # NaN: a numerics check of this thread would raise
    return [y, g, bad]


def _overlapped(observe):
    """Thread A runs `observe(inside)`; inside its hook it lets thread B run _other_work and waits for it."""
    def inside():
        return _run_in_thread(_other_work)

    return observe(inside)


def test_profile_counts_only_its_own_thread():
    def observe(inside):
        with profiler.profile() as prof:
            other = inside()
            x = tf.constant(np.ones(16, np.float32))
            tf.tanh(x)
        return prof, other

    prof, other = _overlapped(observe)
    labels = set(prof.table)
    assert "tanh" in labels
    foreign = {"sin", "cos", "log", "multiply", "reduce_sum"}  # the other thread's ops, forward or backward
    assert not {lbl for lbl in labels if lbl.split()[0] in foreign}, labels
    for t in other:  # the other thread's arrays were never wrapped in counting views
        assert type(t._data) is np.ndarray
    assert np.isnan(other[2].numpy()[0])


def test_profiles_in_two_threads_count_apart():
    x = tf.constant(np.ones(1000, np.float32))
    with profiler.profile() as base:
        tf.exp(x)
    per_op = base.table["exp"]
    barrier = threading.Barrier(2, timeout=30)

    def work(n):
        def run():
            with profiler.profile() as prof:
                barrier.wait()  # both profiles are active from here on
                for _ in range(n):
                    tf.exp(x)
                barrier.wait()
            return prof
        return run

    results = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, work(n)())) for n in (3, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for n in (3, 7):
        assert results[n].table["exp"] == [n * per_op[0], n * per_op[1]]
    assert recorder.hooks.active == 0
    assert not hasattr(cpu_kernels.adam_update, "__wrapped__")  # the kernel entry points are restored


def test_numerics_check_checks_only_its_own_thread():
    def observe(inside):
        tf.debugging.enable_check_numerics()
        try:
            other = inside()  # log(-1) in the other thread: not checked, no error there
            with pytest.raises(InvalidArgumentError, match="log"):
                tf.math.log(tf.constant([-1.0]))
        finally:
            tf.debugging.disable_check_numerics()
        return other

    other = _overlapped(observe)
    assert np.isnan(other[2].numpy()[0])
    assert recorder.hooks.active == 0
    tf.math.log(tf.constant([-1.0]))  # disabled again: no error


@pytest.mark.parametrize("install", [
    lambda: recorder.hooks.set_profile(profiler.Profile()),
    lambda: recorder.hooks.set_numerics_check(lambda opname, arrays, phase: None),
], ids=["profile", "numerics_check"])
def test_hook_is_invisible_to_other_threads(install):
    install()
    try:
        assert recorder.hooks.active == 1
        seen = _run_in_thread(lambda: (recorder.hooks.profile, recorder.hooks.numerics_check))
        assert seen == (None, None)
    finally:
        recorder.hooks.set_profile(None)
        recorder.hooks.set_numerics_check(None)
    assert recorder.hooks.active == 0


def test_profile_nesting_is_per_thread():
    with profiler.profile():
        with pytest.raises(RuntimeError, match="do not nest"):
            with profiler.profile():
                pass
        prof = _run_in_thread(lambda: _profile_once())  # another thread may profile meanwhile
    assert prof.table["exp"][0] == 1


def _profile_once():
    with profiler.profile() as prof:
        tf.exp(tf.constant(np.ones(8, np.float32)))
    return prof
