"""Bucketed all-reduce: layouts at odd bucket sizes, and gradients arriving complete in the right variables."""

import pathlib

import numpy as np
import pytest

import accel as tf
import accel.distribute as dist
from accel.distribute.buckets import plan_buckets
from tests.distribute.mpi_util import mpirun

HERE = pathlib.Path(__file__).parent

SHAPES = [(3, 5), (7,), (1,), (4, 4, 2), (13,), (2, 3), (29,)]


@pytest.mark.parametrize("bucket_bytes", [4, 52, 53, 60, 124, 10**6])
def test_the_layout_covers_every_gradient_once_within_the_cap(bucket_bytes):
    specs = [(i, s, np.float32, "cpu") for i, s in reversed(list(enumerate(SHAPES)))]
    buckets = plan_buckets(specs, bucket_bytes)
    seen = [pos for b in buckets for pos, *_ in b.entries]
    assert sorted(seen) == list(range(len(SHAPES))) and seen == list(reversed(range(len(SHAPES))))
    for b in buckets:
        offsets = [off for _, off, _, _ in b.entries]
        assert offsets == sorted(offsets) and b.size == sum(n for _, _, n, _ in b.entries)
        assert b.size * 4 <= bucket_bytes or len(b.entries) == 1  # only a gradient larger than a bucket exceeds it
    if bucket_bytes == 10**6:
        assert len(buckets) == 1


def test_dtypes_get_their_own_buckets():
    buckets = plan_buckets([(0, (3,), np.float32, "cpu"), (1, (3,), np.float64, "cpu"), (2, (3,), np.float32, "cpu")],
                           10**6)
    assert [(b.dtype, [e[0] for e in b.entries]) for b in buckets] == [(np.float32, [0, 2]), (np.float64, [1])]


def test_bucket_bytes_is_checked():
    with pytest.raises(ValueError, match="bucket_bytes: expected a positive number of bytes, got 0"):
        dist.Reducer(None, 0)


@pytest.mark.parametrize("bucket_bytes", [52, 53, 1000])
def test_a_model_larger_than_a_bucket_gets_every_gradient_back_summed(logical_cpus, bucket_bytes):
    logical_cpus(2)
    s = dist.MirroredStrategy(bucket_bytes=bucket_bytes)
    rng = np.random.default_rng(7)
    grads = [[rng.normal(size=sh).astype(np.float64 if i == 3 else np.float32) for i, sh in enumerate(SHAPES)]
             for _ in range(2)]
    for g in grads:
        g[4] = None  # a variable without a gradient keeps None everywhere

    def fn():
        r = dist.get_replica_context().replica_id_in_sync_group
        out = dist.all_reduce_gradients([None if g is None else tf.constant(g) for g in grads[r]])
        reducer = s._reducer(dist.get_replica_context())
        return out, len(reducer.layout([None if g is None else g for g in grads[r]])[1])

    out, nb = s.run(fn)
    assert nb.values[0] > 1 if bucket_bytes < 1000 else True
    for i in range(len(SHAPES)):
        for r in range(2):
            got = out[i].values[r] if out[i] is not None else None
            if grads[0][i] is None:
                assert got is None
                continue
            want = grads[0][i] + grads[1][i]
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("ranks", [2, 3])
def test_ring_and_allreduce_buckets_sum_every_ranks_gradients(ranks):
    """mpi_ring.py: every bucket size and ring threshold, SUM and MEAN, blocking and fed out of order."""
    p, _ = mpirun(HERE / "mpi_ring.py", n=ranks, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    for r in range(ranks):
        assert "RANK %d OK" % r in p.stdout, p.stdout + p.stderr
