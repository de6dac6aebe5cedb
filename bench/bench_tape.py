"""pytest-benchmark: the tape chain (200 elementwise ops on 16 float32), forward + backward.

    pytest bench/bench_tape.py   (divide the times by 200 for the cost per op)
"""

import pytest

from bench.workloads import TAPE_OPS, available, tape_input

CASES = [pytest.param(mod, variant, id="%s-%s" % (name, variant),
                      marks=pytest.mark.skipif(bool(why), reason=why or ""))
         for name, mod, variant, why in available("TAPE")]


@pytest.mark.parametrize("mod,variant", CASES)
def test_tape_chain(benchmark, mod, variant):
    try:
        fn = mod.TAPE[variant](tape_input(), TAPE_OPS, "cpu")
        fn()
    except Exception as e:
        pytest.skip("%s %s: %s: %s" % (mod.NAME, variant, type(e).__name__, e))
    benchmark(fn)
