"""The CPU-shim kernels under AddressSanitizer and ThreadSanitizer (make test-sanitize).

Each case rebuilds libkernels_cpu.so with -fsanitize=..., then runs `subset()`
in a fresh Python with the sanitizer runtime preloaded. Clean builds must run
clean; builds with a planted bug must be reported:
  ACCEL_BUG_OOB          grid-stride loop runs to i <= n  -> ASan heap-buffer-overflow
  ACCEL_BUG_MISSING_SYNC block_reduce drops its last barrier -> TSan data race
TSan sees races inside a block only (blocks run one after another).
"""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import cpu_build

pytestmark = [pytest.mark.sanitize, pytest.mark.skipif(not shutil.which("g++"), reason="g++ not installed")]

HERE = pathlib.Path(__file__).resolve().parent


def subset(lib_path):
    """Kernels of every launch style; runs inside the sanitized subprocess."""
    lib = cpu_build.ShimLib(lib_path)
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    n = 1000
    lib.launch("relu_bwd<float>", 3, 128, np.empty(n, np.float32), f32(n), f32(n), n)
    lib.launch(
        "gelu_bwd<__half>",
        3,
        128,
        np.empty(n, np.float16),
        f32(n).astype(np.float16),
        f32(n).astype(np.float16),
        n,
    )
    p, g, m, v = f32(n), f32(n), f32(n), np.abs(f32(n))
    lib.launch("adam_update<float>", 2, 64, p, m, v, None, g, 1e-3, 0.1, 0.001, 1e-7, 1e-3, 0.0, n)
    rows, cols = 3, 100
    lib.launch(
        "softmax_xent_sparse_bwd<float, int>",
        2,
        64,
        np.empty((rows, cols), np.float32),
        f32(rows, cols),
        rng.integers(0, cols, rows).astype(np.int32),
        f32(rows),
        1,
        rows,
        cols,
        threaded=True,
    )
    lib.launch(
        "softmax_xent_sparse_fwd<float, int>",
        2,
        64,
        np.empty(rows, np.float32),
        f32(rows, cols),
        rng.integers(0, cols, rows).astype(np.int32),
        rows,
        cols,
        threaded=True,
    )
    lib.launch(  # warps over rows, then the block's sum (shuffles and a block reduction)
        "softmax_xent_sparse_mean_fwd<float, int>",
        1,
        64,
        np.empty(1, np.float32),
        f32(rows, cols),
        rng.integers(0, cols, rows).astype(np.int32),
        rows,
        cols,
        threaded=True,
    )
    lib.launch(
        "softmax_xent_sparse_mean_bwd<double, long long>",
        2,
        64,
        np.empty((rows, cols)),
        f32(rows, cols).astype(np.float64),
        rng.integers(0, cols, rows).astype(np.int64),
        np.ones(1),
        rows,
        cols,
        threaded=True,
    )
    lib.launch(
        "layer_norm_bwd<double>",
        2,
        64,
        np.empty((rows, cols)),
        f32(rows, cols).astype(np.float64),
        f32(rows, cols).astype(np.float64),
        np.zeros(rows),
        np.ones(rows),
        None,
        rows,
        cols,
        threaded=True,
    )
    lib.launch(
        "bias_add_bwd<float>", 2, (32, 4), np.empty(cols, np.float32), f32(50, cols), 50, cols, threaded=True
    )
    idx = rng.integers(0, 10, 40).astype(np.int64)
    lib.launch(
        "scatter_add_rows<float, long long>", 2, 64, np.zeros((10, 7), np.float32), idx, f32(40, 7), 40, 7, 10
    )
    gemm_subset(lib_path)
    print("subset ok")


def gemm_subset(lib_path):
    """gemm_tiled with tails in m, n and k (exactly sized buffers) and two k steps, so a missing barrier
    between them races and a tail read past k leaves the buffer."""
    lib = cpu_build.ShimLib(lib_path)
    rng = np.random.default_rng(1)
    m, k, n = 33, 40, 20
    for dt, ct in ((np.float32, "float"), (np.float64, "double")):
        a, b = rng.standard_normal((m, k)).astype(dt), rng.standard_normal((k, n)).astype(dt)
        c = np.empty((m, n), dt)
        lib.launch("gemm_tiled<%s>" % ct, 1, 256, c, a, b, m, n, k, k, n, n, 0, 0, k, 0, threaded=True)
        ct_ = np.empty((n, m), dt)  # c^T = b^T a^T from the same buffers, both transposed
        lib.launch("gemm_tiled<%s>" % ct, 1, 256, ct_, b, a, n, m, k, n, k, m, 1, 1, k, 0, threaded=True)
        parts = np.empty((2, m, n), dt)  # split k: 32 + 8 of k, then the sum of the partials
        lib.launch("gemm_tiled<%s>" % ct, (1, 1, 2), 256, parts, a, b, m, n, k, k, n, n, 0, 0, 32, m * n,
                   threaded=True)
        lib.launch("gemm_sum_splits<%s>" % ct, 2, 64, c, parts, 2, m * n)
    print("gemm subset ok")


CASES = [
    # (sanitizer, planted bug, expected exit status, text(s) the report must contain, function run)
    ("address", None, 0, "subset ok", "subset"),
    ("thread", None, 0, "subset ok", "subset"),
    ("address", "ACCEL_BUG_OOB", "nonzero", "heap-buffer-overflow", "subset"),
    ("thread", "ACCEL_BUG_MISSING_SYNC", 66, "data race", "subset"),
    # the same mutations caught in the GEMM alone (its k-tail check and its barrier after a k step)
    ("address", "ACCEL_BUG_OOB", "nonzero", ("heap-buffer-overflow", "in void gemm_tiled<"), "gemm_subset"),
    ("thread", "ACCEL_BUG_MISSING_SYNC", 66, ("data race", "void gemm_tiled<"), "gemm_subset"),
]


@pytest.mark.parametrize(
    "sanitizer,bug,rc,text,which", CASES, ids=["%s-%s-%s" % (c[0], c[1] or "clean", c[4]) for c in CASES]
)
def test_sanitized_run(sanitizer, bug, rc, text, which):
    lib = cpu_build.build(sanitize=sanitizer, defines=(bug,) if bug else ())
    env = dict(
        os.environ,
        LD_PRELOAD=cpu_build.runtime_library(sanitizer),
        ASAN_OPTIONS="detect_leaks=0",
        TSAN_OPTIONS="halt_on_error=1 exitcode=66",
    )
    code = "import sys; sys.path[:0] = %r; import test_sanitizers as t; t.%s(%r)" % (
        [str(HERE), str(cpu_build.ROOT)],
        which,
        str(lib),
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    if rc == "nonzero":
        assert proc.returncode != 0, out[-3000:]
    else:
        assert proc.returncode == rc, out[-3000:]
    for t in (text,) if isinstance(text, str) else text:
        assert t in out, out[-3000:]
