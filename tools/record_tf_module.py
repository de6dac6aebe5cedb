"""Records tf.Module's attribute tracking (variables, submodules, names) into tests/data/tf_module.json.

Run with TensorFlow 2.21: `.venv-bench/bin/python tools/record_tf_module.py`. Each case builds the same
structure from a `tf`-like namespace (TensorFlow or accel), so tests/test_module.py rebuilds it with accel
and compares with what TensorFlow recorded.
"""

from __future__ import annotations

import collections
import json
import os


def _var(tf, name, trainable=True):
    return tf.Variable(1.0, name=name, trainable=trainable)


def case_flat(tf):
    m = tf.Module(name="flat")
    # assigned out of name order: tf.Module walks attributes sorted by name
    m.z = _var(tf, "z")
    m.a = _var(tf, "a")
    m.B = _var(tf, "B")
    m._private = _var(tf, "private")
    m.frozen = _var(tf, "frozen", trainable=False)
    m.not_state = 3.0
    return m


def case_containers(tf):
    m = tf.Module(name="containers")
    v = [_var(tf, "v%d" % i) for i in range(9)]
    m.seq = [v[1], v[0]]
    m.tup = (v[2], [v[3], (v[4],)])
    m.dct = {"b": v[5], "a": v[6], "c": {"y": v[7], "x": v[8]}}
    m.alias = v[0]  # the same variable again: listed once
    m.also = [v[6], _var(tf, "late", trainable=False)]
    return m


def case_nested(tf):
    class Block(tf.Module):
        def __init__(self, i, name=None):
            super().__init__(name=name)
            self.w = _var(tf, "w%d" % i)
            self.stat = _var(tf, "stat%d" % i, trainable=False)

    class Net(tf.Module):
        def __init__(self):
            super().__init__()
            self.head = Block(9, name="head")
            self.blocks = [Block(0, name="b0"), Block(1, name="b1")]
            self.blocks[1].inner = Block(2, name="inner")
            self.by_key = {"z": Block(3, name="z_block"), "a": self.head}  # head twice: visited once
            self.bias = _var(tf, "bias")

    return Net()


def case_cycle(tf):
    parent = tf.Module(name="parent")
    child = tf.Module(name="child")
    parent.child = child
    child.parent = parent
    child.w = _var(tf, "cw")
    parent.w = _var(tf, "pw")
    return parent


def case_namedtuple(tf):
    Pair = collections.namedtuple("Pair", ["second", "first"])
    m = tf.Module(name="nt")
    m.pair = Pair(_var(tf, "s"), _var(tf, "f"))
    return m


CASES = {
    "flat": case_flat,
    "containers": case_containers,
    "nested": case_nested,
    "cycle": case_cycle,
    "namedtuple": case_namedtuple,
}


def describe(m):
    """The names tf.Module reports, in its order."""
    return {
        "variables": [v.name for v in m.variables],
        "trainable_variables": [v.name for v in m.trainable_variables],
        "non_trainable_variables": [v.name for v in m.non_trainable_variables],
        "submodules": [s.name for s in m.submodules],
    }


def names(tf):
    """Module names and name scopes."""

    class MyDenseModule(tf.Module):
        @tf.Module.with_name_scope
        def scope_name(self):
            return tf.Module(name="created_inside").name_scope.name

    out = {}
    out["default"] = tf.Module().name
    out["subclass_default"] = MyDenseModule().name
    m = MyDenseModule(name="given")
    out["given"] = m.name
    out["name_scope"] = m.name_scope.name
    out["nested_scope"] = m.scope_name()
    bad = {}
    for name in ("1abc", "a b", "a/b", "", "ok_name"):
        try:
            tf.Module(name=name)
            bad[name] = None
        except ValueError as e:
            bad[name] = "ValueError: " + str(e)
    out["invalid"] = bad
    return out


def record(tf):
    return {"cases": {k: describe(f(tf)) for k, f in CASES.items()}, "names": names(tf)}


if __name__ == "__main__":
    import tensorflow as tf

    data = {"tensorflow": tf.__version__, **record(tf)}
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tf_module.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(data, indent=1))
