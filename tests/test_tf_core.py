"""accel against TensorFlow 2.21's recorded results (tests/data/tf_core.json, written by
tools/record_tf_core.py from the programs in tests/tf_core_cases.py), and the TF-parity behaviours
that have no TF value to record: Generator streams, unsupported names, warnings, start-up."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import accel as tf
from tests.tf_core_cases import CASES

RECORDED = json.load(open(os.path.join(os.path.dirname(__file__), "data", "tf_core.json")))["cases"]


def test_every_case_was_recorded():
    assert sorted(RECORDED) == sorted(CASES)


def _same(got, want, where):
    if isinstance(want, dict) and "dtype" in want:
        assert isinstance(got, dict) and got["dtype"] == want["dtype"], "%s: got %r, TF gives %r" % (where, got, want)
        np.testing.assert_allclose(np.asarray(got["value"], float), np.asarray(want["value"], float), rtol=1e-6,
                                   err_msg=where)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), "%s: got %r, TF gives %r" % (where, got, want)
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, "%s[%d]" % (where, i))
    else:
        assert got == want, "%s: got %r, TF gives %r" % (where, got, want)


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_tensorflow(name):
    rec = RECORDED[name]
    if "error" in rec:
        with pytest.raises(Exception) as e:
            CASES[name](tf)
        assert type(e.value).__name__ == rec["error"] or rec["error"] in [c.__name__ for c in type(e.value).__mro__]
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tf.debugging.TapeWarning)
        got = CASES[name](tf)
    _same(got, rec["result"], name)


def test_explain_names_variable_numpy_and_its_line():
    v = tf.Variable(2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tf.debugging.TapeWarning)
        with tf.GradientTape() as tape:
            z = tf.constant(v.numpy()) * 2  # the value leaves here
    report = str(tape.explain(z, [v]))
    assert "Variable.numpy()" in report and "test_tf_core.py" in report and "z = tf.constant(v.numpy())" in report
    assert "before the tape" not in report


def test_custom_gradient_still_asks_for_variables_when_it_reads_one():
    w = tf.Variable(2.0)

    @tf.custom_gradient
    def f(x):
        return x * w, lambda dy: dy

    with pytest.raises(TypeError, match="variables="):
        f(tf.constant(1.0))


# --- random.Generator -----------------------------------------------------------------------------

GENERATOR_DRAWS = {
    "normal": lambda g: g.normal([3, 2]),
    "uniform": lambda g: g.uniform([4], minval=-1.0, maxval=2.0),
    "uniform_int": lambda g: g.uniform([5], minval=3, maxval=9, dtype=tf.int32),
    "truncated_normal": lambda g: g.truncated_normal([100]),
    "uniform_full_int": lambda g: g.uniform_full_int([3]),
    "float64": lambda g: g.normal([2], dtype=tf.float64),
}


@pytest.mark.parametrize("draw", list(GENERATOR_DRAWS))
def test_generator_streams_are_reproducible_and_resumable(draw, device):
    fn = GENERATOR_DRAWS[draw]
    g1, g2 = tf.random.Generator.from_seed(7), tf.random.Generator.from_seed(7)
    a, b = fn(g1), fn(g2)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    resumed = tf.random.Generator.from_state(g1.state)
    np.testing.assert_array_equal(fn(g1).numpy(), fn(resumed).numpy())
    assert not np.array_equal(fn(g1).numpy(), a.numpy())  # each draw moves the stream on
    assert not np.array_equal(fn(tf.random.Generator.from_seed(8)).numpy(), a.numpy())


def test_generator_ranges_dtypes_and_split():
    g = tf.random.Generator.from_seed(1)
    u = g.uniform([1000], minval=-1.0, maxval=2.0).numpy()
    assert u.dtype == np.float32 and u.min() >= -1 and u.max() < 2
    t = g.truncated_normal([1000], stddev=2.0).numpy()
    assert np.abs(t).max() <= 4.0
    i = g.uniform([1000], minval=3, maxval=9, dtype=tf.int64).numpy()
    assert i.dtype == np.int64 and set(np.unique(i)) == set(range(3, 9))
    kids = g.split(3)
    assert len({float(k.normal([])) for k in kids}) == 3
    assert tuple(g.make_seeds(4).shape) == (2, 4)
    with pytest.raises(ValueError, match="maxval"):
        g.uniform([2], dtype=tf.int32)
    with pytest.raises(ValueError, match="float"):
        g.normal([2], dtype=tf.int32)


def test_stateless_draws_depend_only_on_the_seed():
    a = tf.random.stateless_normal([3], seed=[1, 2])
    np.testing.assert_array_equal(a.numpy(), tf.random.stateless_normal([3], seed=[1, 2]).numpy())
    assert not np.array_equal(a.numpy(), tf.random.stateless_normal([3], seed=[1, 3]).numpy())
    with pytest.raises(ValueError, match="shape \\[2\\]"):
        tf.random.stateless_uniform([3], seed=[1, 2, 3])


# --- names TF has that accel leaves out ---------------------------------------------------------

@pytest.mark.parametrize("name", ["strings", "ragged", "sparse", "saved_model", "image", "compat", "io"])
def test_unsupported_names_say_so(name):
    with pytest.raises(AttributeError, match="accel.%s .*is not supported: " % name):
        getattr(tf, name)
    assert not hasattr(tf, name)


def test_a_name_that_does_not_exist_is_a_plain_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'no_such_op'"):
        tf.no_such_op  # noqa: B018


# --- start-up and warnings (fresh interpreters: this process has numba and filters of its own) ---

def _run(code):
    env = dict(os.environ, ACCEL_FUSED="auto", PYTHONWARNINGS="default")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          cwd=os.path.join(os.path.dirname(__file__), ".."))


def test_import_and_model_building_do_not_load_numba():
    r = _run("import sys, accel as tf\n"
             "m = tf.keras.Sequential([tf.keras.layers.Dense(3)]); m.compile(optimizer='adam', loss='mse')\n"
             "print('numba' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_first_fit_runs_without_waiting_for_numba_and_twins_take_over():
    r = _run("import numpy as np, accel as tf\n"
             "from accel import cpu_kernels\n"
             "from accel.ops import fusion\n"
             "x = np.random.rand(64, 4).astype('float32'); y = np.random.randint(0, 3, 64)\n"
             "m = tf.keras.Sequential([tf.keras.layers.Dense(3)])\n"
             "m.compile(optimizer='adam', loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))\n"
             "m.fit(x, y, epochs=1, batch_size=32, verbose=0)\n"
             "print(fusion._twins is None)\n"  # the fit ran the NumPy rules: the twins were not bound yet
             "print(cpu_kernels.wait_warmed(240))\n"
             "print(fusion._cpu_ok(np.zeros(4, np.float32), any_size=True))\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True"], r.stdout


def test_floating_point_warnings_inside_accel_do_not_surface():
    r = _run("import numpy as np, accel as tf\n"
             "tf.math.log(tf.constant(0.0)); tf.constant(0.0) / 0.0; tf.exp(tf.constant(1000.0))\n"
             "np.log(np.zeros(1))\n")  # the user's own NumPy call still warns
    assert r.returncode == 0, r.stderr
    assert "accel" not in r.stderr and r.stderr.count("RuntimeWarning") == 1, r.stderr


def test_op_determinism_loads_numba_before_the_first_fused_op():
    r = _run("import numpy as np, accel as tf\n"
             "tf.config.experimental.enable_op_determinism()\n"
             "from accel.ops import fusion\n"
             "print(bool(fusion._cpu_ok(np.zeros(4, np.float32), any_size=True)))\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True"]


def test_variable_names_take_the_open_name_scope():
    # TF 2.21 prints outer/w:0 outer/Variable:0 for this program
    with tf.name_scope("outer"):
        v, u = tf.Variable(1.0, name="w"), tf.Variable(1.0)
        d = tf.keras.layers.Dense(2)
        d(tf.zeros([1, 3]))
    assert (v.name, u.name) == ("outer/w:0", "outer/Variable:0")
    assert d.kernel.name.startswith(d.name + "/kernel")  # Keras names weights by layer, not by scope
