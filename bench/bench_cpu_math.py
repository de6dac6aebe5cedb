"""Bandwidth of activation backward loops built on accel.cpu_math (vectorizable float32
exp/erf/tanh/sigmoid) against a plain copy, and against the same loops on numba's scalar libm.

    python -m bench.bench_cpu_math [--n 16M] [--reps 5] [--no-libm]

gx = g * f'(x) on n float32 elements: GB/s counts 3 arrays x 4 bytes x n (read g and x, write gx);
the copy np.copyto(dst, src) counts 2 x 4 x n. Median of --reps timed runs after one warm-up run.
"err" is max |gx - ref| / max |ref| against a float64 NumPy reference (math.erf for gelu).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from accel import cpu_math

F32 = np.float32
_H, _1, _2 = F32(0.5), F32(1), F32(2)
_S2 = F32(1 / math.sqrt(2))
_INV_SQRT_2PI = F32(1 / math.sqrt(2 * math.pi))
_C = F32(math.sqrt(2 / math.pi))
_2C = F32(2 * math.sqrt(2 / math.pi))
_K = F32(0.044715)
_K3 = F32(3 * 0.044715)


def loops(numba, m):
    """{name: (cpu_math loop, libm loop or None)}; every loop is gx[i] = g[i] * f'(x[i]) in float32.

    "gelu/shared exp" gets erf(x/sqrt2) and exp(-x^2/2) from one erf_gauss_f32 call (one exp instead of
    two); "gelu_tanh/sigmoid" is the same derivative written with sigmoid(2z) instead of tanh(z).
    """
    exp, erf, erf_gauss, tanh, sigmoid = m.exp_f32, m.erf_f32, m.erf_gauss_f32, m.tanh_f32, m.sigmoid_f32
    jit = numba.njit(error_model="numpy")

    @jit
    def gelu(gx, g, s):  # d/dx 0.5 x (1 + erf(x/sqrt2)) = Phi(x) + x phi(x)
        for i in range(gx.size):
            x = s[i]
            gx[i] = g[i] * (_H * (_1 + erf(x * _S2)) + x * _INV_SQRT_2PI * exp(-_H * x * x))

    @jit
    def gelu_shared_exp(gx, g, s):  # erf(z) and exp(-z^2) from one call: one exp per element
        for i in range(gx.size):
            x = s[i]
            e, gauss = erf_gauss(x * _S2)
            gx[i] = g[i] * (_H * (_1 + e) + x * _INV_SQRT_2PI * gauss)

    @jit
    def gelu_tanh(gx, g, s):
        for i in range(gx.size):
            x = s[i]
            x2 = x * x
            t = tanh(_C * (x + _K * x2 * x))
            gx[i] = g[i] * (_H * (_1 + t) + _H * x * (_1 - t * t) * _C * (_1 + _K3 * x2))

    @jit
    def gelu_tanh_sigmoid(gx, g, s):  # 0.5 (1 + tanh z) = sigmoid(2z), 1 - tanh(z)^2 = 4 sg (1 - sg)
        for i in range(gx.size):
            x = s[i]
            x2 = x * x
            sg = sigmoid(_2C * (x + _K * x2 * x))
            gx[i] = g[i] * (sg + _2 * x * sg * (_1 - sg) * _C * (_1 + _K3 * x2))

    @jit
    def silu(gx, g, s):
        for i in range(gx.size):
            x = s[i]
            sg = sigmoid(x)
            gx[i] = g[i] * sg * (_1 + x * (_1 - sg))

    @jit
    def softplus(gx, g, s):  # softplus' = sigmoid
        for i in range(gx.size):
            gx[i] = g[i] * sigmoid(s[i])

    # the same formulas on numba's math.* (scalar libm calls), still float32 in and out
    @jit
    def gelu_libm(gx, g, s):
        for i in range(gx.size):
            x = s[i]
            gx[i] = g[i] * (_H * (_1 + math.erf(x * _S2)) + x * _INV_SQRT_2PI * math.exp(-_H * x * x))

    @jit
    def gelu_tanh_libm(gx, g, s):
        for i in range(gx.size):
            x = s[i]
            x2 = x * x
            t = math.tanh(_C * (x + _K * x2 * x))
            gx[i] = g[i] * (_H * (_1 + t) + _H * x * (_1 - t * t) * _C * (_1 + _K3 * x2))

    @jit
    def silu_libm(gx, g, s):
        for i in range(gx.size):
            x = s[i]
            sg = _1 / (_1 + math.exp(-x))
            gx[i] = g[i] * sg * (_1 + x * (_1 - sg))

    @jit
    def softplus_libm(gx, g, s):
        for i in range(gx.size):
            x = s[i]
            e = math.exp(-abs(x))
            gx[i] = g[i] * ((_1 if x > 0 else e) / (_1 + e))

    return {
        "gelu": (gelu, gelu_libm),
        "gelu/shared exp": (gelu_shared_exp, None),
        "gelu_tanh": (gelu_tanh, gelu_tanh_libm),
        "gelu_tanh/sigmoid": (gelu_tanh_sigmoid, None),
        "silu": (silu, silu_libm),
        "softplus": (softplus, softplus_libm),
    }


def references(g, x):
    g, x = g.astype(np.float64), x.astype(np.float64)
    with np.errstate(over="ignore"):
        sg = 1 / (1 + np.exp(-x))
    cdf = 0.5 * (1 + np.frompyfunc(math.erf, 1, 1)(x / math.sqrt(2)).astype(np.float64))
    c, k = math.sqrt(2 / math.pi), 0.044715
    t = np.tanh(c * (x + k * x**3))
    return {
        "gelu": g * (cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)),
        "gelu_tanh": g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * k * x * x)),
        "silu": g * sg * (1 + x * (1 - sg)),
        "softplus": g * sg,
    }


def median_time(fn, reps):
    fn()  # warm-up (and compile)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _size(s):
    s = s.strip().upper()
    mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(s[-1:], 1)
    return int(float(s.rstrip("KMG")) * mult)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=_size, default=16 * 2**20, help="elements (16M default; K/M/G suffixes)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-libm", action="store_true", help="skip the numba math.* baseline loops")
    args = ap.parse_args(argv)

    m = cpu_math.build()
    table = loops(m.numba, m)
    n = args.n
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 3).astype(np.float32)  # covers the saturated tails too
    g = rng.standard_normal(n).astype(np.float32)
    gx = np.empty_like(x)
    refs = references(g, x)

    dst = np.empty_like(x)
    t_copy = median_time(lambda: np.copyto(dst, x), args.reps)
    copy_gbs = 2 * 4 * n / t_copy / 1e9
    print("n = %d float32 (%.0f MiB per array), median of %d" % (n, 4 * n / 2**20, args.reps))
    print("%-30s %9s %8s %9s %10s" % ("loop", "ms", "GB/s", "x copy", "err"))
    print("%-30s %9.2f %8.2f %9.2f %10s" % ("copy (np.copyto)", t_copy * 1e3, copy_gbs, 1.0, "-"))
    for name, (fast, libm) in table.items():
        variants = [("%s (cpu_math)" % name, fast)]
        if libm is not None and not args.no_libm:
            variants.append(("%s (numba libm)" % name, libm))
        for label, fn in variants:
            t = median_time(lambda fn=fn: fn(gx, g, x), args.reps)
            ref = refs[name.split("/")[0]]
            err = np.max(np.abs(gx - ref)) / np.max(np.abs(ref))
            gbs = 3 * 4 * n / t / 1e9
            print("%-30s %9.2f %8.2f %9.2f %10.2e" % (label, t * 1e3, gbs, gbs / copy_gbs, err))


if __name__ == "__main__":
    main()
