"""Device operations and bytes per MLP training step (784-512-512-10, Adam, batch 32).

    python -m bench.device_ops [--batch 32] [--json out.json]

accel counts with accel.profiler on the NumPy backend (each count is one kernel launch on a
GPU) in each fused mode and for a replay of the captured step (accel.function); beside it the
minimum a hand-fused step needs (derived below from the step's math, not measured) and PyTorch
eager's top-level ATen operators (torch.profiler) when torch is importable. Deterministic: no timing involved.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bench.workloads import LAYERS, init_params, make_batch


def hand_fused_minimum(layers=LAYERS, batch=32, itemsize=4):
    """(rows of (step, ops, bytes), total ops, total bytes) for a step written by hand with every
    elementwise chain fused into its neighbour: per layer a GEMM and a bias(+ReLU) epilogue, one
    loss kernel that also writes the mean, one kernel for the loss gradient (mean scale and
    softmax in it), per layer dW GEMM, db column sum, dX GEMM and ReLU mask (none for the input),
    and one multi-tensor Adam over all parameters. Bytes count each array an operation touches
    once (accel.profiler's convention for kernels; in-place arrays are not counted twice)."""
    n_layers = len(layers) - 1
    widths = layers[1:]
    n_params = sum(a * b + b for a, b in zip(layers[:-1], layers[1:], strict=True))
    act = lambda w: batch * w * itemsize  # noqa: E731
    rows = []
    for i in range(n_layers):
        a, b = layers[i], layers[i + 1]
        rows.append(("forward GEMM %d" % (i + 1), 1, act(a) + a * b * itemsize + act(b)))
        rows.append(("forward bias%s %d (in place)" % ("+ReLU" if i < n_layers - 1 else "", i + 1), 1,
                     act(b) + b * itemsize))
    rows.append(("loss: row softmax-xent + mean", 1, act(widths[-1]) + batch * 8 + itemsize))
    rows.append(("loss gradient (softmax - onehot) / batch", 1, 2 * act(widths[-1]) + batch * 8))
    for i in reversed(range(n_layers)):
        a, b = layers[i], layers[i + 1]
        rows.append(("dW GEMM %d" % (i + 1), 1, act(a) + act(b) + a * b * itemsize))
        rows.append(("db column sum %d" % (i + 1), 1, act(b) + b * itemsize))
        if i > 0:
            rows.append(("dX GEMM %d" % (i + 1), 1, act(b) + a * b * itemsize + act(a)))
            rows.append(("ReLU mask %d (in place)" % i, 1, 2 * act(a)))
    rows.append(("multi-tensor Adam (p, m, v in place; g)", 1, 4 * n_params * itemsize))
    return rows, sum(r[1] for r in rows), sum(r[2] for r in rows)


def accel_counts(batch=32):
    """{mode: (ops, bytes, per-op table)} for accel's step in fused modes never/auto/always."""
    import accel  # noqa: PLC0415

    from bench.workloads import accel_impl  # noqa: PLC0415

    x, y = make_batch(batch)
    out = {}
    from accel import cpu_kernels  # noqa: PLC0415

    cpu_kernels.wait_warmed(300)  # the steady state: "auto" uses the CPU twins once numba has loaded
    runs = [("fused %s" % mode, mode, "eager") for mode in ("never", "auto", "always")]
    runs += [("%s (replay)" % v, "auto", v) for v in ("accel.function", "accel.function jit")]
    for label, mode, variant in runs:
        with accel.config.fused(mode):
            step = accel_impl.MLP[variant](init_params(), x, y, "cpu")
            step()  # builds the optimizer's slots (traces a captured step)
            step()
            with accel.profiler.profile() as prof:
                step()
        out[label] = (prof.total_ops, prof.total_bytes, prof.rows())
    return out


def graph_launches(batch=32):
    """Launch calls per replay of the captured MLP step if it ran on a GPU with CUDA graphs, derived from the
    plan's graph segments (accel.function.graph_launch_calls), not measured: {mode: counts} for
    ACCEL_CUDA_GRAPHS=1 (cuBLAS GEMMs and the optimizer's host step outside the graphs) and =whole_step."""
    import accel  # noqa: PLC0415
    from accel.function import graph_launch_calls  # noqa: PLC0415

    from bench.workloads import accel_impl  # noqa: PLC0415

    x, y = make_batch(batch)
    with accel.config.fused("auto"):
        step = accel_impl.MLP["accel.function"](init_params(), x, y, "cpu")
        step()
        step()
    plan = next(p for cf in step._step._cache.values() for p in cf.plans)
    return {mode: graph_launch_calls(plan, whole_step=mode == "whole_step") for mode in ("1", "whole_step")}


def torch_counts(batch=32):
    try:
        from bench.workloads import torch_impl  # noqa: PLC0415
    except ImportError as e:
        return {"skipped": "%s: %s" % (type(e).__name__, e)}
    x, y = make_batch(batch)
    counts = {}
    for variant, factory in torch_impl.MLP.items():
        step = factory(init_params(), x, y, "cpu")
        step()
        counts[variant] = torch_impl.count_ops(step)
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    acc = accel_counts(args.batch)
    rows, min_ops, min_bytes = hand_fused_minimum(batch=args.batch)
    tor = torch_counts(args.batch)
    print("## Device ops per MLP training step (784-512-512-10, Adam, batch %d)\n" % args.batch)
    print("| implementation | device ops | MB read+written |")
    print("|---|---:|---:|")
    for mode, (ops, nbytes, _) in acc.items():
        print("| accel, %s | %d | %.1f |" % (mode, ops, nbytes / 1e6))
    print("| hand-fused minimum (derived) | %d | %.1f |" % (min_ops, min_bytes / 1e6))
    for variant, n in tor.items():
        print("| PyTorch eager %s | %s | |" % (variant, n))
    print("\nOn a GPU with CUDA graphs (derived from the plan's graph segments, not run on a GPU):\n")
    print("| ACCEL_CUDA_GRAPHS | launch calls per replay | graph launches | steps in graphs | input/output copies "
          "| uncaptured steps |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, c in graph_launches(args.batch).items():
        print("| %s | %d | %d | %d | %d | %d |" % (mode, c["total"], c["graphs"], c["in_graphs"], c["copies"],
                                                   c["uncaptured"]))
    for label in ("fused always", "accel.function jit (replay)"):
        print("\n### accel, %s, by op\n" % label)
        print("| op | device ops | MB |")
        print("|---|---:|---:|")
        for name, ops, nbytes in acc[label][2]:
            print("| %s | %d | %.3f |" % (name, ops, nbytes / 1e6))
    print("\n### hand-fused minimum\n")
    print("| step | ops | MB |")
    print("|---|---:|---:|")
    for name, ops, nbytes in rows:
        print("| %s | %d | %.3f |" % (name, ops, nbytes / 1e6))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"accel": {m: {"ops": v[0], "bytes": v[1], "by_op": v[2]} for m, v in acc.items()},
                       "minimum": {"ops": min_ops, "bytes": min_bytes, "steps": rows}, "torch": tor},
                      f, indent=1, default=lambda o: o.item() if isinstance(o, np.generic) else str(o))


if __name__ == "__main__":
    main()
