"""accel's own GEMM (accel.fused.gemm, kernels/gemm.cu) against cupy.matmul (cuBLAS) on the GEMMs of one
MLP training step (784-512-512-10, batch 32 by default): per shape, and the whole set eager vs replayed
from one CUDA graph (which cuBLAS cannot join). Needs a CUDA device; medians of CUDA-event timings.

    python -m bench.bench_gemm [--batch 32] [--reps 200] [--dtype float32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

from bench.workloads import LAYERS


def step_gemms(batch=32, layers=LAYERS):
    """[(name, (m, k, n), transpose a, transpose b)]: forward x@W, then per layer dW = x^T@dy and (but the
    first) dx = dy@W^T."""
    out = []
    for i, (a, b) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
        out.append(("fwd %d" % (i + 1), (batch, a, b), False, False))
    for i in reversed(range(len(layers) - 1)):
        a, b = layers[i], layers[i + 1]
        out.append(("dW %d (x^T@dy)" % (i + 1), (a, batch, b), True, False))
        if i:
            out.append(("dx %d (dy@W^T)" % (i + 1), (batch, b, a), False, True))
    return out


def _operands(cp, m, k, n, ta, tb, dt, rng):
    a = cp.asarray(rng.standard_normal((k, m) if ta else (m, k)).astype(dt))
    b = cp.asarray(rng.standard_normal((n, k) if tb else (k, n)).astype(dt))
    return (a.T if ta else a), (b.T if tb else b)


def _time(cp, fn, reps):
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    fn()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) * 1e3)  # microseconds
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    from accel import backend

    if not backend.has_gpu():
        raise SystemExit("bench_gemm: needs a CUDA device and CuPy")
    from accel import fused

    cp, dt, rng = backend.cupy(), np.dtype(args.dtype), np.random.default_rng(0)
    fused.gemm_prepare(dt)
    rows, calls = [], []
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        for name, (m, k, n), ta, tb in step_gemms(args.batch):
            a, b = _operands(cp, m, k, n, ta, tb, dt, rng)
            out = cp.empty((m, n), dt)
            calls.append((a, b, out))
            splits = fused._gemm_splits(m, n, k, fused._multiprocessors())[0]
            own = _time(cp, lambda a=a, b=b, out=out: fused.gemm(a, b, out=out), args.reps)
            blas = _time(cp, lambda a=a, b=b, out=out: cp.matmul(a, b, out=out), args.reps)
            rows.append({"gemm": name, "m,k,n": [m, k, n], "splits": splits, "accel_us": own, "cublas_us": blas})

        def eager():
            for a, b, out in calls:
                fused.gemm(a, b, out=out)

        eager()
        pool = cp.cuda.MemoryPool()
        with cp.cuda.using_allocator(pool.malloc):
            stream.begin_capture()
            try:
                eager()
            finally:
                graph = stream.end_capture()
        whole = {"eager_us": _time(cp, eager, args.reps),
                 "graph_us": _time(cp, lambda: graph.launch(stream), args.reps),
                 "cublas_eager_us": _time(cp, lambda: [cp.matmul(a, b, out=o) for a, b, o in calls], args.reps)}
    dev = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"].decode()
    print("%s, %s, batch %d, medians of %d" % (dev, dt, args.batch, args.reps))
    print("%-18s %-16s %6s %10s %10s" % ("GEMM", "m, k, n", "splits", "accel us", "cuBLAS us"))
    for r in rows:
        print("%-18s %-16s %6d %10.1f %10.1f" % (r["gemm"], r["m,k,n"], r["splits"], r["accel_us"], r["cublas_us"]))
    print("all %d: accel eager %.1f us, accel in one CUDA graph %.1f us, cuBLAS eager %.1f us"
          % (len(rows), whole["eager_us"], whole["graph_us"], whole["cublas_eager_us"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev, "dtype": str(dt), "batch": args.batch, "rows": rows, "step": whole}, f,
                      indent=1)


if __name__ == "__main__":
    main()
