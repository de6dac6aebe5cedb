"""pytest-benchmark: backward time against tape length, and MLP step time against batch size.

    pytest bench/bench_scale.py --benchmark-group-by=param
"""

import pytest

from bench.workloads import available, init_params, make_batch, tape_input


def _params(table):
    return [pytest.param(mod, variant, id="%s-%s" % (name, variant),
                         marks=pytest.mark.skipif(bool(why), reason=why or ""))
            for name, mod, variant, why in available(table)]


@pytest.mark.parametrize("n_ops", (100, 1_000, 10_000))
@pytest.mark.parametrize("mod,variant", _params("RECORD"))
def test_backward_vs_ops(benchmark, mod, variant, n_ops):
    try:
        record = mod.RECORD[variant](tape_input(), "cpu")
        record(3)()
    except Exception as e:
        pytest.skip("%s %s: %s: %s" % (mod.NAME, variant, type(e).__name__, e))
    # Only the backward pass is timed; each round records a fresh tape first.
    benchmark.pedantic(lambda backward: backward(), setup=lambda: ((record(n_ops),), {}), rounds=5)


@pytest.mark.parametrize("batch", (16, 64, 256, 1024))
@pytest.mark.parametrize("mod,variant", _params("MLP"))
def test_step_vs_batch(benchmark, mod, variant, batch):
    x, y = make_batch(batch)
    try:
        step = mod.MLP[variant](init_params(), x, y, "cpu")
        step()
    except Exception as e:
        pytest.skip("%s %s: %s: %s" % (mod.NAME, variant, type(e).__name__, e))
    benchmark(step)
