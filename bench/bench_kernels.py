"""Bandwidth of the CPU twins (accel.cpu_kernels) against the copy bandwidth of this machine:
activation backward loops generated from the ops' rules vs the rule itself on NumPy (the generic
path) vs naive NumPy, and optimizer updates (numba loop vs NumPy `out=` vs naive).

    python -m bench.bench_kernels [--reps 7] [--n-act 16M] [--n-opt 10M] [--baseline-rev REV]
    pytest bench/bench_kernels.py --benchmark-only

--baseline-rev REV adds the accel/cpu_kernels.py of git revision REV (e.g. 7a5f2f6, the last with
hand-written activation twins) as a column, in the same interleaved run.

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
import importlib.util
import subprocess
import tempfile
import time

import numpy as np

from accel import cpu_kernels as ck
from accel.ops import core, generated_loops
from accel.ops.core import REGISTRY
from accel.optimizers.base import UPDATES, Optimizer

ROOT = pathlib.Path(__file__).resolve().parents[1]

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
    "selu": lambda g, s: np.where(s < 0, g * (s + 1.7580993408473766), g * 1.0507009873554805),
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


def _generic(name, s, **scalars):
    """The optimizer's generic path: its update rule on NumPy arrays, written back in place."""
    names = UPDATES[name][1]
    arrays = {n: s[{"acc": "v"}.get(n, n)] for n in names}
    Optimizer._apply_rule(name, arrays, **scalars)


# name: (bytes per element, {impl: fn(state)}), state = dict of arrays
def optimizer_cases(baseline=None):
    alpha = ck.adam_alpha(1e-3, 0.9, 0.999, 3, np.float32)
    cases = {
        "adam": (7, {
            "numba": lambda s: ck.adam_update(s["p"], s["g"], s["m"], s["v"], None, alpha, 0.9, 0.999, 1e-7, 1e-3),
            "generic": lambda s: _generic("adam", s, alpha=alpha, om_b1=0.1, om_b2=0.001, eps=1e-7, lr=1e-3),
            "naive": lambda s: _naive_adam(s["p"], s["g"], s["m"], s["v"]),
        }),
        "sgd_momentum": (5, {
            "numba": lambda s: ck.sgd_update(s["p"], s["g"], 0.1, s["m"], 0.9),
            "generic": lambda s: _generic("sgd_momentum", s, lr=0.1, momentum=0.9),
            "naive": lambda s: (
                s["m"].__setitem__(..., s["m"] * 0.9 - s["g"] * 0.1),
                s["p"].__setitem__(..., s["p"] + s["m"]),
            ),
        }),
        "rmsprop": (5, {
            "numba": lambda s: ck.rmsprop_update(s["p"], s["g"], s["v"], 1e-3, 0.9, 1e-7),
            "generic": lambda s: _generic("rmsprop", s, lr=1e-3, rho=0.9, om_rho=0.1, momentum=0.0, eps=1e-7),
            "naive": lambda s: (
                s["v"].__setitem__(..., 0.9 * s["v"] + 0.1 * s["g"] ** 2),
                s["p"].__setitem__(..., s["p"] - 1e-3 * s["g"] / np.sqrt(s["v"] + 1e-7)),
            ),
        }),
        "adagrad": (5, {
            "numba": lambda s: ck.adagrad_update(s["p"], s["g"], s["v"], 1e-2, 1e-7),
            "generic": lambda s: _generic("adagrad", s, lr=1e-2, eps=1e-7),
            "naive": lambda s: (
                s["v"].__setitem__(..., s["v"] + s["g"] * s["g"]),
                s["p"].__setitem__(..., s["p"] - 1e-2 * s["g"] / np.sqrt(s["v"] + 1e-7)),
            ),
        }),
        "lion": (5, {
            "numba": lambda s: ck.lion_update(s["p"], s["g"], s["m"], 1e-4, 0.9, 0.99),
            "generic": lambda s: _generic("lion", s, lr=1e-4, b1=0.9, om_b1=0.1, b2=0.99, om_b2=0.01),
            "naive": lambda s: (
                s["p"].__setitem__(..., s["p"] - 1e-4 * np.sign(s["m"] * 0.9 + s["g"] * 0.1)),
                s["m"].__setitem__(..., s["m"] * 0.99 + s["g"] * 0.01),
            ),
        }),
        "accumulate": (3, {
            "numba": lambda s: ck.accumulate_(s["p"], s["g"]),
            "generic": lambda s: np.add(s["p"], s["g"], out=s["p"]),
            "naive": lambda s: s["p"].__setitem__(..., s["p"] + s["g"]),
        }),
    }
    if baseline is not None:  # the same calls on the revision's cpu_kernels
        b = baseline
        cases["adam"][1]["baseline"] = lambda s: b.adam_update(s["p"], s["g"], s["m"], s["v"], None, alpha, 0.9, 0.999,
                                                               1e-7, 1e-3)
        cases["sgd_momentum"][1]["baseline"] = lambda s: b.sgd_update(s["p"], s["g"], 0.1, s["m"], 0.9)
        cases["rmsprop"][1]["baseline"] = lambda s: b.rmsprop_update(s["p"], s["g"], s["v"], 1e-3, 0.9, 1e-7)
        cases["adagrad"][1]["baseline"] = lambda s: b.adagrad_update(s["p"], s["g"], s["v"], 1e-2, 1e-7)
        cases["lion"][1]["baseline"] = lambda s: b.lion_update(s["p"], s["g"], s["m"], 1e-4, 0.9, 0.99)
        cases["accumulate"][1]["baseline"] = lambda s: b.accumulate_(s["p"], s["g"])
    return cases


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


ALPHA = {"leaky_relu": 0.2}


def _rule(name):
    """The op's own gradient rule on NumPy arrays: what the tape runs when nothing is fused."""
    spec = generated_loops.KERNELS[name]
    op, attrs = REGISTRY[spec["op"]], dict(spec["attrs"], **({"alpha": ALPHA[name]} if name in ALPHA else {}))
    ns = core.array_ns(np)
    if spec["saved"] == ("x",):
        return lambda g, s: op.rules[0](ns, g, None, s, **attrs)
    return lambda g, s: op.rules[0](ns, g, s, None, **attrs)


def load_baseline(rev):
    """accel/cpu_kernels.py as it was at git revision `rev`, imported as a separate module."""
    src = subprocess.check_output(["git", "show", "%s:accel/cpu_kernels.py" % rev], cwd=ROOT, text=True)
    path = pathlib.Path(tempfile.mkdtemp()) / "cpu_kernels_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("cpu_kernels_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bench_activations(n, reps, baseline=None):
    rng = np.random.default_rng(0)
    g = rng.standard_normal(n, np.float32)
    x = (rng.standard_normal(n, np.float32) * 3).astype(np.float32)
    out = np.empty_like(g)
    rows = {}
    for name, spec in generated_loops.KERNELS.items():
        s = x if spec["saved"] == ("x",) else np.tanh(x) if name == "tanh" else np.clip(x, -0.99, 5)
        a = ALPHA.get(name)
        impls = {
            "generated": lambda name=name, s=s, a=a: ck.activation_bwd(name, g, s, a, out=out),
            "rule": lambda name=name, s=s, r=_rule(name): r(g, s),
        }
        if NAIVE_ACT.get(name) is not None:
            impls["naive"] = lambda name=name, s=s: NAIVE_ACT[name](g, s)
        if baseline is not None and name in getattr(baseline, "ACTIVATIONS", {}):
            impls["baseline"] = lambda name=name, s=s, a=a: baseline.activation_bwd(name, g, s, a, out=out)
        for f in impls.values():  # warm up (numba compile), outside the clock
            f()
        times = {k: [] for k in impls}
        for _ in range(reps):  # interleaved
            for k, f in impls.items():
                times[k] += _time(f, 1)
        rows[name] = {k: 3 * 4 * n / statistics.median(v) / 1e9 for k, v in times.items()}
    return rows


def bench_optimizers(n, reps, baseline=None):
    rng = np.random.default_rng(1)
    base = {k: rng.standard_normal(n, np.float32) * 0.01 for k in "pgmv"}
    base["v"] = np.abs(base["v"])
    rows = {}
    for name, (nbytes, impls) in optimizer_cases(baseline).items():
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
    lines = ["copy bandwidth (np.copyto 256 MB, read+write): %.1f GB/s" % copy_gbs,
             "-- activation backward, float32 (GB/s)",
             "%-14s %10s %10s %10s %10s   %s" % ("op", "generated", "rule", "naive", "baseline",
                                                 "generated/copy, /baseline")]
    for name, r in acts.items():
        lines.append("%-14s %10.1f %10.1f %10s %10s   %.2fx%s" % (
            name, r["generated"], r["rule"], "%.1f" % r["naive"] if "naive" in r else "-",
            "%.1f" % r["baseline"] if "baseline" in r else "-", r["generated"] / copy_gbs,
            ", %.2fx" % (r["generated"] / r["baseline"]) if "baseline" in r else ""))
    lines += ["-- optimizer update, float32 (GB/s)",
              "%-14s %10s %10s %10s %10s   %s" % ("op", "numba", "generic", "naive", "baseline",
                                                 "numba/copy, /baseline")]
    for name, r in opts.items():
        lines.append("%-14s %10.1f %10.1f %10.1f %10s   %.2fx%s" % (
            name, r["numba"], r["generic"], r["naive"], "%.1f" % r["baseline"] if "baseline" in r else "-",
            r["numba"] / copy_gbs, ", %.2fx" % (r["numba"] / r["baseline"]) if "baseline" in r else ""))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--n-act", type=int, default=N_ACT)
    ap.add_argument("--n-opt", type=int, default=N_OPT)
    ap.add_argument("--baseline-rev", default=None)
    args = ap.parse_args(argv)
    if not ck.available():
        print("numba unavailable: numba column is the NumPy fallback")
    copy_gbs = copy_bandwidth(args.reps)
    baseline = load_baseline(args.baseline_rev) if args.baseline_rev else None
    acts = bench_activations(args.n_act, args.reps, baseline)
    opts = bench_optimizers(args.n_opt, args.reps, baseline)
    print(report(copy_gbs, acts, opts))
    out = pathlib.Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "kernels.json").write_text(
        json.dumps({"copy_gbs": copy_gbs, "activations_f32": acts, "optimizers_f32": opts}, indent=1)
    )


# ---- pytest-benchmark (pytest bench/bench_kernels.py --benchmark-only) ----


def _bench_act(benchmark, name, impl, n=N_ACT):
    rng = np.random.default_rng(0)
    g, x = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
    out = np.empty_like(g)
    if impl == "generated":
        ck.activation_bwd(name, g, x, ALPHA.get(name), out=out)
        benchmark(ck.activation_bwd, name, g, x, ALPHA.get(name), out=out)
    else:
        r = _rule(name)
        benchmark(r, g, x)


def _params():
    import pytest  # noqa: PLC0415

    return (pytest.mark.parametrize("impl", ["numba", "generic"]),
            pytest.mark.parametrize("impl", ["generated", "rule"]),
            pytest.mark.parametrize("name", list(generated_loops.KERNELS)))


try:
    _opt_p, _impl_p, _name_p = _params()

    @_impl_p
    @_name_p
    def test_activation_bwd(benchmark, name, impl):
        if impl == "generated" and not ck.available():
            import pytest  # noqa: PLC0415

            pytest.skip("numba not installed")
        _bench_act(benchmark, name, impl)

    @_opt_p
    def test_adam_update(benchmark, impl):
        rng = np.random.default_rng(1)
        p, g, m = (rng.standard_normal(N_OPT, np.float32) * 0.01 for _ in range(3))
        v = np.abs(rng.standard_normal(N_OPT, np.float32))
        f = optimizer_cases()["adam"][1][impl]
        s = dict(p=p, g=g, m=m, v=v)
        f(s)
        benchmark(f, s)
except ImportError:  # pytest not installed: the main() path still works
    pass


if __name__ == "__main__":
    main()
