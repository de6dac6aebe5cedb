"""accel.cuda_plan without a GPU: which steps a CUDA graph can hold (read from the steps' own code), how a
plan is cut into segments, the plan run segment by segment equal to the plan run whole (the wiring a GPU
replay uses, with each segment run as it is instead of captured), and the CuPy names the capture uses.
Capture and replay themselves run in tests/test_function_gpu.py where a GPU is lent."""

import inspect

import numpy as np
import pytest

import accel as tf
from accel import cuda_plan, settings, tape
from accel.function import _graph_layout, _graph_segments, _node_refs, _OwnGemm, graph_launch_calls
from accel.ops.core import REGISTRY

rng = np.random.default_rng(0)


@pytest.mark.parametrize("name, breaks", [
    ("matmul", True),  # cuBLAS
    ("conv", True),  # im2col + GEMM, through helper functions
    ("tanh", False),
    ("add", False),
    ("relu", False),
    ("reduce_sum", False),
    ("sparse_softmax_cross_entropy_with_logits", False),
])
def test_capture_breakers_are_read_from_the_ops_code(name, breaks):
    op = REGISTRY[name]
    assert cuda_plan.breaks_capture(op.forward) is breaks
    if name == "matmul":
        assert all(cuda_plan.breaks_capture(r) for r in op.rules if r is not None)


def test_the_tapes_cotangent_sum_is_capturable():
    assert not cuda_plan.breaks_capture(tape._plus)


def _mlp(x, w1, b1, w2, b2, y):
    with tf.GradientTape() as t:
        t.watch([w1, b1, w2, b2])
        h = tf.nn.relu(tf.matmul(x, w1) + b1)
        logits = tf.matmul(h, w2) + b2
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    return (loss, *t.gradient(loss, [w1, b1, w2, b2]))


def _args():
    f32 = lambda *s: tf.constant(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    return [f32(8, 6), f32(6, 5), f32(5), f32(5, 3), f32(3), tf.constant(rng.integers(0, 3, 8).astype(np.int32))]


@pytest.mark.parametrize("jit", [False, True])
def test_segments_hold_no_gemm_and_the_plan_run_by_segments_equals_the_plan(jit):
    f = tf.function(_mlp, jit_compile=jit)
    f(*_args())
    plan = next(p for cf in f._cache.values() for p in cf.plans)
    graphs = _graph_segments(plan)
    assert graphs, plan.source
    for start, (stop, _inputs, _outputs, runner) in graphs.items():
        part = plan.nodes[start:stop]
        assert len(part) >= 2 and all(cuda_plan.capturable(n) for n in part)
        assert not any(n[0] == "op" and n[1].name == "matmul" for n in part)
        assert not runner.capture  # a host plan: the segment runs as it is
    by_segments = plan.variant("graph")
    assert plan.graphs is not None
    for _ in range(3):
        args = _args()
        arrays = [a._data for a in args]
        whole = plan.run(arrays, ())
        parts = by_segments(arrays, ())
        assert len(whole) == len(parts)
        for a, b in zip(whole, parts):
            np.testing.assert_array_equal(a, b)
        eager = _mlp(*args)
        for a, b in zip(parts, eager):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-7)


def test_segment_outputs_that_leave_the_plan_are_marked_for_copying():
    f = tf.function(_mlp, jit_compile=True)
    f(*_args())
    plan = next(p for cf in f._cache.values() for p in cf.plans)
    returned = {r[1] for r in plan.out_refs if r[0] == "slot"}
    seen = False
    for _stop, _inputs, outputs, runner in _graph_segments(plan).values():
        for sl, copy in zip(outputs, runner.copy_out):
            assert copy == (sl in plan.memory.escaped)
            if sl in returned:
                seen = True
                assert copy
    assert seen


def test_variables_passed_as_arguments_stay_outside_graphs():
    v = tf.Variable(np.ones((4, 4), np.float32))

    def step(var, x):
        var.assign(var * 0.5 + x)
        return tf.reduce_sum(tf.tanh(var * 2.0 + 1.0))

    f = tf.function(step, jit_compile=True)
    f(v, tf.constant(np.ones((4, 4), np.float32)))
    plan = next(p for cf in f._cache.values() for p in cf.plans)
    for start, (stop, *_rest) in _graph_segments(plan).items():
        for n in plan.nodes[start:stop]:
            assert not any(r[0] == "arg_var" for r in _node_refs(n)), n


# --- whole-step graphs: GEMMs on accel's own kernel inside the graph -------------------------------

def test_the_breakers_a_step_reaches_are_named():
    assert cuda_plan.breakers(REGISTRY["matmul"].forward) == {"matmul"}
    assert all(cuda_plan.breakers(r) == {"matmul"} for r in REGISTRY["matmul"].rules if r is not None)
    assert cuda_plan.breakers(REGISTRY["tanh"].forward) == frozenset()
    assert not cuda_plan.breaks_capture(REGISTRY["matmul"].forward, allowed=frozenset({"matmul"}))


def test_plans_record_the_array_form_of_the_cross_entropy_rule():
    """The rule's Tensor branch (second order) calls host-side helpers; a plan runs its array half, which a
    graph can hold."""
    rule = REGISTRY["sparse_softmax_cross_entropy_with_logits"].rules[1]
    assert cuda_plan.breaks_capture(rule) and not cuda_plan.breaks_capture(rule.array_form)
    f = tf.function(_mlp)
    f(*_args())
    plan = next(p for cf in f._cache.values() for p in cf.plans)
    assert not any(n[0] == "acall" and n[1] is rule for n in plan.nodes)


@pytest.mark.parametrize("jit", [False, True])
def test_a_whole_step_graph_holds_the_gemms_and_equals_the_plan(jit):
    f = tf.function(_mlp, jit_compile=jit)
    f(*_args())
    plan = next(p for cf in f._cache.values() for p in cf.plans)
    layout, own = _graph_layout(plan, whole_step=True)
    assert [(start, stop) for start, stop, _, _ in layout] == [(0, len(plan.nodes))], plan.source
    gemm_steps = [i for i, n in enumerate(plan.nodes) if cuda_plan.breakers(
        n[1].forward if n[0] == "op" else n[1] if n[0] == "acall" else None) == {"matmul"}]
    assert len(gemm_steps) == 5 and set(gemm_steps) <= own  # 2 forward, 3 gradients (dx of layer 1 unused)
    assert graph_launch_calls(plan, whole_step=True)["graphs"] == 1
    assert graph_launch_calls(plan, whole_step=True)["uncaptured"] == 0
    assert graph_launch_calls(plan)["uncaptured"] >= 5  # without: the GEMMs stay outside
    by_segments = plan.variant("graph_whole_step")
    (_stop, _inputs, _outputs, runner), = plan.graphs.values()
    assert not runner.capture
    for _ in range(2):
        args = _args()
        arrays = [a._data for a in args]
        whole, parts = plan.run(arrays, ()), by_segments(arrays, ())
        for a, b in zip(whole, parts):
            np.testing.assert_array_equal(a, b)


def _train_step(opt, init=None, with_variables=False, args=None):
    if init is None:
        init = [rng.standard_normal((6, 5)).astype(np.float32), np.zeros(5, np.float32),
                rng.standard_normal((5, 3)).astype(np.float32), np.zeros(3, np.float32)]
    vs = [tf.Variable(a) for a in init]

    def step(x, y):
        with tf.GradientTape() as t:
            h = tf.nn.relu(tf.matmul(x, vs[0]) + vs[1])
            logits = tf.matmul(h, vs[2]) + vs[3]
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        opt.apply_gradients(zip(t.gradient(loss, vs), vs))
        return loss

    f = tf.function(step)
    args = _args() if args is None else args
    f(args[0], args[5])  # creates the optimizer's slots: traced again on the next call, as TF
    f(args[0], args[5])
    plan = next(p for cf in f._cache.values() for p in cf.plans)
    return (plan, vs) if with_variables else plan


@pytest.mark.parametrize("make, one_graph", [
    (lambda: tf.keras.optimizers.Adam(1e-2), True),
    (lambda: tf.keras.optimizers.SGD(0.1, momentum=0.9), True),
    (lambda: tf.keras.optimizers.Adam(1e-2, clipnorm=1.0), False),  # clipping reads norms on the host
    (lambda: tf.keras.optimizers.RMSprop(1e-2), False),  # no device-step kernels
])
def test_a_training_step_is_one_graph_where_its_update_has_a_device_step(make, one_graph):
    plan = _train_step(make())
    (call,) = [i for i, n in enumerate(plan.nodes) if n[0] == "call"]
    layout, own = _graph_layout(plan, whole_step=True)
    calls = graph_launch_calls(plan, whole_step=True)
    assert (call in own) is one_graph
    if one_graph:
        assert [(a, b) for a, b, _, _ in layout] == [(0, len(plan.nodes))], plan.source
        assert calls["graphs"] == 1 and calls["uncaptured"] == 0
    else:
        assert calls["uncaptured"] >= 1 and all(not a <= call < b for a, b, _, _ in layout)


@pytest.mark.parametrize("make", [lambda: tf.keras.optimizers.Adam(1e-2), lambda: tf.keras.optimizers.SGD(0.1)])
def test_a_whole_step_graph_run_by_segments_trains_like_the_plan(make):
    """The wiring a GPU replay uses (one segment holding the GEMMs and the update; on the host the update's
    plain replay runs in it) trains bitwise like the plan run whole, step for step."""
    init = [rng.standard_normal((6, 5)).astype(np.float32), np.zeros(5, np.float32),
            rng.standard_normal((5, 3)).astype(np.float32), np.zeros(3, np.float32)]
    warm = _args()
    whole, vs_whole = _train_step(make(), init, with_variables=True, args=warm)
    parts, vs_parts = _train_step(make(), init, with_variables=True, args=warm)
    by_segments = parts.variant("graph_whole_step")
    assert len(parts.graphs) == 1
    for _ in range(3):
        args = _args()
        arrays = [args[0]._data, args[5]._data]
        a, b = whole.run(arrays, ()), by_segments(arrays, ())
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        for v, w in zip(vs_whole, vs_parts):
            np.testing.assert_array_equal(v.numpy(), w.numpy())
    assert not np.array_equal(vs_parts[0].numpy(), init[0])  # it trained


def test_batched_matmuls_stay_outside_a_whole_step_graph():
    def f(a, b):
        return tf.reduce_sum(tf.tanh(tf.matmul(a, b)) * 2.0)

    g = tf.function(f, jit_compile=True)
    a = tf.constant(rng.standard_normal((3, 4, 5)).astype(np.float32))
    b = tf.constant(rng.standard_normal((3, 5, 2)).astype(np.float32))
    g(a, b)
    plan = next(p for cf in g._cache.values() for p in cf.plans)
    _layout, own = _graph_layout(plan, whole_step=True)
    matmuls = [i for i, n in enumerate(plan.nodes) if n[0] == "op" and n[1].name == "matmul"]
    assert matmuls and not set(matmuls) & own


def test_own_gemm_namespace_uses_the_namespaces_matmul_on_the_host():
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    np.testing.assert_array_equal(_OwnGemm(np).matmul(a, b), a @ b)
    out = np.empty((3, 2))
    assert _OwnGemm(np).matmul(a, b, out=out) is out


@pytest.mark.parametrize("value, want", [("0", False), ("1", True), ("whole_step", "whole_step"),
                                         ("WHOLE_STEP", "whole_step"), ("", False)])
def test_cuda_graphs_environment_values(value, want):
    assert settings.read_environment({"ACCEL_CUDA_GRAPHS": value}).cuda_graphs == want


def test_cuda_graphs_bad_values_name_what_was_expected():
    with pytest.raises(ValueError, match="ACCEL_CUDA_GRAPHS.*whole_step.*'sometimes'"):
        settings.read_environment({"ACCEL_CUDA_GRAPHS": "sometimes"})
    with pytest.raises(ValueError, match="set_cuda_graphs.*'whole'"):
        settings.set_cuda_graphs("whole")
    assert settings.cuda_graphs_mode() in (False, True, "whole_step")


cupy = pytest.importorskip("cupy", reason="cupy is needed to check the names the capture uses")


@pytest.mark.parametrize("path", [
    "cuda.Stream.begin_capture", "cuda.Stream.end_capture", "cuda.Stream.wait_event", "cuda.Stream.record",
    "cuda.graph.Graph.launch", "cuda.MemoryPool.malloc", "cuda.using_allocator", "cuda.get_current_stream",
    "cuda.MemoryPointer.ptr", "RawModule.get_function", "copyto", "ascontiguousarray", "empty",
])
def test_every_cupy_name_the_capture_uses_exists(path):
    obj = cupy
    for part in path.split("."):
        assert hasattr(obj, part), "cupy.%s is missing" % path
        obj = getattr(obj, part)


def _signature_line(obj):
    """A Cython builtin's signature, from the first line of its docstring (inspect cannot read them)."""
    return (obj.__doc__ or "").strip().splitlines()[0]


@pytest.mark.parametrize("obj, params", [
    (lambda: cupy.cuda.Stream, ["non_blocking"]),
    (lambda: cupy.RawModule, ["code=", "options=", "name_expressions="]),
    (lambda: cupy.cuda.graph.Graph.launch, ["stream="]),
])
def test_cupy_signatures_take_the_arguments_the_capture_passes(obj, params):
    o = obj()
    try:
        names = "".join("%s=" % p for p in inspect.signature(o).parameters)
    except (TypeError, ValueError):
        names = _signature_line(o)
    for p in params:
        assert p.rstrip("=") in names, (o, names)
