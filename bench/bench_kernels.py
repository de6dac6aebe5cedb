"""Bandwidth of the CPU twins (accel.cpu_kernels): numba loop vs NumPy `out=` vs
naive NumPy, against the copy bandwidth of this machine.

    python -m bench.bench_kernels [--reps 7] [--n-act 16M] [--n-opt 10M]
    pytest bench/bench_kernels.py --benchmark-only

GB/s counts every array read and written once (an in-place update of p reads
and writes p). Implementations are interleaved in one process; medians.
Targets: elementwise backward and optimizer updates >= 0.9x copy, gelu >= 0.45x.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import time

import numpy as np

from accel import cpu_kernels as ck

N_ACT = 16 * 2**20
N_OPT = 10_000_000
COPY_BYTES = 256 * 2**20
C, K = math.sqrt(2 / math.pi), 0.044715


def _sig(x):
    return 1 / (1 + np.exp(-x))


# Naive NumPy: composite expressions, a fresh temporary per op (what a tape would do).
NAIVE_ACT = {
    "relu": lambda g, s: g * (s > 0),
    "relu6": lambda g, s: g * ((s > 0) & (s < 6)),
    "leaky_relu": lambda g, s: np.where(s > 0, g, g * 0.2),
    "elu": lambda g, s: np.where(s > 0, g, g * (s + 1)),
    "selu": lambda g, s: np.where(s < 0, g * (s + ck.SELU_SCALE * ck.SELU_ALPHA), g * ck.SELU_SCALE),
    "gelu": None,  # needs erf: no naive NumPy form
    "gelu_tanh": lambda g, s: (
        g
        * (
            0.5 * (1 + np.tanh(C * (s + K * s * s * s)))
            + 0.5 * s * (1 - np.tanh(C * (s + K * s * s * s)) ** 2) * C * (1 + 3 * K * s * s)
        )
    ),
    "silu": lambda g, s: g * _sig(s) * (1 + s * (1 - _sig(s))),
    "sigmoid": lambda g, s: g * s * (1 - s),
    "tanh": lambda g, s: g * (1 - s * s),
    "softplus": lambda g, s: g * _sig(s),
}


def _naive_adam(p, g, m, v):
    alpha = 1e-3 * math.sqrt(1 - 0.999**3) / (1 - 0.9**3)
    m[...] = m + (g - m) * 0.1
    v[...] = v + (g * g - v) * 0.001
    p[...] = p - m * alpha / (np.sqrt(v) + 1e-7)


# name: (bytes per element, {impl: fn(state)}), state = dict of arrays
def optimizer_cases():
    alpha = ck.adam_alpha(1e-3, 0.9, 0.999, 3, np.float32)
    return {
        "adam": (
            7,
            {
                "numba": lambda s: ck.adam_update_numba(
                    s["p"], s["g"], s["m"], s["v"], None, alpha, 0.9, 0.999, 1e-7, 1e-3
                ),
                "numpy_out": lambda s: ck.adam_update_numpy(
                    s["p"], s["g"], s["m"], s["v"], None, alpha, 0.9, 0.999, 1e-7, 1e-3
                ),
                "naive": lambda s: _naive_adam(s["p"], s["g"], s["m"], s["v"]),
            },
        ),
        "sgd_momentum": (
            5,
            {
                "numba": lambda s: ck.sgd_update_numba(s["p"], s["g"], 0.1, s["m"], 0.9),
                "numpy_out": lambda s: ck.sgd_update_numpy(s["p"], s["g"], 0.1, s["m"], 0.9),
                "naive": lambda s: (
                    s["m"].__setitem__(..., s["m"] * 0.9 - s["g"] * 0.1),
                    s["p"].__setitem__(..., s["p"] + s["m"]),
                ),
            },
        ),
        "rmsprop": (
            5,
            {
                "numba": lambda s: ck.rmsprop_update_numba(s["p"], s["g"], s["v"], 1e-3, 0.9, 1e-7),
                "numpy_out": lambda s: ck.rmsprop_update_numpy(s["p"], s["g"], s["v"], 1e-3, 0.9, 1e-7),
                "naive": lambda s: (
                    s["v"].__setitem__(..., 0.9 * s["v"] + 0.1 * s["g"] ** 2),
                    s["p"].__setitem__(..., s["p"] - 1e-3 * s["g"] / np.sqrt(s["v"] + 1e-7)),
                ),
            },
        ),
        "adagrad": (
            5,
            {
                "numba": lambda s: ck.adagrad_update_numba(s["p"], s["g"], s["v"], 1e-2, 1e-7),
                "numpy_out": lambda s: ck.adagrad_update_numpy(s["p"], s["g"], s["v"], 1e-2, 1e-7),
                "naive": lambda s: (
                    s["v"].__setitem__(..., s["v"] + s["g"] * s["g"]),
                    s["p"].__setitem__(..., s["p"] - 1e-2 * s["g"] / np.sqrt(s["v"] + 1e-7)),
                ),
            },
        ),
        "lion": (
            5,
            {
                "numba": lambda s: ck.lion_update_numba(s["p"], s["g"], s["m"], 1e-4, 0.9, 0.99),
                "numpy_out": lambda s: ck.lion_update_numpy(s["p"], s["g"], s["m"], 1e-4, 0.9, 0.99),
                "naive": lambda s: (
                    s["p"].__setitem__(..., s["p"] - 1e-4 * np.sign(s["m"] * 0.9 + s["g"] * 0.1)),
                    s["m"].__setitem__(..., s["m"] * 0.99 + s["g"] * 0.01),
                ),
            },
        ),
        "accumulate": (
            3,
            {
                "numba": lambda s: ck.accumulate_(s["p"], s["g"]),
                "numpy_out": lambda s: ck.accumulate_numpy(s["p"], s["g"]),
                "naive": lambda s: s["p"].__setitem__(..., s["p"] + s["g"]),
            },
        ),
    }


def _time(fn, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def copy_bandwidth(reps=7):
    src = np.ones(COPY_BYTES // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    t = statistics.median(_time(lambda: np.copyto(dst, src), reps))
    return 2 * COPY_BYTES / t / 1e9


def bench_activations(n, reps):
    rng = np.random.default_rng(0)
    g = rng.standard_normal(n, np.float32)
    x = (rng.standard_normal(n, np.float32) * 3).astype(np.float32)
    out = np.empty_like(g)
    rows = {}
    for name, saved_kind in ck.ACTIVATIONS.items():
        s = x if saved_kind == "x" else np.tanh(x) if name == "tanh" else np.clip(x, -0.99, 5)
        impls = {
            "dispatch": lambda name=name, s=s: ck.activation_bwd(name, g, s, out=out),
            "numba": lambda name=name, s=s: ck.activation_bwd_numba(name, g, s, out=out),
            "numpy_out": lambda name=name, s=s: ck.activation_bwd_numpy(name, g, s, out=out),
        }
        if NAIVE_ACT[name] is not None:
            impls["naive"] = lambda name=name, s=s: NAIVE_ACT[name](g, s)
        for f in impls.values():  # warm up (numba compile), outside the clock
            f()
        times = {k: [] for k in impls}
        for _ in range(reps):  # interleaved
            for k, f in impls.items():
                times[k] += _time(f, 1)
        rows[name] = {k: 3 * 4 * n / statistics.median(v) / 1e9 for k, v in times.items()}
        rows[name]["chosen"] = _dispatched(name)
    return rows


def _dispatched(name):
    """Which twin ck.activation_bwd runs for float32 arrays of this size (see its dispatch)."""
    if not ck.available():
        return "numpy_out"
    if name in ck.F32_ONE_PASS:
        return "numba one pass, accel.cpu_math"
    if name in ck._SPLIT:
        return "split numba/NumPy"
    return "numpy_out" if name in ck.PREFER_NUMPY else "numba"


def bench_optimizers(n, reps):
    rng = np.random.default_rng(1)
    base = {k: rng.standard_normal(n, np.float32) * 0.01 for k in "pgmv"}
    base["v"] = np.abs(base["v"])
    rows = {}
    for name, (nbytes, impls) in optimizer_cases().items():
        state = {k: a.copy() for k, a in base.items()}
        for f in impls.values():
            f(state)
        times = {k: [] for k in impls}
        for _ in range(reps):
            for k, f in impls.items():
                times[k] += _time(lambda f=f, state=state: f(state), 1)
        rows[name] = {k: nbytes * 4 * n / statistics.median(v) / 1e9 for k, v in times.items()}
    return rows


def report(copy_gbs, acts, opts):
    lines = [
        "copy bandwidth (np.copyto 256 MB, read+write): %.1f GB/s" % copy_gbs,
        "%-14s %10s %10s %10s %10s   %s" % ("op", "dispatch", "numba", "numpy_out", "naive", "dispatch/copy"),
    ]
    for title, rows in (("activation backward, 16M float32", acts), ("optimizer update, 10M float32", opts)):
        lines.append("-- " + title)
        for name, r in rows.items():
            best = r["dispatch"] if "dispatch" in r else max(v for k, v in r.items() if k != "chosen")
            lines.append(
                "%-14s %10s %10.1f %10.1f %10s   %.2fx%s"
                % (
                    name,
                    "%.1f" % r["dispatch"] if "dispatch" in r else "-",
                    r.get("numba", float("nan")),
                    r["numpy_out"],
                    "%.1f" % r["naive"] if "naive" in r else "-",
                    best / copy_gbs,
                    "  (%s)" % r["chosen"] if "chosen" in r else "",
                )
            )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--n-act", type=int, default=N_ACT)
    ap.add_argument("--n-opt", type=int, default=N_OPT)
    args = ap.parse_args(argv)
    if not ck.available():
        print("numba unavailable: numba column is the NumPy fallback")
    copy_gbs = copy_bandwidth(args.reps)
    acts = bench_activations(args.n_act, args.reps)
    opts = bench_optimizers(args.n_opt, args.reps)
    print(report(copy_gbs, acts, opts))
    out = pathlib.Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "kernels.json").write_text(
        json.dumps({"copy_gbs": copy_gbs, "activations_16M_f32": acts, "optimizers_10M_f32": opts}, indent=1)
    )


# ---- pytest-benchmark (pytest bench/bench_kernels.py --benchmark-only) ----


def _bench_act(benchmark, name, impl, n=N_ACT):
    rng = np.random.default_rng(0)
    g, x = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
    out = np.empty_like(g)
    f = {"dispatch": ck.activation_bwd, "numba": ck.activation_bwd_numba, "numpy_out": ck.activation_bwd_numpy}[impl]
    f(name, g, x, out=out)
    benchmark(f, name, g, x, out=out)


def _params():
    import pytest  # noqa: PLC0415

    return pytest.mark.parametrize("impl", ["dispatch", "numba", "numpy_out"]), pytest.mark.parametrize(
        "name", ["relu", "sigmoid", "tanh", "gelu_tanh", "gelu", "silu", "softplus"]
    )


try:
    _impl_p, _name_p = _params()

    @_impl_p
    @_name_p
    def test_activation_bwd(benchmark, name, impl):
        if impl != "numpy_out" and not ck.available():
            import pytest  # noqa: PLC0415

            pytest.skip("numba not installed")
        _bench_act(benchmark, name, impl)

    @_impl_p
    def test_adam_update(benchmark, impl):
        rng = np.random.default_rng(1)
        p, g, m = (rng.standard_normal(N_OPT, np.float32) * 0.01 for _ in range(3))
        v = np.abs(rng.standard_normal(N_OPT, np.float32))
        f = {"numba": ck.adam_update_numba, "numpy_out": ck.adam_update_numpy}[impl]
        f(p, g, m, v, None, 1e-3, 0.9, 0.999, 1e-7, 1e-3)
        benchmark(f, p, g, m, v, None, 1e-3, 0.9, 0.999, 1e-7, 1e-3)
except ImportError:  # pytest not installed: the main() path still works
    pass


if __name__ == "__main__":
    main()
