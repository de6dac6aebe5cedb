"""Runs every workload on the floor, accel and each installed peer; writes a report.

    python -m bench.compare [--quick] [--only mlp,tape,cnn,encoder,first_call,scale,memory,conv]
                            [--device cpu|gpu] [--threads N]

All implementations run in this one process, interleaved round by round (A B C A B C ...)
after a shared warm-up, and each figure is the median of the rounds. Before NumPy loads,
this process unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (they pin OpenBLAS to slower
kernels), fixes every library's thread count and restricts the CPU affinity to that many
cores, re-executing itself if NumPy was already imported. Tests and CI never do this.
Before timing, each training workload checks that every implementation's loss after one and after
two steps agrees with the reference (TensorFlow eager where it runs, else accel eager).
Results go to bench/results/compare-<date>.{md,json,png}.
"""

import argparse
import os
import sys

SECTIONS = ("mlp", "tape", "cnn", "encoder", "first_call", "scale", "memory", "conv")
BLAS_TRAPS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
UNSET_RECORD = "BENCH_COMPARE_UNSET"  # what the first process unset, for the report after a re-exec


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds, smaller sweeps (about a minute)")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated subset of %s" % (SECTIONS,))
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="gpu: accel, torch and jax on the GPU (refused without one); the floor stays on CPU")
    p.add_argument("--threads", type=int, default=2, help="threads for every framework (default 2)")
    p.add_argument("--rounds", type=int, help="timed rounds per benchmark (default 15, 5 with --quick)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        p.error("--only: unknown %s; choose from %s" % (", ".join(sorted(unknown)), ", ".join(SECTIONS)))
    if args.rounds is None:
        args.rounds = 5 if args.quick else 15
    return args


def prepare_environment(argv):
    """Unsets the BLAS traps and pins thread counts before NumPy loads (re-executing if it has)."""
    n = str(parse_args(argv).threads)
    unset = ["%s=%s" % (k, os.environ.pop(k)) for k in BLAS_TRAPS if k in os.environ]
    changed = bool(unset)
    if unset:
        os.environ[UNSET_RECORD] = ",".join(filter(None, [os.environ.get(UNSET_RECORD), *unset]))
    for var in THREAD_VARS:
        if os.environ.get(var) != n:
            os.environ[var] = n
            changed = True
    if n == "1" and "intra_op_parallelism_threads" not in os.environ.get("XLA_FLAGS", ""):
        single = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + single).strip()
        changed = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # XLA and TensorFlow size their thread pools from the CPU affinity.
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > int(n):
        os.sched_setaffinity(0, cpus[: int(n)])
    if changed and "numpy" in sys.modules:
        os.execv(sys.executable, [sys.executable, "-m", "bench.compare", *argv])


if __name__ == "__main__":
    prepare_environment(sys.argv[1:])

# The imports below must follow prepare_environment.
# ruff: noqa: E402
import datetime
import gc
import json
import math
import platform
import statistics
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Callable

import threadpoolctl

from bench.workloads import (FLOOR, IMPLEMENTATIONS, TAPE_OPS, init_cnn, init_encoder, init_params, load,
                             make_batch, make_images, make_sequences, tape_input)

MLP_BATCHES = (32, 256)
SCALE_OPS = (100, 1_000, 10_000, 100_000)
SCALE_BATCHES = (8, 16, 32, 64, 128, 256, 512, 1024)
QUICK_SCALE_OPS = (100, 1_000, 10_000)
QUICK_SCALE_BATCHES = (16, 64, 256)
SCALE_BUDGET_S = 20.0  # skip a larger op count when the last one predicts more than this per sample
# Idle time before each timed sample. Thread pools spin after their work (OpenBLAS for up to
# 2^28 cycles, about 0.1 s): without the pause, a framework timed right after another competes
# with its spinning threads for the cores (PyTorch's batch-32 step went from 5.6 to 25 ms).
IDLE_S = 0.15
# Loss agreement across implementations: step 1 is the forward pass on identical weights; step 2 also
# checks the gradients and Adam (PyTorch puts Adam's epsilon outside the bias correction: ~5e-4 there).
AGREE_STEP1_RTOL = 1e-4
AGREE_STEP2_RTOL = 2e-3
FIRST_CALL_VARIANTS = (("accel_impl", "accel.function"), ("tf_impl", "tf.function"), ("jax_impl", "jit"),
                       ("torch_impl", "torch.compile"))


@dataclass
class Case:
    impl: str
    variant: str
    fn: Callable
    sync: Callable
    samples: list = field(default_factory=list)

    @property
    def label(self):
        return "%s %s" % (self.impl, self.variant)

    def time_calls(self, k):
        time.sleep(IDLE_S)
        self.sync()
        t0 = time.perf_counter()
        for _ in range(k):
            self.fn()
        self.sync()
        return (time.perf_counter() - t0) / k


class Runner:
    def __init__(self, args):
        self.args = args
        self.device = args.device
        self.modules = {}
        self.skipped = {}  # label -> reason
        for name in IMPLEMENTATIONS:
            try:
                mod = load(name)
            except Exception as e:  # ImportError, or a half-written engine failing at import
                self.skipped[name] = "not importable: %s: %s" % (type(e).__name__, e)
                continue
            if self.device not in mod.DEVICES and name != FLOOR:
                self.skipped[name] = "%s finds no %s device" % (mod.NAME, self.device)
                continue
            mod.configure(args.threads)
            self.modules[name] = mod
        threadpoolctl.threadpool_limits(args.threads)
        self.min_sample_s = 0.01 if args.quick else 0.05
        self.warmup = 2 if args.quick else 5

    def device_of(self, name):
        return "cpu" if name == FLOOR else self.device

    def build(self, table, make):
        """Cases for every variant in table ("MLP" or "TAPE"); make(factory, device) builds the callable."""
        cases = []
        for name, mod in self.modules.items():
            dev = self.device_of(name)
            for variant, factory in getattr(mod, table, {}).items():
                try:
                    fn = make(factory, dev)
                except Exception as e:
                    self.skip(Case(mod.NAME, variant, None, None), e)
                    continue
                cases.append(Case(mod.NAME, variant, fn, lambda mod=mod, dev=dev: mod.synchronize(dev)))
        return cases

    def skip(self, case, error):
        first_line = str(error).splitlines()[0] if str(error) else ""
        self.skipped[case.label] = "%s: %s" % (type(error).__name__, first_line)

    def measure(self, cases, rounds=None):
        """Median seconds per call of each case: interleaved warm-up, then interleaved timed rounds."""
        rounds = rounds or self.args.rounds
        gc.collect()
        live = []
        for case in cases:
            try:
                case.fn()
                live.append(case)
            except Exception as e:  # e.g. an op the engine does not have yet
                self.skip(case, e)
        for _ in range(self.warmup - 1):
            for case in live:
                case.fn()
        inner = {case.label: max(1, math.ceil(self.min_sample_s / case.time_calls(1))) for case in live}
        for r in range(rounds):
            start = r % max(1, len(live))
            for case in live[start:] + live[:start]:
                case.samples.append(case.time_calls(inner[case.label]))
        return {case.label: summarize(case, case.samples) for case in live}


def summarize(case, samples):
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return {"impl": case.impl, "variant": case.variant, "median_s": statistics.median(samples),
            "q1_s": q[0], "q3_s": q[2], "rounds": len(samples)}


def with_ratios(results, key="median_s"):
    floor = next((r[key] for r in results.values() if r["impl"] == "numpy"), None)
    for r in results.values():
        r["ratio"] = r[key] / floor if floor else None
    return results


def check_agreement(runner, cases):
    """Runs two steps of every case; {label: {"losses", "rel_diff", "ok"}} against the reference case
    (TensorFlow eager, else accel eager, else the first). A case that fails is skipped."""
    losses = {}
    for case in list(cases):
        try:
            losses[case.label] = [float(case.fn()), float(case.fn())]
        except Exception as e:
            runner.skip(case, e)
            cases.remove(case)
    ref_label = next((lb for lb in ("tensorflow eager", "accel eager") if lb in losses), next(iter(losses), None))
    out = {"reference": ref_label, "rows": {}}
    if ref_label is None:
        return out
    ref = losses[ref_label]
    for label, ls in losses.items():
        rel = [abs(a - b) / abs(b) for a, b in zip(ls, ref, strict=True)]
        out["rows"][label] = {"losses": ls, "rel_diff": rel,
                              "ok": rel[0] <= AGREE_STEP1_RTOL and rel[1] <= AGREE_STEP2_RTOL}
    return out


def run_train(runner, table, params, x, y, rounds=None, check=True):
    """(timings, agreement) for every implementation's `table` step on (params, x, y)."""
    cases = runner.build(table, lambda f, dev: f(params, x, y, dev))
    agreement = check_agreement(runner, cases) if check else None
    return with_ratios(runner.measure(cases, rounds)), agreement


def run_mlp(runner, batches, rounds=None, check=True):
    out, agree = {}, {}
    for batch in batches:
        x, y = make_batch(batch)
        out[str(batch)], agree[str(batch)] = run_train(runner, "MLP", init_params(), x, y, rounds, check)
        print("  mlp batch %d done" % batch, flush=True)
    return out, agree


def run_first_call(runner):
    """First-call cost of each compiled MLP step (batch 32), each in a fresh process (bench.first_call):
    "cold" with empty on-disk compilation caches (numba's, inductor's), then "warm disk" reusing them."""
    import subprocess  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    out = {}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory(prefix="bench-first-call-") as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "numba"),
                   TORCHINDUCTOR_CACHE_DIR=os.path.join(tmp, "inductor"))
        for impl, variant in FIRST_CALL_VARIANTS:
            if impl not in runner.modules:
                continue
            label = "%s %s" % (runner.modules[impl].NAME, variant)
            for cache in ("cold", "warm disk"):
                time.sleep(IDLE_S)
                proc = subprocess.run([sys.executable, "-m", "bench.first_call", impl, variant], cwd=root, env=env,
                                      capture_output=True, text=True, timeout=600)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode != 0 or not lines:
                    tail = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
                    runner.skipped["first call (%s): %s" % (cache, label)] = tail
                    break
                out["%s (%s)" % (label, cache)] = json.loads(lines[-1])
            print("  first call %s done" % label, flush=True)
    return out


def run_op_counts(runner):
    """Ops per MLP step (batch 32) from each implementation's own profiler, where it has count_ops()."""
    counts = {}
    x, y = make_batch(32)
    for name, mod in runner.modules.items():
        if not hasattr(mod, "count_ops"):
            continue
        for variant, factory in mod.MLP.items():
            try:
                step = factory(init_params(), x, y, runner.device_of(name))
                step()
                counts["%s %s" % (mod.NAME, variant)] = mod.count_ops(step)
            except Exception as e:
                counts["%s %s" % (mod.NAME, variant)] = "failed: %s: %s" % (type(e).__name__, e)
    if "accel_impl" in runner.modules:
        mod = runner.modules["accel_impl"]
        try:
            step = mod.MLP["accel.function"](init_params(), x, y, runner.device_of("accel_impl"))
            step()
            step()
            c = mod.plan_counts(step)
            counts["accel accel.function: captured plan steps"] = (
                "%d (%d ops + %d fused kernels + %d backward rule calls + %d host steps; %d recorded ops)"
                % (c["steps"], c["ops"], c["fused_kernels"], c["rule_calls"], c["host_steps"], c["recorded_ops"]))
        except Exception as e:
            counts["accel accel.function: captured plan steps"] = "failed: %s: %s" % (type(e).__name__, e)
    if "accel_impl" in runner.modules:  # accel in each fused mode, and the hand-fused minimum (bench.device_ops)
        from bench import device_ops  # noqa: PLC0415

        for mode, (ops, nbytes, _) in device_ops.accel_counts().items():
            counts["accel fused=%s" % mode] = "%d (%.1f MB)" % (ops, nbytes / 1e6)
        _, ops, nbytes = device_ops.hand_fused_minimum()
        counts["hand-fused minimum (derived)"] = "%d (%.1f MB)" % (ops, nbytes / 1e6)
    return counts


def _torch_conv_step(dev):
    """PyTorch's Conv2D forward + backward on bench.bench_conv's problem (NCHW, its native layout)."""
    import torch  # noqa: PLC0415

    from bench import bench_conv  # noqa: PLC0415

    x, k, b, r = bench_conv._data()
    device = "cuda" if dev == "gpu" else "cpu"
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), device=device, requires_grad=True)
    kt = torch.tensor(k.transpose(3, 2, 0, 1).copy(), device=device, requires_grad=True)
    bt = torch.tensor(b, device=device, requires_grad=True)
    rt = torch.tensor(r.transpose(0, 3, 1, 2).copy(), device=device)

    def step():
        y = torch.nn.functional.conv2d(xt, kt, bt, padding="same")
        return torch.autograd.grad((y * rt).sum(), [xt, kt, bt])

    return step


def run_conv(runner):
    """Conv2D forward + backward (batch 32, 32x32x16 -> 32 filters 3x3, 'same', float32; gradients of input,
    kernel and bias): accel's Conv2D layer, the NumPy im2col floor, PyTorch and TF eager where they import."""
    from bench import bench_conv  # noqa: PLC0415

    makers = [("accel", "Conv2D", bench_conv.accel_layer), ("numpy", "im2col floor", bench_conv.numpy_floor),
              ("torch", "conv2d", lambda: _torch_conv_step(runner.device)),
              ("tensorflow", "Conv2D eager", bench_conv.tf_eager)]
    if runner.device == "gpu":
        makers = [m for m in makers if m[0] in ("accel", "torch")]
    cases = []
    for impl, variant, make in makers:
        try:
            fn = make()
        except Exception as e:  # a peer that is not installed
            runner.skip(Case(impl, variant, None, None), e)
            continue
        sync = (lambda: __import__("torch").cuda.synchronize()) if impl == "torch" and runner.device == "gpu" \
            else (lambda: None)
        cases.append(Case(impl, variant, fn, sync))
    return with_ratios(runner.measure(cases))


def run_tape(runner):
    x0 = tape_input()
    cases = runner.build("TAPE", lambda f, dev: f(x0, TAPE_OPS, dev))
    results = with_ratios(runner.measure(cases))
    for r in results.values():
        r["us_per_op"] = r["median_s"] / TAPE_OPS * 1e6
    return results


def run_scale_ops(runner, op_counts):
    """Backward seconds against the number of recorded ops, interleaved across implementations."""
    x0 = tape_input()
    recorders = {}
    for name, mod in runner.modules.items():
        dev = runner.device_of(name)
        for variant, factory in mod.RECORD.items():
            case = Case(mod.NAME, variant, None, lambda mod=mod, dev=dev: mod.synchronize(dev))
            try:
                case.fn = factory(x0, dev)
            except Exception as e:
                runner.skip(case, e)
                continue
            recorders[case.label] = case
    results = {label: {"impl": c.impl, "variant": c.variant, "backward_s": {}, "record_s": {}, "notes": []}
               for label, c in recorders.items()}
    for n in op_counts:
        repeats = 3 if n >= 10_000 else 7
        for _ in range(repeats):
            for label, case in recorders.items():
                res = results[label]
                last = max((int(k) for k in res["record_s"]), default=None)
                if res["notes"] or (last and (res["record_s"][str(last)] + res["backward_s"][str(last)])
                                    * n / last > SCALE_BUDGET_S):
                    continue
                try:
                    time.sleep(IDLE_S)
                    t0 = time.perf_counter()
                    backward = case.fn(n)
                    case.sync()
                    t1 = time.perf_counter()
                    backward()
                    case.sync()
                    t2 = time.perf_counter()
                except Exception as e:  # e.g. RecursionError in a recursive backward
                    res["notes"].append("failed at %d ops: %s: %s" % (n, type(e).__name__, e))
                    continue
                res.setdefault("_samples", {}).setdefault(n, []).append((t1 - t0, t2 - t1))
                del backward
        for res in results.values():
            samples = res.get("_samples", {}).pop(n, None)
            if samples:
                res["record_s"][str(n)] = statistics.median(s[0] for s in samples)
                res["backward_s"][str(n)] = statistics.median(s[1] for s in samples)
        print("  scale %d ops done" % n, flush=True)
    for res in results.values():
        res.pop("_samples", None)
        ns = sorted(int(k) for k in res["backward_s"])
        big = [k for k in ns if k >= 1000]
        if len(big) >= 2:
            t_lo, t_hi = res["backward_s"][str(big[0])], res["backward_s"][str(big[-1])]
            res["exponent"] = math.log(t_hi / t_lo) / math.log(big[-1] / big[0])
    return results


def run_memory(runner, batches):
    """tracemalloc figures for one MLP step of each NumPy-based engine, after two warm-up steps."""
    out = {}
    for batch in batches:
        x, y = make_batch(batch)
        for name, mod in runner.modules.items():
            if not mod.MEMORY_TRACEABLE or runner.device_of(name) != "cpu":
                continue
            for variant, factory in mod.MLP.items():
                gc.collect()
                tracemalloc.start()
                try:
                    step = factory(init_params(), x, y, "cpu")
                    step()
                    step()
                    gc.collect()
                    held = tracemalloc.get_traced_memory()[0]
                    tracemalloc.reset_peak()
                    step()
                    peak = tracemalloc.get_traced_memory()[1]
                except Exception as e:
                    runner.skip(Case(mod.NAME, variant, None, None), e)
                    continue
                finally:
                    tracemalloc.stop()
                out.setdefault(str(batch), {})["%s %s" % (mod.NAME, variant)] = {
                    "impl": mod.NAME, "variant": variant, "held_bytes": held, "peak_bytes": peak,
                    "transient_bytes": peak - held}
                del step
    return out


def machine_info(runner):
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {"python": platform.python_version()}
    for mod in runner.modules.values():
        versions.update(mod.versions())
    threads = {"requested": runner.args.threads, "cpu_affinity": sorted(os.sched_getaffinity(0)),
               "env": {k: os.environ.get(k) for k in (*THREAD_VARS, "XLA_FLAGS")}}
    if "torch_impl" in runner.modules:
        import torch

        threads["torch"] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    if "tf_impl" in runner.modules:
        import tensorflow as tf

        threads["tensorflow"] = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                                 "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    blas = [{k: lib.get(k) for k in ("internal_api", "architecture", "version", "num_threads", "filepath")}
            for lib in threadpoolctl.threadpool_info()]
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
        "device": runner.device, "quick": runner.args.quick, "rounds": runner.args.rounds,
        "versions": versions, "threads": threads, "blas": blas,
        "load_average_at_start": os.getloadavg(),
        "unset_env": [s for s in os.environ.get(UNSET_RECORD, "").split(",") if s],
        "blas_traps_still_set": [k for k in BLAS_TRAPS if k in os.environ],
    }


# --- report -------------------------------------------------------------------------------


def fmt_ratio(r):
    return "%.2f" % r if r is not None else "-"


def render(results):
    meta = results["meta"]
    busy = max(meta["load_average_at_start"][0], meta["load_average_at_end"][0]) > 1.5 * meta["cores"]
    numpy_blas = [b for b in meta["blas"] if "numpy" in (b.get("filepath") or "")] or meta["blas"][:1]
    lines = ["# accel benchmark: %s" % meta["date"], "",
             "- Machine: %s, %d cores; device: %s" % (meta["cpu"], meta["cores"], meta["device"]),
             "- Threads: %d for every framework (OMP/MKL/OPENBLAS/NUMBA env, torch.set_num_threads, "
             "TF intra-op; inter-op 1; CPU affinity %s, which XLA follows)"
             % (meta["threads"]["requested"], meta["threads"]["cpu_affinity"]),
             "- NumPy BLAS: %s" % "; ".join("%s %s (%s kernel), %s threads" % (
                 b["internal_api"], b["version"], b["architecture"], b["num_threads"]) for b in numpy_blas),
             "- %s" % ("Unset in this process before NumPy loaded: %s" % ", ".join(meta["unset_env"])
                       if meta["unset_env"] else "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE were not set"),
             "- Versions: %s" % ", ".join("%s %s" % kv for kv in meta["versions"].items()),
             "- Load average (1, 5, 15 min) at start %s, at end %s%s" % (
                 _loads(meta["load_average_at_start"]), _loads(meta["load_average_at_end"]),
                 "; other processes competed for the CPU, so expect noise" if busy else ""),
             "- Method: one process, interleaved rounds after a shared warm-up, %.2f s idle before each "
             "sample, medians of %d rounds (5 in the batch sweep)%s"
             % (IDLE_S, meta["rounds"], " (--quick)" if meta["quick"] else ""),
             ""]
    if "mlp" in results:
        batches = list(results["mlp"])
        lines += ["## MLP training step (784-512-512-10, Adam), ms per step (× hand NumPy)", "",
                  "| implementation | " + " | ".join("batch %s" % b for b in batches) + " |",
                  "|---|" + "---|" * len(batches)]
        for label in _labels(results["mlp"].values()):
            cells = []
            for b in batches:
                r = results["mlp"][b].get(label)
                cells.append("%.3g ms (%s)" % (r["median_s"] * 1e3, fmt_ratio(r["ratio"])) if r else "-")
            lines.append("| %s | %s |" % (label, " | ".join(cells)))
        lines.append("")
    lines += render_targets(results)
    if results.get("agreement"):
        lines += render_agreement(results["agreement"])
    if results.get("first_call"):
        lines += render_first_call(results["first_call"])
    if results.get("op_counts"):
        lines += ["## Ops per MLP step (batch 32)", "", "| implementation | ops |", "|---|---|"]
        lines += ["| %s | %s |" % kv for kv in results["op_counts"].items()] + [""]
    if "tape" in results:
        lines += ["## Tape overhead: %d elementwise ops on 16 float32, forward + backward" % TAPE_OPS, "",
                  "| implementation | µs per op | × hand NumPy |", "|---|---|---|"]
        for label, r in results["tape"].items():
            lines.append("| %s | %.3g | %s |" % (label, r["us_per_op"], fmt_ratio(r["ratio"])))
        lines.append("")
    if "cnn" in results:
        lines += render_train("Small CNN (conv 3x3 1->32, conv 3x3 32->64, max-pool, dense 10; batch 64; Adam)",
                              results["cnn"])
    if "encoder" in results:
        lines += render_train("Transformer encoder block (d_model 256, 4 heads, seq 128, batch 16, pre-LN, GELU "
                              "MLP 4x, mean-pooled head; Adam)", results["encoder"])
    if "scale_ops" in results:
        ns = sorted({int(n) for r in results["scale_ops"].values() for n in r["backward_s"]})
        lines += ["## Backward time against recorded ops (µs per op; exponent 1.0 = linear)", "",
                  "| implementation | " + " | ".join("%g ops" % n for n in ns) + " | exponent (≥1e3 ops) |",
                  "|---|" + "---|" * (len(ns) + 1)]
        for label, r in results["scale_ops"].items():
            per_op = {int(n): t / int(n) * 1e6 for n, t in r["backward_s"].items()}
            cells = ["%.3g" % per_op[n] if n in per_op else "-" for n in ns]
            exp = "%.2f" % r["exponent"] if "exponent" in r else "-"
            lines.append("| %s | %s | %s%s |" % (label, " | ".join(cells), exp,
                                                 "; " + "; ".join(r["notes"]) if r["notes"] else ""))
        lines.append("")
    if "scale_batch" in results:
        batches = list(results["scale_batch"])
        lines += ["## MLP step time against batch size (ms)", "",
                  "| implementation | " + " | ".join(batches) + " |", "|---|" + "---|" * len(batches)]
        for label in _labels(results["scale_batch"].values()):
            cells = ["%.3g" % (results["scale_batch"][b][label]["median_s"] * 1e3)
                     if label in results["scale_batch"][b] else "-" for b in batches]
            lines.append("| %s | %s |" % (label, " | ".join(cells)))
        lines.append("")
    if "memory" in results:
        lines += ["## Memory of one MLP step (tracemalloc; NumPy-based engines only)", "",
                  "| batch | implementation | held between steps | step peak | transient (× hand NumPy) |",
                  "|---|---|---|---|---|"]
        for batch, rows in results["memory"].items():
            floor = next((r["transient_bytes"] for r in rows.values() if r["impl"] == "numpy"), None)
            for label, r in rows.items():
                ratio = r["transient_bytes"] / floor if floor else None
                lines.append("| %s | %s | %.2f MB | %.2f MB | %.2f MB (%s) |" % (
                    batch, label, r["held_bytes"] / 1e6, r["peak_bytes"] / 1e6, r["transient_bytes"] / 1e6,
                    fmt_ratio(ratio)))
        lines.append("")
    if "conv" in results:
        lines += ["## Conv2D forward + backward (batch 32, 32x32x16 -> 32 filters 3x3, same, float32)", "",
                  "| implementation | median ms | q1-q3 ms | vs NumPy floor |", "|---|---|---|---|"]
        for label, r in results["conv"].items():
            lines.append("| %s | %.3g | %.3g-%.3g | %s |" % (label, r["median_s"] * 1e3, r["q1_s"] * 1e3,
                                                           r["q3_s"] * 1e3, fmt_ratio(r["ratio"])))
        lines.append("")
    if results["skipped"]:
        lines += ["## Skipped", ""] + ["- %s: %s" % kv for kv in results["skipped"].items()] + [""]
    return "\n".join(lines)


def best_peer(rows):
    """(label, seconds) of the fastest implementation other than accel and the NumPy floor."""
    peers = [(r["median_s"], label) for label, r in rows.items() if r["impl"] not in ("accel", "numpy")]
    return (min(peers)[1], min(peers)[0]) if peers else (None, None)


def render_train(title, rows):
    peer, peer_s = best_peer(rows)
    lines = ["## %s, ms per step" % title, "",
             "| implementation | median ms | q1-q3 ms | × best peer (%s) |" % (peer or "-"), "|---|---|---|---|"]
    for label, r in rows.items():
        lines.append("| %s | %.3g | %.3g-%.3g | %s |" % (label, r["median_s"] * 1e3, r["q1_s"] * 1e3,
                                                       r["q3_s"] * 1e3, fmt_ratio(r["median_s"] / peer_s
                                                                                  if peer_s else None)))
    return lines + [""]


def render_targets(results):
    """The issue's goals for accel.function, measured in this run: one row per variant (the default, which
    fuses only what stays bitwise equal to eager as tf.function without XLA, and jit_compile=True)."""
    lines = []
    variants = (("accel accel.function", "accel.function"), ("accel accel.function jit", "jit_compile=True"))
    tape = results.get("tape", {})
    jit = tape.get("jax jit")
    for label, name in variants:
        ours = tape.get(label)
        if ours and jit:
            lines.append("| tape: %s ≤ jax.jit µs/op | %.3g vs %.3g µs/op (%.2f×) | %s |" % (
                name, ours["us_per_op"], jit["us_per_op"], ours["us_per_op"] / jit["us_per_op"],
                "met" if ours["us_per_op"] <= jit["us_per_op"] else "not met"))
    for batch, rows in results.get("mlp", {}).items():
        peer, peer_s = best_peer(rows)
        for label, name in variants:
            ours = rows.get(label)
            if ours and peer_s:
                ratio = ours["median_s"] / peer_s
                lines.append("| MLP batch %s: %s ≤ 0.9× best peer | %.3g ms vs %.3g ms (%s): %.2f× | %s |"
                             % (batch, name, ours["median_s"] * 1e3, peer_s * 1e3, peer, ratio,
                                "met" if ratio <= 0.9 else "not met"))
    return ["## Targets (issue 12)", "", "| goal | this run | |", "|---|---|---|"] + lines + [""] if lines else []


def render_agreement(agreement):
    lines = ["## Loss agreement before timing (relative difference to the reference after 1 and 2 steps; "
             "tolerance %g and %g)" % (AGREE_STEP1_RTOL, AGREE_STEP2_RTOL), "",
             "| workload | reference | implementation | loss step 1 | loss step 2 | rel. diff 1 / 2 | |",
             "|---|---|---|---|---|---|---|"]
    for workload, a in agreement.items():
        for label, r in a["rows"].items():
            lines.append("| %s | %s | %s | %.7g | %.7g | %.1e / %.1e | %s |" % (
                workload, a["reference"], label, r["losses"][0], r["losses"][1], r["rel_diff"][0],
                r["rel_diff"][1], "ok" if r["ok"] else "**DIFFERS**"))
    return lines + [""]


def render_first_call(rows):
    lines = ["## First call of the compiled MLP step (batch 32), each in a fresh process, seconds (cold: empty "
             "numba / inductor disk caches; warm disk: a second process reusing them)", "",
             "| implementation | import | build | 1st call | 2nd call | 1st + 2nd | 1st call of a 2nd object |",
             "|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        lines.append("| %s | %.2f | %.3f | %.3f | %.3f | %.3f | %.3f |" % (
            label, r["import_s"], r["build_s"], r["first_s"], r["second_s"], r["first_s"] + r["second_s"],
            r["second_object_first_s"]))
    return lines + [""]


def _loads(loads):
    return "/".join("%.1f" % x for x in loads)


def _labels(tables):
    labels = []
    for table in tables:
        labels += [label for label in table if label not in labels]
    return labels


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    ax = axes[0][0]
    if "mlp" in results:
        batches = list(results["mlp"])
        labels = _labels(results["mlp"].values())
        width = 0.8 / len(batches)
        for i, b in enumerate(batches):
            vals = [results["mlp"][b][lb]["ratio"] if lb in results["mlp"][b] else 0 for lb in labels]
            ax.bar([j + i * width for j in range(len(labels))], vals, width, label="batch %s" % b)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=35, ha="right")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel("step time ÷ hand NumPy")
        ax.set_title("MLP training step")
        ax.legend()
    ax = axes[0][1]
    if "tape" in results:
        labels = list(results["tape"])
        ax.bar(range(len(labels)), [results["tape"][lb]["us_per_op"] for lb in labels])
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("µs per op (forward + backward)")
        ax.set_title("Tape overhead, %d ops on 16 float32" % TAPE_OPS)
    ax = axes[1][0]
    if "scale_ops" in results:
        for label, r in results["scale_ops"].items():
            ns = sorted(int(n) for n in r["backward_s"])
            if ns:
                ax.loglog(ns, [r["backward_s"][str(n)] for n in ns], "o-", label=label)
        ax.set_xlabel("recorded ops")
        ax.set_ylabel("backward time (s)")
        ax.set_title("Backward time against tape length")
        ax.legend(fontsize=8)
    ax = axes[1][1]
    if "scale_batch" in results:
        batches = list(results["scale_batch"])
        for label in _labels(results["scale_batch"].values()):
            pts = [(int(b), results["scale_batch"][b][label]["median_s"] * 1e3)
                   for b in batches if label in results["scale_batch"][b]]
            ax.loglog(*zip(*pts, strict=True), "o-", label=label)
        ax.set_xlabel("batch size")
        ax.set_ylabel("ms per step")
        ax.set_title("MLP step time against batch size")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def refuse_without_gpu(runner):
    if "accel_impl" not in runner.modules:
        raise SystemExit("--device gpu refused: %s" % runner.skipped["accel_impl"])


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    runner = Runner(args)
    if args.device == "gpu":
        refuse_without_gpu(runner)
    results = {"meta": machine_info(runner)}
    print("Benchmarking %s on %s (%s threads)" % (", ".join(m.NAME for m in runner.modules.values()),
                                                   results["meta"]["cpu"], args.threads), flush=True)
    agreement = {}
    if "first_call" in args.only:  # first: its subprocesses then run on an idle machine
        results["first_call"] = run_first_call(runner)
    if "mlp" in args.only:
        results["mlp"], agree = run_mlp(runner, MLP_BATCHES)
        agreement.update({"MLP batch %s" % b: a for b, a in agree.items()})
        results["op_counts"] = run_op_counts(runner)
    if "tape" in args.only:
        results["tape"] = run_tape(runner)
        print("  tape done", flush=True)
    if "cnn" in args.only:
        x, y = make_images()
        results["cnn"], agreement["CNN"] = run_train(runner, "CNN", init_cnn(), x, y)
        print("  cnn done", flush=True)
    if "encoder" in args.only:
        x, y = make_sequences()
        results["encoder"], agreement["encoder"] = run_train(runner, "ENCODER", init_encoder(), x, y)
        print("  encoder done", flush=True)
    if agreement:
        results["agreement"] = agreement
    if "scale" in args.only:
        results["scale_ops"] = run_scale_ops(runner, QUICK_SCALE_OPS if args.quick else SCALE_OPS)
        batches = QUICK_SCALE_BATCHES if args.quick else SCALE_BATCHES
        results["scale_batch"], _ = run_mlp(runner, batches, rounds=5, check=False)
    if "memory" in args.only:
        results["memory"] = run_memory(runner, MLP_BATCHES)
    if "conv" in args.only:
        results["conv"] = run_conv(runner)
        print("  conv done", flush=True)
    results["skipped"] = runner.skipped
    results["meta"]["load_average_at_end"] = os.getloadavg()

    report = render(results)
    print(report)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "compare-%s" % datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    with open(stem + ".md", "w") as f:
        f.write(report)
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1, default=str)
    plot(results, stem + ".png")
    print("Wrote %s.{md,json,png}" % stem)


if __name__ == "__main__":
    main()
