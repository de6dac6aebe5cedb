"""One optimizer step on 10M float32 parameters: accel's fused path (numba loops) and generic path
(in-place NumPy on reused scratch buffers) against naive NumPy, relative to copy bandwidth.

    python -m bench.bench_optimizers [--rounds 9] [--n 10M]
    pytest bench/bench_optimizers.py --benchmark-only

Each step goes through `apply_gradients`, Python overhead included. GB/s counts the minimal
traffic: every array the update reads and writes, once (Adam: p, g, m, v read; p, m, v
written = 7 arrays). Copy bandwidth is np.copyto of 256 MB, read + write counted.
Implementations are interleaved round by round in one process; medians. This script does not
touch OPENBLAS_* (no BLAS call is timed) or thread settings: numba uses every core it sees.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

import accel
from accel import backend, cpu_kernels
from accel import optimizers as O

N = 10_000_000
COPY_BYTES = 256 * 2**20
LR = 1e-3


# Naive NumPy: the textbook formula, a fresh temporary per operation.
def _naive_sgd(p, g, s, t):
    s["m"][...] = 0.9 * s["m"] - LR * g
    p += s["m"]


def _naive_adam(p, g, s, t):
    alpha = LR * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
    s["m"][...] = s["m"] + (g - s["m"]) * 0.1
    s["v"][...] = s["v"] + (g * g - s["v"]) * 0.001
    p -= alpha * s["m"] / (np.sqrt(s["v"]) + 1e-7)


def _naive_rmsprop(p, g, s, t):
    s["v"][...] = 0.9 * s["v"] + 0.1 * g * g
    p -= LR * g / np.sqrt(s["v"] + 1e-7)


def _naive_adagrad(p, g, s, t):
    s["v"] += g * g
    p -= LR * g / np.sqrt(s["v"] + 1e-7)


def _naive_lion(p, g, s, t):
    p -= LR * np.sign(s["m"] * 0.9 + g * 0.1)
    s["m"][...] = s["m"] * 0.99 + g * 0.01


def _naive_adamax(p, g, s, t):
    s["m"][...] = s["m"] + (g - s["m"]) * 0.1
    s["v"][...] = np.maximum(0.999 * s["v"], np.abs(g))
    p -= LR * s["m"] / ((1 - 0.9**t) * (s["v"] + 1e-7))


def _naive_nadam(p, g, s, t):
    u_t, u_t1 = 0.9 * (1 - 0.5 * 0.96**t), 0.9 * (1 - 0.5 * 0.96 ** (t + 1))
    s["u"] = s.get("u", 1.0) * u_t
    s["m"][...] = s["m"] + (g - s["m"]) * 0.1
    s["v"][...] = s["v"] + (g * g - s["v"]) * 0.001
    m_hat = u_t1 * s["m"] / (1 - s["u"] * u_t1) + (1 - u_t) * g / (1 - s["u"])
    p -= m_hat * LR / (np.sqrt(s["v"] / (1 - 0.999**t)) + 1e-7)


def _naive_adadelta(p, g, s, t):
    s["m"][...] = 0.95 * s["m"] + 0.05 * g * g
    delta = -np.sqrt(s["v"] + 1e-7) * g / np.sqrt(s["m"] + 1e-7)
    s["v"][...] = 0.95 * s["v"] + 0.05 * delta * delta
    p += LR * delta


# name: (constructor, naive step, arrays moved per element, has a fused kernel)
CASES = {
    "SGD(momentum)": (lambda: O.SGD(LR, momentum=0.9), _naive_sgd, 5, True),
    "Adam": (lambda: O.Adam(LR), _naive_adam, 7, True),
    "RMSprop": (lambda: O.RMSprop(LR), _naive_rmsprop, 5, True),
    "Adagrad": (lambda: O.Adagrad(LR), _naive_adagrad, 5, True),
    "Lion": (lambda: O.Lion(LR), _naive_lion, 5, True),
    "Adamax": (lambda: O.Adamax(LR), _naive_adamax, 7, False),
    "Nadam": (lambda: O.Nadam(LR), _naive_nadam, 7, False),
    "Adadelta": (lambda: O.Adadelta(LR), _naive_adadelta, 7, False),
}


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n, np.float32) * 0.01, rng.standard_normal(n, np.float32)


class _Accel:
    """An optimizer on one variable, stepping under a fixed fused mode."""

    def __init__(self, make, mode, n):
        p, self.g = _data(n)
        cpu_kernels.wait_warmed(300)  # fused mode "auto" loads numba in the background on first use
        self.var = accel.Variable(p)
        self.opt = make()
        self.mode = mode

    def step(self):
        with backend.fused(self.mode):
            self.opt.apply_gradients([(self.g, self.var)])


class _Naive:
    def __init__(self, naive, n):
        self.p, self.g = _data(n)
        self.s = {"m": np.zeros_like(self.p), "v": np.abs(self.g) * 0.1}
        self.naive = naive
        self.t = 0

    def step(self):
        self.t += 1
        self.naive(self.p, self.g, self.s, self.t)


class _Copy:
    """np.copyto between two 256 MB buffers touched beforehand (no page faults in the timing)."""

    def __init__(self):
        self.src = np.ones(COPY_BYTES // 4, np.float32)
        self.dst = np.zeros_like(self.src)

    def step(self):
        np.copyto(self.dst, self.src)


def run(rounds, n):
    impls = {}
    for name, (make, naive, _, fused) in CASES.items():
        impls[name] = {"naive": _Naive(naive, n), "generic": _Accel(make, "never", n)}
        if fused and cpu_kernels.available():
            impls[name]["fused"] = _Accel(make, "auto", n)
    for per in impls.values():  # warm-up: numba compiles, slots and scratch buffers exist
        for impl in per.values():
            impl.step()
    copy = _Copy()
    copy.step()
    times = {name: {k: [] for k in per} for name, per in impls.items()}
    copy_times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        copy.step()
        copy_times.append(time.perf_counter() - t0)
        for name, per in impls.items():
            for k, impl in per.items():
                t0 = time.perf_counter()
                impl.step()
                times[name][k].append(time.perf_counter() - t0)
    return 2 * COPY_BYTES / statistics.median(copy_times) / 1e9, {
        name: {k: statistics.median(ts) for k, ts in per.items()} for name, per in times.items()
    }


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_optimizers", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--n", type=float, default=N, help="parameters (default 10M)")
    args = ap.parse_args(argv)
    n = int(args.n)
    copy, med = run(args.rounds, n)
    print(
        "one step on %d float32 parameters, median of %d interleaved rounds; numba: %s"
        % (n, args.rounds, "yes" if cpu_kernels.available() else "no")
    )
    print("copy bandwidth (np.copyto 256 MB, read + write): %.1f GB/s" % copy)
    print("%-14s %-8s %9s %8s %8s" % ("optimizer", "path", "ms", "GB/s", "x copy"))
    for name, per in med.items():
        nbytes = CASES[name][2] * 4 * n
        for k in ("fused", "generic", "naive"):
            if k in per:
                gbs = nbytes / per[k] / 1e9
                print("%-14s %-8s %9.2f %8.1f %8.2f" % (name, k, per[k] * 1e3, gbs, gbs / copy))


# ---- pytest-benchmark (pytest bench/bench_optimizers.py --benchmark-only) ----

try:
    import pytest
except ImportError:  # pytest not installed: main() still works
    pytest = None

if pytest is not None:

    @pytest.mark.parametrize("path", ["fused", "generic", "naive"])
    @pytest.mark.parametrize("name", list(CASES))
    def test_optimizer_step(benchmark, name, path):
        make, naive, _, fused = CASES[name]
        if path == "fused" and not (fused and cpu_kernels.available()):
            pytest.skip("no fused kernel for %s here" % name)
        impl = (
            _Naive(naive, N) if path == "naive" else _Accel(make, "auto" if path == "fused" else "never", N)
        )
        impl.step()
        benchmark(impl.step)


if __name__ == "__main__":
    main()
