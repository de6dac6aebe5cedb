"""accel.function's fused groups as CUDA: the kernels that real captured graphs produce (the tape chain, an
MLP training step, activations with bias adds and masks, selects on comparisons) compile with NVRTC for
sm_75..sm_120 without spills, and the same source, run on the CPU through kernels/cpu_shim, gives what
the plan's numba loop gives."""

import ctypes
import hashlib
import pathlib
import subprocess

import numpy as np
import pytest

import accel as tf
from accel import cuda_plan

nvrtc = pytest.importorskip("nvrtc_ctypes", reason="tests/kernels/nvrtc_ctypes.py not importable")

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARCHS = ("75", "80", "86", "90", "100", "120")
MAX_REGS = 64
_rng = np.random.default_rng(0)


def _c(*shape):
    return tf.constant(_rng.standard_normal(shape).astype(np.float32))


def _tape_chain(x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = x
        for i in range(30):
            h = [lambda v: v * 1.0001, lambda v: v + 0.001, tf.tanh][i % 3](h)
        loss = tf.reduce_sum(h)
    return tape.gradient(loss, x)


def _mlp_grads(x, w, b):
    with tf.GradientTape() as tape:
        tape.watch([w, b])
        h = tf.nn.relu(tf.matmul(x, w) + b)
        loss = tf.reduce_mean(tf.square(h - 0.5))
    return tape.gradient(loss, [w, b])


def _activations(x, b):
    y = tf.nn.gelu(x + b) * tf.sigmoid(x) - tf.nn.leaky_relu(x, 0.3)
    return tf.where(x > 0.1, y, tf.nn.elu(x) * 2.0)


_w = tf.Variable(_rng.standard_normal((5, 7)).astype(np.float32))
_m = tf.Variable(np.zeros((5, 7), np.float32))


def _sgd_momentum_step(x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.tanh(tf.matmul(x, _w)))
    g = tape.gradient(loss, _w)
    _m.assign(0.9 * _m - 0.01 * g)  # both updates are stores of fused kernels: written in place
    _w.assign_add(_m)
    return loss


GRAPHS = [
    ("sgd_momentum_stores", _sgd_momentum_step, lambda: [_c(8, 5)]),
    ("tape_chain", _tape_chain, lambda: [_c(16)]),
    ("mlp_grads", _mlp_grads, lambda: [_c(8, 5), _c(5, 7), _c(7)]),
    ("activations", _activations, lambda: [_c(6, 4), _c(4)]),
]


def _kernels():
    out = []
    for name, fn, args in GRAPHS:
        f = tf.function(fn, jit_compile=True)
        f(*args())
        for cf in f._cache.values():
            for plan in cf.plans:
                out += [(name, k) for k in plan.kernels]
    return out


KERNELS = _kernels()


def test_graphs_produce_fused_kernels():
    assert {name for name, _ in KERNELS} == {g[0] for g in GRAPHS}, [k.describe() for _, k in KERNELS]


LIB = nvrtc.find_libnvrtc()
INC = nvrtc.find_cuda_include()


@pytest.mark.skipif(LIB is None or INC is None, reason="NVRTC (pip install nvidia-cuda-nvrtc) not found")
@pytest.mark.parametrize("arch", ARCHS)
def test_fused_kernels_compile_with_nvrtc_without_spills(arch):
    for graph, k in KERNELS:
        src, name = cuda_plan.group_source(k)  # what accel.cuda_plan hands CuPy's NVRTC, with its options
        names = ["%s<%s>" % (name, t) for t in ("float", "double", "__half")]
        result = nvrtc.NVRTC(LIB).compile(src, ["-arch=sm_%s" % arch, "-I" + INC, "-Xptxas=-v",
                                                *cuda_plan.GROUP_OPTIONS], names, name + ".cu")
        usage = nvrtc.parse_ptxas(result.log)
        for ne in names:
            u = usage[result.lowered[ne]]
            assert not (u["spill_stores"] or u["spill_loads"]), "%s %s: spills" % (graph, ne)
            assert u["regs"] <= MAX_REGS, "%s %s: %d registers" % (graph, ne, u["regs"])


def _shim_lib(k):
    """The group's CUDA source built for the CPU with one C entry point per float type."""
    src, name = k.cuda_source()
    build = ROOT / "build" / "cpu_shim" / "fused"
    build.mkdir(parents=True, exist_ok=True)
    params = ["%s o%d" % ("bool*" if dt == np.bool_ else "T*", i) for i, dt in enumerate(k.out_dtypes)]
    params += ["const %s a%d" % ("bool*" if dt == np.bool_ else "T*", i) for i, dt in enumerate(k.in_dtypes)]
    args = ", ".join(["o%d" % i for i in range(len(k.out_dtypes))] + ["a%d" % i for i in range(len(k.in_dtypes))])
    entries = ""
    for ctype, tag in (("float", "f32"), ("double", "f64")):
        ps = ", ".join(p.replace("T*", ctype + "*") for p in params)
        entries += ('extern "C" void run_%s(%s, long long cols, long long n) {\n'
                    "  cpucuda::launch_sequential(%s<%s>, dim3(2), dim3(32), %s, cols, n);\n}\n"
                    % (tag, ps, name, ctype, args))
    text = '#include "cuda_cpu_shim.h"\n' + src + entries
    tag = hashlib.sha1(text.encode()).hexdigest()[:16]
    cpp, lib = build / (tag + ".cpp"), build / (tag + ".so")
    if not lib.exists():
        cpp.write_text(text)
        shim = ROOT / "kernels" / "cpu_shim"
        cmd = ["g++", "-std=c++20", "-O1", "-fPIC", "-shared", "-pthread", "-I", str(shim / "include"), "-I",
               str(shim), "-I", str(ROOT / "kernels"), str(cpp), "-o", str(lib)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-4000:]
    return ctypes.CDLL(str(lib))


@pytest.mark.skipif(subprocess.run(["which", "g++"], capture_output=True).returncode != 0, reason="no g++")
@pytest.mark.parametrize("index", range(len(KERNELS)), ids=["%s-%d" % (g, i) for i, (g, _) in enumerate(KERNELS)])
def test_fused_kernel_source_runs_on_the_cpu_shim_like_the_numba_loop(index):
    graph, k = KERNELS[index]
    if k.dtype != np.float32:
        pytest.skip("float32 graphs here")
    lib = _shim_lib(k)
    rng = np.random.default_rng(index)
    ins = []
    for kind, dt in zip(k.in_kinds, k.in_dtypes):
        shape = {"same": k.shape, "scalar": (1,), "row": (k.shape[-1],)}[kind]
        a = rng.standard_normal(shape) > 0 if dt == np.bool_ else rng.standard_normal(shape).astype(dt)
        ins.append(np.ascontiguousarray(a))
    want = [np.empty(k.shape, dt) for dt in k.out_dtypes]  # the outputs, then any Variables stored in place
    k.run(want, *ins)
    got = [np.empty(k.shape, dt) for dt in k.out_dtypes]
    n = int(np.prod(k.shape))
    ptrs = [ctypes.c_void_p(a.ctypes.data) for a in got + ins]
    lib.run_f32(*ptrs, ctypes.c_longlong(k.cols), ctypes.c_longlong(n))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-6, atol=2e-6, err_msg="%s: %s" % (graph, k.describe()))
