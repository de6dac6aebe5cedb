"""accel.fused against the real CuPy 14 module, without a GPU.

- every `cp.<name>` and array attribute fused.py uses exists in cupy;
- cupy.RawModule takes our (code, options, name_expressions) and RawKernel
  calls take shared_mem=;
- each family goes through CuPy's own RawModule compile pipeline (its header
  paths and extra options such as -ftz=true) to a CUBIN: only the arch lookup
  and the final driver load are replaced;
- the wrappers reject bad arguments before any launch (cupy "meta arrays" over
  a fake pointer, which need no device).
It does not show that the kernels run or are right on a GPU.
"""

import ast
import functools
import os
import pathlib
import re
import types

import numpy as np
import pytest

from accel import kernel_registry as reg

cupy = pytest.importorskip("cupy", reason="cupy not installed: pip install 'cupy-cuda13x==14.2.*'")

from accel import fused  # noqa: E402

FUSED_SRC = pathlib.Path(fused.__file__)


def cp_names():
    """Dotted names used as cp.<...> in fused.py (cp = the cupy module)."""
    names = set()
    for node in ast.walk(ast.parse(FUSED_SRC.read_text())):
        if isinstance(node, ast.Attribute):
            parts, cur = [node.attr], node.value
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "cp":
                names.add(".".join(reversed(parts)))
    # keep only the longest chains (cp.cuda.Device covers cp.cuda)
    return sorted(n for n in names if not any(m.startswith(n + ".") for m in names))


def test_fused_uses_only_names_cupy_has():
    names = cp_names()
    assert "RawModule" in names and "cuda.Device" in names, names  # the scan itself works
    missing = []
    for n in names:
        try:
            functools.reduce(getattr, n.split("."), cupy)
        except AttributeError:
            missing.append(n)
    assert missing == []


def test_scan_catches_a_missing_name():
    with pytest.raises(AttributeError):
        functools.reduce(getattr, "cuda.NoSuchThing".split("."), cupy)


@pytest.mark.parametrize(
    "attr", ["flags", "data", "view", "fill", "size", "strides", "dtype", "shape", "ndim", "device"]
)
def test_ndarray_attributes_used_exist(attr):
    assert hasattr(cupy.ndarray, attr)


def _documented_args(obj):
    doc = obj.__doc__ or ""
    return set(re.findall(r"^\s{4}(\w+) \(", doc, re.M))


def test_rawmodule_takes_our_arguments():
    assert {"code", "options", "name_expressions"} <= _documented_args(cupy.RawModule)
    assert hasattr(cupy.RawModule, "get_function")
    assert "shared_mem" in (cupy.RawKernel.__call__.__doc__ or "")
    assert "Device" in dir(cupy.cuda) and "attributes" in dir(cupy.cuda.Device)


# ---- CuPy's own compile pipeline, offline ----


class _KeepCubin(cupy.cuda.function.Module):
    def load(self, cubin):  # instead of cuModuleLoadData
        self.cubin = cubin


def cupy_compile(code, options, names, arch="80"):
    """What cupy.RawModule(code=, options=, name_expressions=) compiles, for `arch`."""
    from cupy._core import core
    from cupy.cuda import compiler

    saved = compiler._get_arch, compiler._get_arch_for_options_for_nvrtc, compiler.function
    compiler._get_arch = lambda: arch
    compiler._get_arch_for_options_for_nvrtc = saved[1].__wrapped__
    compiler.function = types.SimpleNamespace(Module=_KeepCubin, LinkState=cupy.cuda.function.LinkState)
    try:
        return core.compile_with_cache(
            code,
            tuple(options),
            prepend_cupy_headers=False,
            backend="nvrtc",
            translate_cucomplex=False,
            enable_cooperative_groups=False,
            name_expressions=tuple(names),
            log_stream=None,
            jitify=False,
        )
    finally:
        compiler._get_arch, compiler._get_arch_for_options_for_nvrtc, compiler.function = saved


@pytest.fixture(autouse=True)
def _in_memory_cache(monkeypatch):
    monkeypatch.setenv("CUPY_CACHE_IN_MEMORY", "1")  # a stale disk cache must not hide a compile


@pytest.mark.parametrize("family", list(reg.FAMILIES))
def test_family_compiles_through_cupy_rawmodule_pipeline(family):
    names = reg.name_expressions(family)
    mod = cupy_compile(reg.source(family), reg.options(family), names)
    assert set(mod.mapping) == set(names)
    for ne in names:
        assert mod.mapping[ne].encode() in mod.cubin


def test_cupy_pipeline_rejects_broken_source():
    from cupy.cuda.compiler import CompileException

    with pytest.raises(CompileException, match="undefined_fn"):
        cupy_compile(
            reg.source("accumulate") + "\n__global__ void k(float* y) { y[0] = undefined_fn(); }\n",
            reg.options("accumulate"),
            [],
        )


# ---- validation before launch, on meta arrays (no device needed) ----


def meta(shape, dtype=np.float32):
    n = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    mem = cupy.cuda.UnownedMemory(0x1000, n, None, 0)
    return cupy.ndarray(shape, dtype, memptr=cupy.cuda.MemoryPointer(mem, 0))


A = lambda *s, dt=np.float32: meta(s, dt)  # noqa: E731
BAD_CALLS = [
    # (call, expected message)
    (
        lambda: fused.activation_bwd("relu", np.zeros(4, np.float32), A(4)),
        "g must be a cupy.ndarray, got ndarray",
    ),
    (lambda: fused.activation_bwd("relu", A(4), A(5)), r"saved has shape \(5,\), expected \(4,\)"),
    (lambda: fused.activation_bwd("relu", A(4, dt=np.int32), A(4, dt=np.int32)), "g has dtype int32"),
    (
        lambda: fused.activation_bwd("relu", A(4), A(4, dt=np.float64)),
        "saved has dtype float64, expected float32",
    ),
    (lambda: fused.activation_bwd("relu", A(4, 4), A(4, 8)[:, ::2]), "saved must be C-contiguous"),
    (lambda: fused.activation_bwd("swish2", A(4), A(4)), "unknown kernel 'swish2'"),
    (
        lambda: fused.softmax_xent_bwd(A(3, 5), A(3, dt=np.float32), A(3), sparse=True),
        "labels has dtype float32",
    ),
    (
        lambda: fused.softmax_xent_bwd(A(3, 5), A(4, dt=np.int32), A(3), sparse=True),
        r"labels has shape \(4,\)",
    ),
    (
        lambda: fused.softmax_xent_bwd(A(3, 5), A(3, 5), A(5), sparse=False),
        r"g has shape \(5,\), expected \(3,\)",
    ),
    (lambda: fused.softmax_xent_bwd(A(15), A(15), A(15), sparse=False), "logits must be 2-D"),
    (lambda: fused.bias_add_bwd(A(4, 3, dt=np.float16)), "g has dtype float16"),
    (lambda: fused.dropout_bwd(A(4), A(4), 2.0), "mask has dtype float32, expected bool"),
    (lambda: fused.layer_norm_bwd(A(2, 3), A(2, 3), A(3), A(2)), "mean has 3 elements, expected 2"),
    (
        lambda: fused.adam_update(A(4), A(4), A(4), A(3), None, 1e-3, 0.9, 0.999, 1e-7, 1e-3),
        r"v has shape \(3,\)",
    ),
    (
        lambda: fused.adam_update(A(4), A(4), A(4), A(4), A(4, dt=np.float64), 1e-3, 0.9, 0.999, 1e-7, 1e-3),
        "vhat has dtype float64",
    ),
    (
        lambda: fused.adam_multi_update([A(4)], [A(4)], [A(4)], [], None, 1e-3, 0.9, 0.999, 1e-7, 1e-3),
        "vs has 0 tensors, expected 1",
    ),
    (lambda: fused.sgd_update(A(4), A(4), 0.1, m=A(2)), r"m has shape \(2,\)"),
    (lambda: fused.rmsprop_update(A(4), A(4), A(4), 0.1, 0.9, 1e-7, mg=A(4, dt=np.float16)), "mg has dtype"),
    (lambda: fused.adagrad_update(A(4), A(4, dt=np.float64), A(4), 0.1, 1e-7), "g has dtype float64"),
    (lambda: fused.lion_update(A(4, 2)[:, :1], A(4, 1), A(4, 1), 0.1, 0.9, 0.99), "p must be C-contiguous"),
    (lambda: fused.accumulate_(A(4), A(2, 2)), r"b has shape \(2, 2\)"),
    (lambda: fused.scatter_add_rows(A(5, 3), A(4, dt=np.float32), A(4, 3)), "idx has dtype float32"),
    (
        lambda: fused.scatter_add_rows(A(5, 3), A(4, dt=np.int64), A(4, 2)),
        r"src has shape \(4, 2\), expected \(4, 3\)",
    ),    (lambda: fused.gemm(np.zeros((3, 4), np.float32), A(4, 5)), "gemm: a must be a cupy.ndarray, got ndarray"),
    (lambda: fused.gemm(A(3, 4), A(4)), r"gemm: b must be 2-D, got shape \(4,\)"),
    (lambda: fused.gemm(A(3, 4, dt=np.float16), A(4, 5, dt=np.float16)), "a has dtype float16, expected float32"),
    (lambda: fused.gemm(A(3, 4), A(4, 5, dt=np.float64)), "b has dtype float64, expected float32"),
    (lambda: fused.gemm(A(3, 4), A(5, 5)), r"a has shape \(3, 4\) and b \(5, 5\), expected b.shape\[0\] == a.shape"),
    (lambda: fused.gemm(A(3, 8)[:, ::2], A(4, 5)), r"a has strides \(32, 8\) \(itemsize 4\), expected a row-major"),
    (lambda: fused.gemm(A(3, 4), A(4, 5), out=A(5, 3)), r"gemm: out has shape \(5, 3\), expected \(3, 5\)"),
    (lambda: fused.gemm(A(3, 4), A(4, 5), out=A(3, 5, dt=np.float64)), "out has dtype float64"),
    (lambda: fused.gemm(A(3, 4), A(4, 5), out=A(5, 3).T), "out must be C-contiguous"),
    (lambda: fused.gemm(A(3, 4), A(4, 5), out=A(3, 5)), "out overlaps a in memory"),  # meta arrays share 0x1000
    (lambda: fused.gemm_prepare(np.int32), "gemm_prepare: dtype is int32, expected float32 or float64"),
]


@pytest.mark.parametrize("call,msg", BAD_CALLS, ids=[str(i) for i in range(len(BAD_CALLS))])
def test_wrappers_reject_bad_arguments_before_launch(call, msg):
    before = dict(fused.launches)
    with pytest.raises(ValueError, match=msg):
        call()
    assert dict(fused.launches) == before


def test_gemm_serves_cupy_layouts():
    assert fused.gemm_serves(A(3, 4), A(4, 5))
    assert fused.gemm_serves(A(4, 3).T, A(5, 4).T)
    assert fused.gemm_serves(A(3, 9)[:, 2:6], A(4, 5, dt=np.float32))
    assert fused.gemm_serves(A(3, 4, dt=np.float64), A(4, 5, dt=np.float64))
    assert not fused.gemm_serves(A(3, 8)[:, ::2], A(4, 5))
    assert not fused.gemm_serves(A(3, 4), np.zeros((4, 5), np.float32))  # mixed array modules
    assert "both cupy" in fused._gemm_problem(A(3, 4), np.zeros((4, 5), np.float32))
    assert not fused.gemm_serves(A(3, 4), A(4, 5, dt=np.float64))


def test_qualifies():
    x = A(4)
    assert fused.qualifies(x, A(4))
    assert not fused.qualifies(x, A(5))
    assert not fused.qualifies(x, A(4, dt=np.float64))
    assert not fused.qualifies(x, np.zeros(4, np.float32))
    assert not fused.qualifies(A(4, 2)[:, :1])
    assert not fused.qualifies(A(4, dt=np.int32))
    from accel import backend

    with backend.fused("never"):
        assert not fused.qualifies(x, A(4))


def test_no_cupy_import_outside_backend():
    for f in ("kernel_registry.py", "fused.py", "cpu_kernels.py"):
        src = (pathlib.Path(fused.__file__).parent / f).read_text()
        assert not re.search(r"^\s*(import cupy|from cupy)", src, re.M), f
    assert os.path.exists(FUSED_SRC)
