"""accel.data against TF 2.21's recorded pipelines (tests/data/tf_data.json from tools/record_tf_data.py),
shuffle's properties, the background prefetch, bad input, and Keras fit/evaluate/predict on datasets."""

import gc
import json
import os
import threading
import time

import numpy as np
import pytest

import accel as tf
from accel.errors import InvalidArgumentError
from tests.tf_data_cases import CASES, X, Y, _plain, cardinalities

REC = json.load(open(os.path.join(os.path.dirname(__file__), "data", "tf_data.json")))
D = tf.data.Dataset


@pytest.mark.parametrize("name", sorted(CASES))
def test_pipeline_matches_tensorflow(name):
    got = CASES[name](tf)
    want = REC["cases"][name]
    assert got["cardinality"] == want["cardinality"]
    assert got["elements"] == want["elements"]


def test_cardinalities_and_constants_match_tensorflow():
    assert cardinalities(tf) == REC["cardinalities"]
    assert tf.data.experimental.AUTOTUNE == tf.data.AUTOTUNE


def test_element_spec_and_len():
    ds = D.from_tensor_slices((X, Y))
    assert ds.element_spec == (tf.TensorSpec([2], tf.float32), tf.TensorSpec([], tf.int64))
    assert ds.batch(4).element_spec[0] == tf.TensorSpec([None, 2], tf.float32)
    assert ds.batch(4, drop_remainder=True).element_spec[0] == tf.TensorSpec([4, 2], tf.float32)
    assert len(ds.batch(4)) == 3
    with pytest.raises(TypeError, match="infinite"):
        len(ds.repeat())
    with pytest.raises(TypeError, match="unknown"):
        len(ds.filter(lambda x, y: y > 2))


def test_iteration_yields_tensors_and_repeats():
    ds = D.from_tensor_slices((X, Y)).batch(4)
    first = [(a.numpy(), b.numpy()) for a, b in ds]
    second = [(a.numpy(), b.numpy()) for a, b in ds]
    assert all(isinstance(t, tf.Tensor) for t in next(iter(ds)))
    assert all(np.array_equal(p[0], q[0]) for p, q in zip(first, second))


@pytest.mark.parametrize("buffer", [1, 3, 10, 100])
def test_shuffle_is_a_permutation_seeded_and_local_to_its_buffer(buffer):
    ds = D.range(10).shuffle(buffer, seed=4)
    a = [int(v) for v in ds.as_numpy_iterator()]
    b = [int(v) for v in ds.as_numpy_iterator()]
    assert sorted(a) == list(range(10)) and sorted(b) == list(range(10))
    if buffer == 1:
        assert a == list(range(10))  # a buffer of one cannot reorder
    # TF's buffer rule: the i-th output comes from the first i + buffer inputs
    assert all(v < i + buffer for i, v in enumerate(a))
    if buffer >= 10:
        assert a != b  # reshuffled each iteration
        c = [int(v) for v in D.range(10).shuffle(buffer, seed=4, reshuffle_each_iteration=False).as_numpy_iterator()]
        d = [int(v) for v in D.range(10).shuffle(buffer, seed=4, reshuffle_each_iteration=False).as_numpy_iterator()]
        assert c == d


def test_shuffle_follows_the_global_seed():
    tf.random.set_seed(11)
    a = [int(v) for v in D.range(20).shuffle(20).as_numpy_iterator()]
    tf.random.set_seed(11)
    b = [int(v) for v in D.range(20).shuffle(20).as_numpy_iterator()]
    assert a == b


def _threads():
    return [t for t in threading.enumerate() if t.name == "accel-data-prefetch"]


def test_prefetch_runs_ahead_in_a_thread_and_stops_when_dropped():
    produced = []

    def slow(i):
        produced.append(int(i))
        return i

    ds = D.range(100).map(slow).prefetch(3)
    it = iter(ds)
    assert int(next(it)) == 0
    deadline = time.time() + 5
    while len(produced) < 4 and time.time() < deadline:
        time.sleep(0.01)
    assert len(produced) >= 4  # the producer filled its buffer while the consumer waited
    assert len(produced) <= 1 + 3 + 1  # ...but no further than the buffer allows
    assert _threads()
    del it
    gc.collect()
    deadline = time.time() + 5
    while _threads() and time.time() < deadline:
        time.sleep(0.01)
    assert not _threads()


def test_prefetch_stops_after_a_break_and_after_exhaustion():
    for v in D.range(1000).prefetch(2):
        if int(v) == 3:
            break
    gc.collect()
    assert [int(v) for v in D.range(5).prefetch(2)] == [0, 1, 2, 3, 4]
    deadline = time.time() + 5
    while _threads() and time.time() < deadline:
        time.sleep(0.01)
    assert not _threads()


def test_prefetch_hands_a_producer_error_to_the_consumer():
    def bad(i):
        if int(i) == 2:
            raise RuntimeError("broken element 2")
        return i

    it = iter(D.range(5).map(bad).prefetch(2))
    assert [int(next(it)), int(next(it))] == [0, 1]
    with pytest.raises(RuntimeError, match="broken element 2"):
        next(it)


def test_from_generator_checks_its_signature():
    def gen():
        yield np.zeros(2, np.float32)
        yield np.zeros(3, np.float32)

    ds = D.from_generator(gen, output_signature=tf.TensorSpec([2], tf.float32))
    it = iter(ds)
    next(it)
    with pytest.raises(TypeError, match="does not match"):
        next(it)
    assert int(D.from_generator(lambda: iter([1, 2])).cardinality()) == tf.data.UNKNOWN_CARDINALITY


BAD = [
    ("batch size 0", lambda: D.range(3).batch(0), InvalidArgumentError, "batch_size must be > 0"),
    ("shuffle buffer 0", lambda: D.range(3).shuffle(0), InvalidArgumentError, "buffer_size"),
    ("ragged first dims", lambda: D.from_tensor_slices((np.zeros(3), np.zeros(4))), ValueError, r"\(3,\), \(4,\)"),
    ("scalar slices", lambda: D.from_tensor_slices(np.float32(1.0)), ValueError, "first dimension"),
    ("files", lambda: tf.data.TFRecordDataset("x.tfrecord"), NotImplementedError, "in-memory"),
    ("list_files", lambda: D.list_files("*.txt"), NotImplementedError, "in-memory"),
    ("cache to a file", lambda: D.range(3).cache("f"), NotImplementedError, "memory"),
    ("mixed shapes batch", lambda: list(D.from_generator(lambda: iter([np.zeros(2), np.zeros(3)])).batch(2)),
     InvalidArgumentError, "different shapes"),
    ("filter not bool", lambda: list(D.range(3).filter(lambda i: i)), InvalidArgumentError, "scalar bool"),
]


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input(case):
    _, fn, exc, match = case
    with pytest.raises(exc, match=match):
        fn()


def test_plain_helper_matches_recorder():
    assert _plain((np.int64(1), {"a": np.float32(2)})) == [{"dtype": "int64", "value": 1},
                                                           {"a": {"dtype": "float32", "value": 2.0}}]


# --- batch's row-gather path, tapes, TF 2.21 literals, the GPU copy (second helper's additions) -----------------

GATHER_PIPELINES = [
    ("batch", lambda d: d.batch(4)),
    ("batch drop", lambda d: d.batch(4, drop_remainder=True)),
    ("shuffle batch", lambda d: d.shuffle(5, seed=3).batch(4)),
    ("shuffle repeat batch", lambda d: d.shuffle(50, seed=3).repeat(2).batch(5)),
    ("repeat shuffle take skip", lambda d: d.repeat(3).shuffle(7, seed=1).take(30).skip(3).batch(6, True)),
    ("skip all", lambda d: d.skip(-1).batch(3)),
    ("take none", lambda d: d.take(0).batch(3)),
]


@pytest.mark.parametrize("pipeline", [p[1] for p in GATHER_PIPELINES], ids=[p[0] for p in GATHER_PIPELINES])
def test_batch_gathering_rows_matches_batching_elements(pipeline):
    # an identity map hides the arrays from batch, which then stacks element by element
    X23, Y23 = np.arange(46, dtype=np.float32).reshape(23, 2), np.arange(23)
    fast = pipeline(D.from_tensor_slices((X23, Y23)))
    slow = pipeline(D.from_tensor_slices((X23, Y23)).map(lambda x, y: (x, y)))
    for _ in range(2):  # the second pass reshuffles, the same way on both paths
        a, b = [_plain(e) for e in fast.as_numpy_iterator()], [_plain(e) for e in slow.as_numpy_iterator()]
        assert a == b
    assert len(a) == int(fast.cardinality())


def test_pipeline_runs_outside_gradient_tapes():
    v = tf.Variable(2.0)
    ds = D.from_tensor_slices(np.arange(4.0, dtype=np.float32)).map(lambda x: x * v).batch(2)
    with tf.GradientTape() as tape:
        total = tf.add_n([tf.reduce_sum(b) for b in ds]) * v
    assert float(tape.gradient(total, v)) == 12.0  # TF 2.21: 12.0 (the map is not differentiated)


# outputs of TF 2.21 for the same calls, taken live with .venv-bench
TF_LITERALS = [
    ("filter of empty is unknown", lambda: int(D.range(0).filter(lambda x: x > 0).cardinality()), -2),
    ("enumerate keeps cardinality", lambda: int(D.range(4).enumerate().cardinality()), 4),
    ("zip with infinite", lambda: int(D.zip(D.range(3).repeat(), D.range(5)).cardinality()), 5),
    ("concatenate unknown", lambda: int(D.range(3).filter(lambda x: x > 0).concatenate(D.range(2)).cardinality()),
     -2),
    ("take 0 of infinite", lambda: int(D.range(7).repeat().take(0).cardinality()), 0),
    ("generator converts to the signature", lambda: [int(v) for v in D.from_generator(
        lambda: iter([1.5]), output_signature=tf.TensorSpec((), tf.int64)).as_numpy_iterator()], [1]),
    ("generator tuple", lambda: [(int(a), float(b)) for a, b in D.from_generator(
        lambda: iter([(1, 2.0), (3, 4.0)]), output_signature=(tf.TensorSpec((), tf.int64),
                                                              tf.TensorSpec((), tf.float32))).as_numpy_iterator()],
     [(1, 2.0), (3, 4.0)]),
    ("partial pass is not cached", lambda: (lambda d: ([int(x) for x, _ in zip(d, range(2))], [int(x) for x in d]))(
        D.range(4).cache()), ([0, 1], [0, 1, 2, 3])),
    ("reshuffle_each_iteration=False repeats", lambda: (lambda d: [int(x) for x in d] == [int(x) for x in d])(
        D.range(20).shuffle(20, seed=1, reshuffle_each_iteration=False)), True),
    ("shuffle().repeat() reshuffles", lambda: (lambda v: v[:20] == v[20:])(
        [int(x) for x in D.range(20).shuffle(20, seed=1).repeat(2)]), False),
    ("map returning a list gives a tuple", lambda: type(D.range(3).map(lambda x: [x, x * 2]).element_spec), tuple),
    ("batched map keeps the batch dim unknown",
     lambda: D.range(3).batch(2).map(lambda x: tf.reshape(x, [-1, 1])).element_spec, tf.TensorSpec([None, 1],
                                                                                                    tf.int64)),
]


@pytest.mark.parametrize("case", TF_LITERALS, ids=[c[0] for c in TF_LITERALS])
def test_matches_tensorflow_literal(case):
    _, fn, want = case
    assert fn() == want


def test_unbatch_rejects_mismatched_static_first_dimensions():
    with pytest.raises(ValueError, match="matching leading dimension"):  # TF 2.21: ValueError at unbatch()
        D.from_tensors((np.zeros((2, 1)), np.zeros(3))).unbatch()


def test_batches_are_copied_to_the_current_gpu_by_the_prefetch_thread(monkeypatch):
    from accel import backend

    moved = []

    def fake_to_device(a, dev):  # no GPU here: record who copies where, keep the NumPy array
        moved.append((threading.current_thread().name, dev.kind))
        return a

    monkeypatch.setattr(backend, "to_device", fake_to_device)
    monkeypatch.setattr(backend, "current_device", lambda: backend.Device("gpu", 0))
    ds = D.from_tensor_slices((X, Y)).batch(4)
    assert len(list(ds.prefetch(2))) == 3
    assert set(moved) == {("accel-data-prefetch", "gpu")} and len(moved) == 6  # two components, three batches
    moved.clear()
    assert len(list(ds)) == 3  # without prefetch the iterating thread copies
    assert set(moved) == {(threading.current_thread().name, "gpu")}
    moved.clear()
    list(ds.prefetch(2).as_numpy_iterator())  # NumPy output stays on the host
    assert moved == []
