"""pytest-benchmark: one MLP training step per implementation at batch 32 and 256.

    pytest bench/bench_mlp.py --benchmark-group-by=param:batch
"""

import pytest

from bench.workloads import available, init_params, make_batch

CASES = [pytest.param(mod, variant, id="%s-%s" % (name, variant),
                      marks=pytest.mark.skipif(bool(why), reason=why or ""))
         for name, mod, variant, why in available("MLP")]


@pytest.mark.parametrize("batch", (32, 256))
@pytest.mark.parametrize("mod,variant", CASES)
def test_mlp_step(benchmark, mod, variant, batch):
    x, y = make_batch(batch)
    try:
        step = mod.MLP[variant](init_params(), x, y, "cpu")
        step()
    except Exception as e:  # an engine still missing an op
        pytest.skip("%s %s: %s: %s" % (mod.NAME, variant, type(e).__name__, e))
    benchmark(step)
