"""Deterministic tf.data pipelines run on TensorFlow 2.21 and on accel.data: tools/record_tf_data.py records
TF's elements into tests/data/tf_data.json, tests/test_data.py checks accel against them."""

import numpy as np

X = np.arange(20, dtype=np.float32).reshape(10, 2)
Y = np.arange(10, dtype=np.int64)


def _plain(element):
    if isinstance(element, dict):
        return {k: _plain(v) for k, v in sorted(element.items())}
    if isinstance(element, (tuple, list)):
        return [_plain(v) for v in element]
    a = np.asarray(element)
    return {"dtype": a.dtype.name, "value": a.tolist()}


def _run(ds):
    return {"elements": [_plain(e) for e in ds.as_numpy_iterator()], "cardinality": int(ds.cardinality())}


CASES = {
    "slices_tuple_batch": lambda tf: _run(tf.data.Dataset.from_tensor_slices((X, Y)).batch(4)),
    "slices_batch_drop": lambda tf: _run(tf.data.Dataset.from_tensor_slices((X, Y)).batch(4, drop_remainder=True)),
    "slices_dict": lambda tf: _run(tf.data.Dataset.from_tensor_slices({"a": X, "b": Y}).take(3)),
    "slices_python_lists": lambda tf: _run(tf.data.Dataset.from_tensor_slices([[1.0, 2.0], [3.0, 4.0]])),
    "slices_python_ints": lambda tf: _run(tf.data.Dataset.from_tensor_slices([1, 2, 3])),
    "map_tuple_args": lambda tf: _run(tf.data.Dataset.from_tensor_slices((X, Y)).map(
        lambda x, y: (x * 2.0, y + 1)).batch(3)),
    "map_dict": lambda tf: _run(tf.data.Dataset.from_tensor_slices({"a": X, "b": Y}).map(
        lambda d: d["a"][0] + tf.cast(d["b"], tf.float32))),
    "filter_repeat_take": lambda tf: _run(tf.data.Dataset.range(10).filter(lambda i: i % 3 == 0).repeat(3).take(7)),
    "range_args": lambda tf: _run(tf.data.Dataset.range(2, 11, 3)),
    "repeat_batch": lambda tf: _run(tf.data.Dataset.range(5).repeat(2).batch(3)),
    "skip_take": lambda tf: _run(tf.data.Dataset.range(10).skip(3).take(4)),
    "unbatch": lambda tf: _run(tf.data.Dataset.from_tensor_slices(X).batch(3).unbatch()),
    "zip": lambda tf: _run(tf.data.Dataset.zip((tf.data.Dataset.range(3), tf.data.Dataset.range(10, 15)))),
    "concatenate": lambda tf: _run(tf.data.Dataset.range(3).concatenate(tf.data.Dataset.range(7, 9))),
    "enumerate": lambda tf: _run(tf.data.Dataset.from_tensor_slices(Y[:3]).enumerate(5)),
    "from_tensors": lambda tf: _run(tf.data.Dataset.from_tensors((X[:2], Y[:2]))),
    "cache_prefetch": lambda tf: _run(tf.data.Dataset.range(6).cache().prefetch(tf.data.AUTOTUNE).batch(4)),
    "batch_then_map": lambda tf: _run(tf.data.Dataset.from_tensor_slices((X, Y)).batch(5).map(
        lambda x, y: tf.reduce_sum(x) + tf.cast(tf.reduce_sum(y), tf.float32))),
    "take_more_than_there": lambda tf: _run(tf.data.Dataset.range(3).take(10)),
    "skip_all": lambda tf: _run(tf.data.Dataset.range(3).skip(5)),
}


def cardinalities(tf):
    d = tf.data.Dataset
    return {
        "repeat_forever": int(d.range(3).repeat().cardinality()),
        "filter": int(d.range(3).filter(lambda i: i > 0).cardinality()),
        "take_of_forever": int(d.range(3).repeat().take(5).cardinality()),
        "batch_ceil": int(d.range(10).batch(4).cardinality()),
        "constants": [tf.data.AUTOTUNE, tf.data.INFINITE_CARDINALITY, tf.data.UNKNOWN_CARDINALITY],
    }
