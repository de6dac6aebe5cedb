"""SimpleRNN, LSTM, GRU and Bidirectional against Keras 3's recorded numbers (tests/data/keras_rnn.npz, written by
tools/record_keras_rnn.py), gradients through time against finite differences, masking, dropout, fit, errors."""

import json
import os

import numpy as np
import pytest

import accel
from accel.keras import Sequential, layers
from tests.gradcheck import check_grads

DATA = np.load(os.path.join(os.path.dirname(__file__), "..", "data", "keras_rnn.npz"), allow_pickle=False)
CASES = sorted(k[: -len("/config")] for k in DATA.files if k.endswith("/config"))
RNG = np.random.default_rng(7)


def _arrays(name, kind):
    out, i = [], 0
    while "%s/%s%d" % (name, kind, i) in DATA.files:
        out.append(DATA["%s/%s%d" % (name, kind, i)])
        i += 1
    return out


def _make(cfg, **extra):
    layer = getattr(layers, cfg["layer"])(**cfg["kwargs"], **extra)
    if "merge_mode" in cfg:
        layer = layers.Bidirectional(layer, merge_mode=cfg["merge_mode"])
    return layer


def _flat(x):
    return [t for v in x for t in _flat(v)] if isinstance(x, (list, tuple)) else [x]


@pytest.mark.parametrize("name", CASES)
def test_matches_keras(name):
    cfg = json.loads(str(DATA[name + "/config"]))
    layer = _make(cfg)
    x = accel.constant(DATA[name + "/x"])
    layer(x)
    layer.set_weights(_arrays(name, "w"))
    kwargs = {}
    if cfg["mask"]:
        kwargs["mask"] = accel.constant(DATA[name + "/mask"])
    states = [accel.constant(s) for s in _arrays(name, "state")]
    if cfg["initial_state"]:
        kwargs["initial_state"] = states
    sources = [x] + states
    with accel.GradientTape() as tape:
        tape.watch(sources)
        outs = _flat(layer(x, **kwargs))
        proj = accel.add_n([accel.reduce_sum(o * p) for o, p in zip(outs, _arrays(name, "proj"), strict=True)])
    expected = _arrays(name, "out")
    assert len(outs) == len(expected)
    for o, e in zip(outs, expected, strict=True):
        np.testing.assert_allclose(o.numpy(), e, rtol=1e-5, atol=2e-6)
    g_in, g_w = tape.gradient(proj, [sources, layer.trainable_weights])
    for g, e in zip(g_in, _arrays(name, "grad_in"), strict=True):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-4, atol=1e-5)
    want_w = _arrays(name, "grad_w")
    assert len(g_w) == len(want_w)
    for g, e, v in zip(g_w, want_w, layer.trainable_weights, strict=True):
        np.testing.assert_allclose(accel.convert_to_tensor(g).numpy(), e, rtol=1e-4, atol=1e-5, err_msg=v.name)


def test_embedding_mask_zero_reaches_the_lstm_in_a_sequential():
    model = Sequential([layers.Embedding(8, 4, mask_zero=True), layers.LSTM(3, return_sequences=True)])
    ids = DATA["embedding/ids"]
    model(ids)
    model.set_weights(_arrays("embedding", "w"))
    np.testing.assert_allclose(model(ids).numpy(), DATA["embedding/out"], rtol=1e-5, atol=2e-6)
    emb = model.layers[0]
    np.testing.assert_array_equal(emb.compute_mask(ids).numpy(), DATA["embedding/mask"])
    # the same mask travels with the Embedding's output outside a Sequential, and an explicit mask= wins
    e = emb(ids)
    lstm = model.layers[1]
    np.testing.assert_allclose(lstm(e).numpy(), DATA["embedding/out"], rtol=1e-5, atol=2e-6)
    unmasked = lstm(e, mask=np.ones(ids.shape, bool)).numpy()
    assert not np.allclose(unmasked, DATA["embedding/out"], atol=1e-3)
    assert layers.Embedding(8, 4).compute_mask(ids) is None


def test_the_mask_passes_through_bidirectional_to_the_next_rnn():
    model = Sequential([layers.Embedding(8, 4, mask_zero=True),
                        layers.Bidirectional(layers.GRU(3, return_sequences=True)), layers.SimpleRNN(3)])
    ids = DATA["embedding/ids"]
    model(ids)
    model.set_weights(_arrays("embedding_bidirectional", "w"))
    np.testing.assert_allclose(model(ids).numpy(), DATA["embedding_bidirectional/out"], rtol=1e-5, atol=2e-6)


def test_bidirectional_takes_a_given_backward_layer():
    bi = layers.Bidirectional(layers.LSTM(3, return_sequences=True),
                              backward_layer=layers.GRU(2, return_sequences=True, go_backwards=True))
    x = RNG.standard_normal((2, 4, 5)).astype(np.float32)
    out = bi(x).numpy()
    assert out.shape == (2, 4, 5)
    np.testing.assert_allclose(out[:, :, 3:], bi.backward_layer(x).numpy()[:, ::-1], rtol=1e-6)
    np.testing.assert_allclose(out[:, :, :3], bi.forward_layer(x).numpy(), rtol=1e-6)


# --- gradients through time against float64 finite differences ----------------------------------------------

GRAD_CASES = [
    ("SimpleRNN", {}, False),
    ("LSTM", {}, False),
    ("GRU", {}, False),
    ("GRU", {"reset_after": False}, False),
    ("LSTM", {"go_backwards": True}, True),
    ("GRU", {"return_sequences": False}, True),
    ("SimpleRNN", {"go_backwards": True}, True),
]


@pytest.mark.parametrize("kind,kwargs,masked", GRAD_CASES)
def test_gradients_through_time_match_finite_differences(kind, kwargs, masked):
    kwargs = {"return_sequences": True, "return_state": True, **kwargs}
    layer = getattr(layers, kind)(2, dtype="float64", **kwargs)
    x = RNG.standard_normal((2, 4, 3))
    layer(accel.constant(x))
    layer.set_weights([0.6 * RNG.standard_normal(w.shape) for w in layer.get_weights()])
    n_states = len(layer.state_size)
    states = [0.5 * RNG.standard_normal((2, 2)) for _ in range(n_states)]
    mask = accel.constant(np.array([[1, 0, 1, 1], [0, 1, 1, 0]], bool)) if masked else None

    def f(x, *states):
        outs = layer(x, initial_state=list(states), mask=mask)
        return accel.concat([accel.reshape(o, (2, -1)) for o in outs], axis=1)

    check_grads(f, [x] + states)
    # the weights: d(projection)/dw by central differences
    r = accel.constant(RNG.standard_normal(tuple(f(accel.constant(x), *map(accel.constant, states)).shape)))

    def loss():
        return accel.reduce_sum(f(accel.constant(x), *map(accel.constant, states)) * r)

    with accel.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, layer.trainable_weights)
    for v, g in zip(layer.trainable_weights, grads, strict=True):
        base = v.numpy().copy()
        num = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            diffs = []
            for step in (1e-6, -1e-6):
                p = base.copy()
                p[idx] += step
                v.assign(p)
                diffs.append(float(loss()))
            num[idx] = (diffs[0] - diffs[1]) / 2e-6
        v.assign(base)
        np.testing.assert_allclose(accel.convert_to_tensor(g).numpy(), num, rtol=1e-5, atol=1e-7, err_msg=v.name)


# --- weights, initializers, masking, dropout -----------------------------------------------------------------


@pytest.mark.parametrize("kind,kwargs,shapes", [
    ("SimpleRNN", {}, [(5, 3), (3, 3), (3,)]),
    ("LSTM", {}, [(5, 12), (3, 12), (12,)]),
    ("GRU", {}, [(5, 9), (3, 9), (2, 9)]),
    ("GRU", {"reset_after": False}, [(5, 9), (3, 9), (9,)]),
    ("LSTM", {"use_bias": False}, [(5, 12), (3, 12)]),
])
def test_weights_have_keras_names_shapes_and_initial_values(kind, kwargs, shapes):
    layer = getattr(layers, kind)(3, **kwargs)
    layer(np.zeros((2, 4, 5), np.float32))
    names = [v.name.split("/")[-1].split(":")[0] for v in layer.weights]
    assert names == ["kernel", "recurrent_kernel", "bias"][: len(shapes)]
    assert [tuple(v.shape) for v in layer.weights] == shapes
    rk = layer.cell.recurrent_kernel.numpy()
    np.testing.assert_allclose(rk @ rk.T, np.eye(3), atol=1e-5)  # orthogonal rows
    if kind == "LSTM" and "use_bias" not in kwargs:
        np.testing.assert_array_equal(layer.cell.bias.numpy(), np.repeat([0.0, 1.0, 0.0, 0.0], 3))  # unit forget
    elif len(shapes) == 3:
        assert not np.any(layer.cell.bias.numpy())
    assert layer.units == 3 and layer.cell.built


def test_masked_steps_carry_the_previous_output_and_state():
    lstm = layers.LSTM(3, return_sequences=True, return_state=True)
    x = RNG.standard_normal((2, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0, 1], [1, 1, 1, 1, 1]], bool)
    seq, h, c = lstm(x, mask=mask)
    seq = seq.numpy()
    np.testing.assert_array_equal(seq[0, 2], seq[0, 1])
    np.testing.assert_array_equal(seq[0, 3], seq[0, 1])
    # dropping the masked steps gives the same final state
    _, h2, c2 = lstm(x[:1][:, [0, 1, 4]])
    np.testing.assert_allclose(h.numpy()[:1], h2.numpy(), rtol=1e-6)
    np.testing.assert_allclose(c.numpy()[:1], c2.numpy(), rtol=1e-6)


def test_input_dropout_uses_one_mask_for_every_time_step():
    rnn = layers.SimpleRNN(4, activation=None, use_bias=False, dropout=0.5, seed=3, return_sequences=True)
    x = np.abs(RNG.standard_normal((3, 6, 4))).astype(np.float32) + 0.1
    rnn(x)
    rnn.set_weights([np.eye(4, dtype=np.float32), np.zeros((4, 4), np.float32)])
    np.testing.assert_array_equal(rnn(x).numpy(), x)  # inference: no dropout
    ratio = rnn(x, training=True).numpy() / x
    assert set(np.round(np.unique(ratio), 5)) == {0.0, 2.0}
    np.testing.assert_array_equal(ratio, np.broadcast_to(ratio[:, :1], ratio.shape))
    assert not np.array_equal(ratio, rnn(x, training=True).numpy() / x)  # a new mask per call


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_recurrent_dropout_changes_training_outputs_and_keeps_gradients(kind):
    layer = getattr(layers, kind)(3, dropout=0.3, recurrent_dropout=0.4, seed=1)
    x = RNG.standard_normal((4, 5, 2)).astype(np.float32)
    infer = layer(x).numpy()
    np.testing.assert_array_equal(layer(x, training=False).numpy(), infer)
    with accel.GradientTape() as tape:
        out = layer(x, training=True)
        loss = accel.reduce_sum(out * out)
    assert not np.allclose(out.numpy(), infer)
    assert all(g is not None for g in tape.gradient(loss, layer.trainable_weights))


def test_a_tiny_lstm_learns_with_fit():
    accel.random.set_seed(0)
    x = RNG.standard_normal((64, 6, 2)).astype(np.float32)
    y = x[:, :, :1].sum(axis=1) - x[:, 0, 1:]  # needs memory of the first step
    model = Sequential([layers.Input(shape=(6, 2)), layers.LSTM(8), layers.Dense(1)])
    model.compile(optimizer=accel.keras.optimizers.Adam(0.03), loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0).history["loss"]
    assert history[-1] < 0.3 * history[0]


# --- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make,call,error,match", [
    (lambda: layers.LSTM(3), lambda l: l(np.zeros((2, 4), np.float32)), ValueError, "3-D input"),
    (lambda: layers.GRU(3), lambda l: l(np.zeros((2, 4, 5, 1), np.float32)), ValueError, "3-D input"),
    (lambda: layers.LSTM(3), lambda l: l(np.zeros((2, 4, 5), np.float32), initial_state=[np.zeros((2, 3))]),
     ValueError, "2 state"),
    (lambda: layers.GRU(3), lambda l: l(np.zeros((2, 4, 5), np.float32), initial_state=[np.zeros((2, 4))]),
     ValueError, r"initial_state\[0\] must have shape \(2, 3\)"),
    (lambda: layers.SimpleRNN(3), lambda l: l(np.zeros((2, 4, 5), np.float32), mask=np.ones((2, 3), bool)),
     ValueError, "mask must have shape"),
    (lambda: layers.Bidirectional(layers.LSTM(3)),
     lambda l: l(np.zeros((2, 4, 5), np.float32), initial_state=[np.zeros((2, 3))] * 2), ValueError, "4 states"),
    (lambda: layers.Bidirectional(layers.GRU(3), merge_mode="max"), None, ValueError, "merge_mode"),
    (lambda: layers.Bidirectional(layers.Dense(3)), None, ValueError, "RNN layer"),
    (lambda: layers.Bidirectional(layers.GRU(3), backward_layer=layers.GRU(3)), None, ValueError, "go_backwards"),
    (lambda: layers.LSTM(3, stateful=True), None, NotImplementedError, "stateful"),
    (lambda: layers.LSTM(0), None, ValueError, "units"),
    (lambda: layers.GRU(3, dropout=1.5), None, ValueError, "dropout"),
])
def test_bad_arguments_raise_clear_errors(make, call, error, match):
    with pytest.raises(error, match=match):
        layer = make()
        call(layer)


def test_feature_count_is_checked_after_build():
    lstm = layers.LSTM(3)
    lstm(np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match="expected 5 features"):
        lstm(np.zeros((2, 4, 6), np.float32))
