"""accel.Module against tf.Module: attribute tracking order and names recorded from TensorFlow 2.21
(tools/record_tf_module.py -> tests/data/tf_module.json), rebuilt here with accel."""

import importlib.util
import json
import os

import numpy as np
import pytest

import accel
from accel.module import Module, current_name_scope, name_scope

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "tests", "data", "tf_module.json")) as f:
    TF = json.load(f)

_spec = importlib.util.spec_from_file_location("record_tf_module", os.path.join(ROOT, "tools", "record_tf_module.py"))
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)


def test_accel_module_is_the_lazy_export():
    assert accel.Module is Module


@pytest.mark.parametrize("case", sorted(record.CASES))
@pytest.mark.parametrize("prop", ["variables", "trainable_variables", "non_trainable_variables", "submodules"])
def test_tracking_matches_tensorflow(case, prop):
    got = record.describe(record.CASES[case](accel))
    assert got[prop] == TF["cases"][case][prop]


@pytest.mark.parametrize("key", ["default", "subclass_default", "given", "name_scope", "nested_scope"])
def test_names_match_tensorflow(key):
    assert record.names(accel)[key] == TF["names"][key]


@pytest.mark.parametrize("name", sorted(TF["names"]["invalid"]))
def test_invalid_names_as_tensorflow(name):
    assert record.names(accel)["invalid"][name] == TF["names"]["invalid"][name]


def test_tracking_follows_later_mutation():
    m = Module(name="m")
    m.layers = []
    v = accel.Variable(1.0, name="v")
    m.layers.append(v)  # a plain list: walked when asked, so appends are seen
    assert len(m.variables) == 1 and m.variables[0] is v
    m.layers.pop()
    assert m.variables == ()


def test_with_path():
    m = Module(name="m")
    m.sub = Module(name="sub")
    m.sub.w = accel.Variable(1.0, name="w")
    m.d = {"k": [accel.Variable(2.0, name="x")]}
    paths = [p for p, _ in m._flatten(predicate=lambda x: isinstance(x, accel.Variable), with_path=True)]
    assert paths == [("d", "k", 0), ("sub", "w")]


def test_unsortable_dict_keys_name_the_property():
    m = Module(name="m")
    m.bad = {1: accel.Variable(1.0), "a": accel.Variable(2.0)}
    with pytest.raises(ValueError, match="'bad'"):
        _ = m.variables


@pytest.mark.parametrize(
    "scopes, expected",
    [
        (["a"], "a/"),
        (["a", "b"], "a/b/"),
        (["a", "abs/"], "abs/"),
        (["a", ""], ""),
    ],
)
def test_name_scope_nesting(scopes, expected):
    def enter(rest):
        if not rest:
            return current_name_scope()
        with name_scope(rest[0]):
            return enter(rest[1:])

    assert enter(scopes) == expected
    assert current_name_scope() == ""


def test_with_name_scope_restores_on_error():
    class M(Module):
        @Module.with_name_scope
        def fail(self):
            assert current_name_scope() == "m/"
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        M(name="m").fail()
    assert current_name_scope() == ""


def test_keras_layers_are_modules():
    from accel.keras import Sequential
    from accel.keras.layers import Dense

    model = Sequential([Dense(4), Dense(2)])
    model(np.ones((1, 3), np.float32))
    assert isinstance(model, Module)
    # Keras's own order for the layer's variables stays as it is
    assert [v.name for v in model.variables] == [v.name for v in model.weights]
    assert [s.name for s in model.submodules] == [layer.name for layer in model.layers]

    holder = Module(name="holder")
    holder.net = model
    holder.scale = accel.Variable(2.0, name="scale")
    # a Module holding a Keras model finds the model's weights after its own (TF 2.21's tf.Module does not
    # look into Keras 3 layers, which are not tf.Modules there)
    assert [id(v) for v in holder.variables] == [id(v) for v in [holder.scale] + model.weights]


def test_frozen_layer_variables_are_non_trainable_for_module():
    from accel.keras.layers import Dense

    layer = Dense(2)
    layer(np.ones((1, 3), np.float32))
    holder = Module(name="h")
    holder.layer = layer
    layer.trainable = False
    assert holder.trainable_variables == ()
    assert len(holder.non_trainable_variables) == 2
