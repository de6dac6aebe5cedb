"""First-call cost of a compiled MLP step (trace + plan/lower + compile), in a fresh process.

    python -m bench.first_call IMPL VARIANT [--batch 32]      # e.g. accel_impl accel.function

Prints one JSON line: seconds to import the framework, to build the step, its first call, its second
call, and the first call of a second step object built afterwards in the same process (what is left
once the framework's one-time initialisation and any cache keyed on the Python function are warm).
bench.compare runs this once per compiled variant, with its own thread settings in the environment.
"""

import argparse
import json
import time


def measure(impl, variant, batch):
    t0 = time.perf_counter()
    from bench.workloads import init_params, load, make_batch  # noqa: PLC0415

    mod = load(impl)
    t_import = time.perf_counter() - t0
    factory = mod.MLP[variant]
    x, y = make_batch(batch)
    t0 = time.perf_counter()
    step = factory(init_params(), x, y, "cpu")
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    step()
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    step()
    t_second = time.perf_counter() - t0
    again = factory(init_params(), x, y, "cpu")
    t0 = time.perf_counter()
    again()
    t_again = time.perf_counter() - t0
    return {"impl": mod.NAME, "variant": variant, "import_s": t_import, "build_s": t_build, "first_s": t_first,
            "second_s": t_second, "second_object_first_s": t_again}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.first_call", description=__doc__.split("\n\n")[0])
    p.add_argument("impl", help="a module of bench.workloads, e.g. accel_impl")
    p.add_argument("variant", help="a key of its MLP table, e.g. accel.function")
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.impl, args.variant, args.batch)), flush=True)


if __name__ == "__main__":
    main()
