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
    print("subset ok")


CASES = [
    # (sanitizer, planted bug, expected exit status, text the report must contain)
    ("address", None, 0, "subset ok"),
    ("thread", None, 0, "subset ok"),
    ("address", "ACCEL_BUG_OOB", "nonzero", "heap-buffer-overflow"),
    ("thread", "ACCEL_BUG_MISSING_SYNC", 66, "data race"),
]


@pytest.mark.parametrize(
    "sanitizer,bug,rc,text", CASES, ids=["%s-%s" % (c[0], c[1] or "clean") for c in CASES]
)
def test_sanitized_run(sanitizer, bug, rc, text):
    lib = cpu_build.build(sanitize=sanitizer, defines=(bug,) if bug else ())
    env = dict(
        os.environ,
        LD_PRELOAD=cpu_build.runtime_library(sanitizer),
        ASAN_OPTIONS="detect_leaks=0",
        TSAN_OPTIONS="halt_on_error=1 exitcode=66",
    )
    code = "import sys; sys.path[:0] = %r; import test_sanitizers as t; t.subset(%r)" % (
        [str(HERE), str(cpu_build.ROOT)],
        str(lib),
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    if rc == "nonzero":
        assert proc.returncode != 0, out[-3000:]
    else:
        assert proc.returncode == rc, out[-3000:]
    assert text in out, out[-3000:]
