"""The device step of Adam/AdamW/SGD: the capturable update the recorded host step of a traced apply offers
(replay.capturable, replay.device_run, replay.device_key; Optimizer._capturable_replay).

- which configurations are capturable and why not (the predicate, on the CPU: an eligible configuration
  is refused only because its arrays are not on a GPU);
- device_run's orchestration (weight-decay groups, slot order, hyperparameter rounding, the counter) with
  the device-step kernels run on the CPU through kernels/cpu_shim, bitwise against the plain apply;
- on a GPU (marked gpu): device_run for 5 steps against the plain apply, and inside a CUDA graph.
"""

from __future__ import annotations

import functools
import pathlib
import shutil
import sys
import types

import numpy as np
import pytest

import accel
from accel import backend, fused
from accel import optimizers as O
from accel.optimizers import schedules as S

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "kernels"))

SHAPES = [(4, 3), (3,), (37,), (2, 2, 5)]
STEPS = 5


class MyAdam(O.Adam):
    def _update(self, p, g, fg, s, lr, step, bufs):
        super()._update(p, g, fg, s, lr, step, bufs)


class MyAdamW(O.AdamW):
    """No override of the update: still Adam's device step."""


def make_vars(dtypes=("float32",) * 4, constraint=None):
    rng = np.random.default_rng(0)
    return [accel.Variable(rng.standard_normal(s).astype(dt), name="v%d" % i,
                           constraint=constraint if i == 0 else None)
            for i, (s, dt) in enumerate(zip(SHAPES, dtypes, strict=True))]


def dense_grads(variables, dtype=None):
    rng = np.random.default_rng(1)
    return [accel.constant(rng.standard_normal(v.shape).astype(dtype or v.dtype.name)) for v in variables]


NOT_ON_GPU = "is not on a GPU"
# (label, optimizer factory, variables/gradients modifier, expected reason (substring))
CASES = [
    ("adam", lambda: O.Adam(1e-3), None, NOT_ON_GPU),
    ("adamw", lambda: O.AdamW(1e-3, weight_decay=0.01), None, NOT_ON_GPU),
    ("amsgrad", lambda: O.Adam(1e-3, amsgrad=True), None, NOT_ON_GPU),
    ("sgd", lambda: O.SGD(0.1), None, NOT_ON_GPU),
    ("sgd_nesterov_wd", lambda: O.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), None, NOT_ON_GPU),
    ("adamw_subclass", lambda: MyAdamW(1e-3), None, NOT_ON_GPU),
    ("clipnorm_0_is_off", lambda: O.Adam(1e-3, clipnorm=0.0), None, NOT_ON_GPU),
    ("float64", lambda: O.Adam(1e-3), "float64", NOT_ON_GPU),
    ("schedule", lambda: O.Adam(S.ExponentialDecay(0.1, 10, 0.5)), None, "schedule or a callable"),
    ("callable_lr", lambda: O.SGD(lambda: 0.1), None, "schedule or a callable"),
    ("clipnorm", lambda: O.Adam(1e-3, clipnorm=1.0), None, "clipnorm=1.0"),
    ("clipvalue", lambda: O.SGD(0.1, clipvalue=0.5), None, "clipvalue=0.5"),
    ("global_clipnorm", lambda: O.Adam(1e-3, global_clipnorm=2.0), None, "global_clipnorm=2.0"),
    ("loss_scale", lambda: O.Adam(1e-3, loss_scale_factor=128.0), None, "loss_scale_factor=128.0"),
    ("ema", lambda: O.SGD(0.1, use_ema=True), None, "use_ema"),
    ("adamax", lambda: O.Adamax(1e-3), None, "Adamax has no device-step kernels"),
    ("nadam", lambda: O.Nadam(1e-3), None, "Nadam has no device-step kernels"),
    ("rmsprop", lambda: O.RMSprop(1e-3), None, "RMSprop has no device-step kernels"),
    ("lion", lambda: O.Lion(1e-3), None, "Lion has no device-step kernels"),
    ("adam_subclass_update", lambda: MyAdam(1e-3), None, "MyAdam overrides _update of Adam"),
    ("none_gradient", lambda: O.Adam(1e-3), "none", "gradient of variable v2:0 is None"),
    ("sparse_gradient", lambda: O.Adam(1e-3), "slices", "IndexedSlices"),
    ("constraint", lambda: O.SGD(0.1), "constraint", "v0:0 has a constraint"),
    ("mixed_dtypes", lambda: O.Adam(1e-3), "mixed", "dtype(s) float32, float64"),
    ("gradient_dtype", lambda: O.Adam(1e-3), "grad64", "has dtype float64, the variable float32"),
    ("fused_never", lambda: O.Adam(1e-3), "never", "fused kernels are off"),
]


def _setup(mod):
    dtypes = {"float64": ("float64",) * 4, "mixed": ("float32", "float64", "float32", "float32")}.get(
        mod, ("float32",) * 4)
    variables = make_vars(dtypes, constraint=(lambda x: x) if mod == "constraint" else None)
    grads = dense_grads(variables, "float64" if mod == "grad64" else None)
    if mod == "none":
        grads[2] = None
    if mod == "slices":
        grads[0] = O.IndexedSlices(accel.constant(np.ones((1, 3), np.float32)), accel.constant([1]), [4, 3])
    return variables, grads


@pytest.mark.parametrize("label,make,mod,why", CASES, ids=[c[0] for c in CASES])
def test_which_configurations_are_capturable(label, make, mod, why):
    opt = make()
    variables, grads = _setup(mod)
    opt.build(variables)
    rec = types.SimpleNamespace()
    if mod == "never":
        with backend.fused("never"):
            opt._capturable_replay(rec, grads, variables)
    else:
        opt._capturable_replay(rec, grads, variables)
    assert rec.capturable is False  # no GPU arrays here: never capturable on the CPU
    assert why in rec.not_capturable_because, rec.not_capturable_because
    assert not hasattr(rec, "device_run")


def _traced_update(opt, ref, grads, variables, twins):
    """opt.apply_gradients inside accel.function, run 3 times beside ref's eager steps on the twins; returns
    the host step the trace recorded (the plan's one "call" node's fn)."""

    @accel.function
    def step():
        opt.apply_gradients(zip(grads, variables, strict=True))

    for _ in range(3):
        step()
        ref.apply_gradients(zip(grads, twins, strict=True))
    calls = [n for cf in step._cache.values() for p in cf.plans for n in p.nodes if n[0] == "call"]
    assert len(calls) == 1
    return calls[0][2]


def test_the_traced_host_step_carries_the_verdict():
    """accel.function records the optimizer as a "call" node whose fn says whether it is capturable; the plain
    replay is unchanged (the function's result equals the eager steps)."""
    variables = make_vars()
    twins = [accel.Variable(v.numpy(), name=v.name) for v in variables]
    grads = dense_grads(variables)
    opt, ref = O.Adam(1e-2), O.Adam(1e-2)
    fn = _traced_update(opt, ref, grads, variables, twins)
    assert fn.capturable is False and NOT_ON_GPU in fn.not_capturable_because
    for v, w in zip(variables, twins, strict=True):
        np.testing.assert_array_equal(v.numpy(), w.numpy())
    assert int(opt.iterations) == 3


# ---- device_run's orchestration on the CPU: the kernels through kernels/cpu_shim ----------------

CT = {np.dtype(np.float16): "__half", np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


@pytest.fixture
def shim_fused(monkeypatch):
    """accel.fused's three device-step launchers replaced by launches of the same kernels on the CPU shim (NumPy
    arrays; the scalars come from fused's own helpers), so device_run runs here."""
    if not shutil.which("g++"):
        pytest.skip("g++ not installed")
    import cpu_build

    lib = cpu_build.load()
    calls = []

    def ptrs(arrays):
        return np.array([a.ctypes.data for a in arrays], np.uint64)

    def adam(ps, gs, ms, vs, vhats, iterations, lr, b1, b2, eps, wd=0.0, tables=None):
        dt = ps[0].dtype
        acc = np.float64 if dt == np.float64 else np.float32
        alpha = np.zeros(1, acc)
        a_sc, u_sc = fused.adam_dev_scalars(dt, lr, b1, b2, eps, wd)
        lib.launch("adam_dev_scalars<%s>" % CT[np.dtype(acc)], 1, 1, iterations, alpha, *a_sc)
        lib.launch("adam_multi_update_dev<%s>" % CT[dt], (2, len(ps)), 64, ptrs(ps), ptrs(ms), ptrs(vs),
                   None if vhats is None else ptrs(vhats), ptrs(gs), np.array([p.size for p in ps], np.int64),
                   alpha, *u_sc)
        assert isinstance(tables, dict)
        calls.append(("adam", len(ps), wd))

    def sgd(ps, gs, ms, lr, momentum=0.0, nesterov=False, wd=0.0, tables=None):
        dt = ps[0].dtype
        lib.launch("sgd_multi_update<%s>" % CT[dt], (2, len(ps)), 64, ptrs(ps), None if ms is None else ptrs(ms),
                   ptrs(gs), np.array([p.size for p in ps], np.int64),
                   *fused.sgd_multi_scalars(dt, lr, momentum, nesterov, wd))
        assert isinstance(tables, dict)
        calls.append(("sgd", len(ps), wd))

    def inc(iterations):
        lib.launch("step_increment<long long>", 1, 1, iterations)
        calls.append(("inc",))

    monkeypatch.setattr(fused, "adam_multi_update_dev", adam)
    monkeypatch.setattr(fused, "sgd_multi_update", sgd)
    monkeypatch.setattr(fused, "step_increment", inc)
    return calls


# (label, factory, dtype, excluded from weight decay)
RUN_CASES = [
    ("adam_f32", lambda: O.Adam(1e-3), "float32", False),
    ("adam_f64", lambda: O.Adam(3e-3, beta_1=0.8, beta_2=0.99), "float64", False),
    ("adamw_excluded", lambda: O.AdamW(1e-2, weight_decay=0.05), "float32", True),
    ("adamw_amsgrad_f64", lambda: O.AdamW(1e-2, amsgrad=True), "float64", False),
    ("sgd_f32", lambda: O.SGD(0.1), "float32", False),
    ("sgd_wd_f64", lambda: O.SGD(0.05, weight_decay=0.01), "float64", True),
    ("momentum_f32", lambda: O.SGD(0.05, momentum=0.9), "float32", False),
    ("nesterov_f64", lambda: O.SGD(0.05, momentum=0.9, nesterov=True), "float64", False),
]


@pytest.mark.parametrize("fused_mode", ["never", "always"])
@pytest.mark.parametrize("label,make,dtype,exclude", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_device_run_equals_plain_apply_on_the_cpu_shim(shim_fused, label, make, dtype, exclude, fused_mode):
    """5 steps of device_run (kernels on the CPU shim) vs 5 plain apply steps (generic path, or the numba
    fused one): parameters, every slot and iterations bitwise equal."""
    variables = make_vars((dtype,) * 4)
    twins = [accel.Variable(v.numpy(), name=v.name) for v in variables]
    dev, plain = make(), make()
    if exclude:
        dev.exclude_from_weight_decay(var_list=variables[1:2])
        plain.exclude_from_weight_decay(var_list=twins[1:2])
    dev.build(variables)
    rng = np.random.default_rng(2)
    with backend.fused(fused_mode):
        for step in range(1, STEPS + 1):
            gs = [rng.standard_normal(v.shape).astype(dtype) for v in variables]
            dev._device_run(variables, gs)
            plain.apply_gradients(zip([accel.constant(g) for g in gs], twins, strict=True))
            assert int(dev.iterations.numpy()) == int(plain.iterations.numpy()) == step
    for v, w, v0 in zip(variables, twins, make_vars((dtype,) * 4), strict=True):
        assert not np.array_equal(v.numpy(), v0.numpy())  # it moved
        np.testing.assert_array_equal(v.numpy(), w.numpy())
    for a, b in zip(dev.variables[2:], plain.variables[2:], strict=True):  # the slots, in build order
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    kernels = [c for c in shim_fused if c[0] != "inc"]
    wds = {c[2] for c in kernels}
    assert len(wds) == (2 if exclude else 1)  # one launch per weight-decay group and step
    assert len(kernels) == STEPS * len(wds) and shim_fused.count(("inc",)) == STEPS


def test_device_key_names_the_baked_in_host_values():
    variables = make_vars()
    opt = O.Adam(1e-3)
    opt.build(variables)
    key = opt._device_key(variables)
    assert key == opt._device_key(variables)
    opt.learning_rate = 2e-3
    assert opt._device_key(variables) != key
    opt.learning_rate = 1e-3
    assert opt._device_key(variables) == key
    opt.beta_1 = 0.5
    assert opt._device_key(variables) != key


def test_device_run_checks_the_gradient_count(shim_fused):
    variables = make_vars()
    opt = O.SGD(0.1)
    opt.build(variables)
    with pytest.raises(ValueError, match="got 3 gradient arrays for 4 variables"):
        opt._device_run(variables, [np.zeros(v.shape, np.float32) for v in variables[:3]])
    assert shim_fused == [] and int(opt.iterations.numpy()) == 0


# ---- CuPy names and argument checks without a GPU ------------------------------------------------


@pytest.mark.parametrize("name", ["cuda.get_current_stream", "cuda.Stream.is_capturing", "cuda.Stream.begin_capture",
                                  "cuda.Stream.end_capture", "cuda.graph.Graph.launch", "asarray", "zeros", "int64",
                                  "ndarray.view", "cuda.MemoryPointer.ptr", "cuda.alloc_pinned_memory",
                                  "ndarray.set", "empty"])
def test_cupy_names_used_by_the_device_step_exist(name):
    cupy = pytest.importorskip("cupy", reason="cupy not installed")
    assert functools.reduce(getattr, name.split("."), cupy) is not None


def _meta(shape, dtype=np.float32):
    cupy = pytest.importorskip("cupy", reason="cupy not installed")
    n = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    mem = cupy.cuda.UnownedMemory(0x1000, n, None, 0)
    return cupy.ndarray(shape, dtype, memptr=cupy.cuda.MemoryPointer(mem, 0))


BAD = [
    (lambda A, I: fused.adam_multi_update_dev([A(4)], [A(3)], [A(4)], [A(4)], None, I(1), 1e-3, 0.9, 0.999, 1e-7),
     r"g has shape \(3,\)"),
    (lambda A, I: fused.adam_multi_update_dev([A(4)], [A(4)], [A(4)], [A(4)], None, A(1), 1e-3, 0.9, 0.999, 1e-7),
     "iterations has dtype float32, expected int64"),
    (lambda A, I: fused.adam_multi_update_dev([A(4)], [A(4)], [A(4)], [A(4)], None, I(2), 1e-3, 0.9, 0.999, 1e-7),
     r"iterations must have 1 element, got shape \(2,\)"),
    (lambda A, I: fused.sgd_multi_update([A(4), A(2)], [A(4)], None, 0.1), "gs has 1 tensors, expected 2"),
    (lambda A, I: fused.sgd_multi_update([A(4)], [A(4)], [A(4, dt=np.float64)], 0.1), "m has dtype float64"),
    (lambda A, I: fused.step_increment(np.zeros(1, np.int64)), "iterations must be a cupy.ndarray"),
]


@pytest.mark.parametrize("call,msg", BAD, ids=[str(i) for i in range(len(BAD))])
def test_device_step_launchers_reject_bad_arguments_before_launch(call, msg):
    A = lambda *s, dt=np.float32: _meta(s, dt)  # noqa: E731
    I = lambda n: _meta((n,), np.int64)  # noqa: E731, E741
    before = dict(fused.launches)
    with pytest.raises(ValueError, match=msg):
        call(A, I)
    assert dict(fused.launches) == before


# ---- on a GPU ------------------------------------------------------------------------------------

GPU_CASES = [
    ("adam", lambda: O.Adam(1e-3), "float32"),
    ("adamw_amsgrad", lambda: O.AdamW(1e-2, amsgrad=True), "float32"),
    ("adam_f64", lambda: O.Adam(1e-3), "float64"),
    ("sgd", lambda: O.SGD(0.1, weight_decay=0.01), "float32"),
    ("nesterov", lambda: O.SGD(0.05, momentum=0.9, nesterov=True), "float64"),
]


def _gpu_setup(make, dtype):
    cp = backend.cupy()
    host = make_vars((dtype,) * 4)
    variables = [accel.Variable(cp.asarray(v._data), name=v.name) for v in host]
    twins = [accel.Variable(cp.asarray(v._data), name=v.name) for v in host]
    assert all(backend.is_cupy_array(v._data) for v in variables + twins)
    opt, ref = make(), make()
    opt.build(variables)
    rng = np.random.default_rng(3)
    steps = [[cp.asarray(rng.standard_normal(v.shape).astype(dtype)) for v in variables] for _ in range(STEPS)]
    return cp, variables, twins, opt, ref, steps


def _assert_same(cp, opt, ref, variables, twins):
    """Bitwise: the same kernels' arithmetic, and for t <= 5 the device alpha equals the host's (CPU-shim test)."""
    for v, w in zip(variables, twins, strict=True):
        np.testing.assert_array_equal(cp.asnumpy(v._data), cp.asnumpy(w._data))
    for a, b in zip(opt.variables[2:], ref.variables[2:], strict=True):
        np.testing.assert_array_equal(cp.asnumpy(a._data), cp.asnumpy(b._data))
    assert int(opt.iterations.numpy()) == int(ref.iterations.numpy()) == STEPS
    assert backend.is_cupy_array(opt.iterations._data)


@pytest.mark.gpu
@pytest.mark.parametrize("label,make,dtype", GPU_CASES, ids=[c[0] for c in GPU_CASES])
def test_gpu_device_run_equals_plain_apply(label, make, dtype):
    if not backend.has_gpu():
        pytest.skip("needs CuPy and a CUDA device")
    cp, variables, twins, opt, ref, steps = _gpu_setup(make, dtype)
    rec = types.SimpleNamespace()
    opt._capturable_replay(rec, [accel.constant(g) for g in steps[0]], variables)
    assert rec.capturable, rec.not_capturable_because
    for gs in steps:
        rec.device_run(*gs)
        ref.apply_gradients(zip([accel.constant(g) for g in gs], twins, strict=True))
    _assert_same(cp, opt, ref, variables, twins)


@pytest.mark.gpu
@pytest.mark.parametrize("label,make,dtype", GPU_CASES, ids=[c[0] for c in GPU_CASES])
def test_gpu_device_run_in_a_cuda_graph(label, make, dtype):
    """Step 1 eagerly (warm-up: compiles, builds the tables, moves the counter), step 2 captured, steps 2..5 by
    graph launches with new gradient values copied into the same buffers before each launch."""
    if not backend.has_gpu():
        pytest.skip("needs CuPy and a CUDA device")
    cp, variables, twins, opt, ref, steps = _gpu_setup(make, dtype)
    rec = types.SimpleNamespace()
    bufs = [g.copy() for g in steps[0]]
    opt._capturable_replay(rec, [accel.constant(g) for g in bufs], variables)
    assert rec.capturable, rec.not_capturable_because
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        rec.device_run(*bufs)
        key = rec.device_key()
        stream.synchronize()
        stream.begin_capture()
        rec.device_run(*bufs)
        graph = stream.end_capture()
        for gs in steps[1:]:
            for b, g in zip(bufs, gs, strict=True):
                b[...] = g
            graph.launch(stream)
        stream.synchronize()
    assert rec.device_key() == key
    for gs in steps:
        ref.apply_gradients(zip([accel.constant(g) for g in gs], twins, strict=True))
    _assert_same(cp, opt, ref, variables, twins)
    fresh = [b.copy() for b in bufs]  # new gradient buffers during a capture: the tables are copied from pinned
    with stream:  # memory by a copy node of the graph
        stream.begin_capture()
        rec.device_run(*fresh)
        graph = stream.end_capture()
        graph.launch(stream)
        stream.synchronize()
    ref.apply_gradients(zip([accel.constant(g) for g in steps[-1]], twins, strict=True))  # fresh holds these
    _assert_same(cp, opt, ref, variables, twins)


@pytest.mark.gpu
def test_gpu_traced_step_is_capturable_and_device_run_continues_it():
    if not backend.has_gpu():
        pytest.skip("needs CuPy and a CUDA device")
    cp, variables, twins, opt, ref, steps = _gpu_setup(lambda: O.AdamW(1e-2), "float32")
    grads = [accel.constant(g) for g in steps[0]]
    fn = _traced_update(opt, ref, grads, variables, twins)
    assert fn.capturable, fn.not_capturable_because
    before = fused.launches["adam_multi_update_dev"]
    fn.device_run(*[g._data for g in grads])
    ref.apply_gradients(zip(grads, twins, strict=True))
    assert fused.launches["adam_multi_update_dev"] == before + 1
    for v, w in zip(variables, twins, strict=True):
        np.testing.assert_array_equal(cp.asnumpy(v._data), cp.asnumpy(w._data))
    assert int(opt.iterations.numpy()) == 4
