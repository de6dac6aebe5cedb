"""Records Keras 3's recurrent layers (SimpleRNN, LSTM, GRU, Bidirectional) into tests/data/keras_rnn.npz.

    .venv-bench/bin/python tools/record_keras_rnn.py     # tensorflow-cpu==2.21.* (Keras 3 as tf.keras)

For each case: its configuration (JSON under `<case>/config`), the weights set on the layer, the inputs (and
mask and initial states where used), every output (`out0`, `out1`, ...) and the gradients of the random
projection sum(out_i * proj_i) of all outputs with respect to the inputs, the initial states and each weight.
"""

import itertools
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

B, T, D, UNITS = 3, 5, 4, 3
# sample 0 sees every step; sample 1 has its first and a middle step masked; sample 2 its tail
MASK = np.array([[1, 1, 1, 1, 1], [0, 1, 1, 0, 1], [1, 1, 0, 0, 0]], dtype=bool)


def cases():
    out = {}
    for layer, seq, state, back, mask in itertools.product(
            ("SimpleRNN", "LSTM", "GRU"), (False, True), (False, True), (False, True), (False, True)):
        name = "%s_seq%d_state%d_back%d_mask%d" % (layer, seq, state, back, mask)
        out[name] = dict(layer=layer, kwargs=dict(units=UNITS, return_sequences=seq, return_state=state,
                                                  go_backwards=back), mask=mask, initial_state=False)
    for layer in ("SimpleRNN", "LSTM", "GRU"):
        for mask in (False, True):
            out["%s_initial_state_mask%d" % (layer, mask)] = dict(
                layer=layer, kwargs=dict(units=UNITS, return_sequences=True, return_state=True), mask=mask,
                initial_state=True)
    extra = {
        "GRU_reset_before": dict(units=UNITS, reset_after=False, return_sequences=True, return_state=True),
        "GRU_reset_before_nobias": dict(units=UNITS, reset_after=False, use_bias=False, return_sequences=True),
        "GRU_nobias": dict(units=UNITS, use_bias=False, return_sequences=True),
        "LSTM_nobias": dict(units=UNITS, use_bias=False, return_sequences=True, return_state=True),
        "LSTM_relu_tanh": dict(units=UNITS, activation="relu", recurrent_activation="tanh",
                                       return_sequences=True),
        "SimpleRNN_relu": dict(units=UNITS, activation="relu", return_sequences=True),
        "LSTM_implementation1": dict(units=UNITS, implementation=1, return_sequences=True, return_state=True),
        "GRU_implementation1": dict(units=UNITS, implementation=1, return_sequences=True),
        "GRU_implementation1_reset_before": dict(units=UNITS, implementation=1, reset_after=False,
                                                 return_sequences=True),
    }
    for name, kwargs in extra.items():
        out[name] = dict(layer=name.split("_")[0], kwargs=kwargs, mask=False, initial_state=False)
    out["GRU_reset_before_mask_back"] = dict(
        layer="GRU", kwargs=dict(units=UNITS, reset_after=False, return_sequences=True, go_backwards=True),
        mask=True, initial_state=False)
    for layer, merge, seq in itertools.product(("LSTM", "GRU"), ("concat", "sum", "mul", "ave", None),
                                               (False, True)):
        name = "Bidirectional_%s_%s_seq%d" % (layer, merge, seq)
        out[name] = dict(layer=layer, kwargs=dict(units=UNITS, return_sequences=seq), merge_mode=merge,
                         mask=False, initial_state=False)
    for layer in ("SimpleRNN", "LSTM", "GRU"):
        for merge in ("concat", None):
            out["Bidirectional_%s_%s_state_mask" % (layer, merge)] = dict(
                layer=layer, kwargs=dict(units=UNITS, return_sequences=True, return_state=True), merge_mode=merge,
                mask=True, initial_state=True)
    out["Bidirectional_LSTM_last_mask"] = dict(layer="LSTM", kwargs=dict(units=UNITS), merge_mode="concat",
                                               mask=True, initial_state=False)
    return out


def flat(x):
    return [t for v in x for t in flat(v)] if isinstance(x, (list, tuple)) else [x]


def record(name, cfg, store, rng):
    layer = getattr(tf.keras.layers, cfg["layer"])(**cfg["kwargs"])
    n_states = 2 if cfg["layer"] == "LSTM" else 1
    if "merge_mode" in cfg:
        layer = tf.keras.layers.Bidirectional(layer, merge_mode=cfg["merge_mode"])
        n_states *= 2
    x = tf.constant(rng.standard_normal((B, T, D)).astype(np.float32))
    layer(x)
    weights = [(0.5 * rng.standard_normal(w.shape)).astype(np.float32) for w in layer.get_weights()]
    layer.set_weights(weights)
    states = [tf.constant(rng.standard_normal((B, UNITS)).astype(np.float32)) for _ in range(n_states)]
    kwargs = {}
    if cfg["mask"]:
        kwargs["mask"] = tf.constant(MASK)
        store[name + "/mask"] = MASK
    if cfg["initial_state"]:
        kwargs["initial_state"] = states
        for i, s in enumerate(states):
            store["%s/state%d" % (name, i)] = s.numpy()
    sources = [x] + (states if cfg["initial_state"] else [])
    with tf.GradientTape() as tape:
        tape.watch(sources)
        outs = flat(layer(x, **kwargs))
        projections = [rng.standard_normal(o.shape).astype(np.float32) for o in outs]
        proj = tf.add_n([tf.reduce_sum(o * r) for o, r in zip(outs, projections)])
    grads = tape.gradient(proj, [sources, layer.trainable_weights])
    store[name + "/config"] = np.array(json.dumps(cfg))
    store[name + "/x"] = x.numpy()
    for i, w in enumerate(weights):
        store["%s/w%d" % (name, i)] = w
    for i, o in enumerate(outs):
        store["%s/out%d" % (name, i)] = o.numpy()
        store["%s/proj%d" % (name, i)] = projections[i]
    for i, g in enumerate(grads[0]):
        store["%s/grad_in%d" % (name, i)] = g.numpy()
    for i, g in enumerate(grads[1]):
        store["%s/grad_w%d" % (name, i)] = g.numpy()


def record_embedding(store, rng):
    """Embedding(mask_zero=True) feeding an LSTM in a Sequential: the mask travels with the tensor."""
    ids = np.array([[3, 1, 0, 0, 0], [0, 2, 5, 0, 4], [7, 7, 7, 7, 7]], dtype=np.int32)
    model = tf.keras.Sequential([tf.keras.layers.Embedding(8, D, mask_zero=True),
                                 tf.keras.layers.LSTM(UNITS, return_sequences=True)])
    model(ids)
    weights = [(0.5 * rng.standard_normal(w.shape)).astype(np.float32) for w in model.get_weights()]
    model.set_weights(weights)
    store["embedding/ids"] = ids
    for i, w in enumerate(weights):
        store["embedding/w%d" % i] = w
    store["embedding/out"] = model(ids).numpy()
    emb = model.layers[0]
    store["embedding/mask"] = emb.compute_mask(ids).numpy()
    # the mask passes through a Bidirectional returning sequences to the next RNN
    model = tf.keras.Sequential([tf.keras.layers.Embedding(8, D, mask_zero=True),
                                 tf.keras.layers.Bidirectional(tf.keras.layers.GRU(UNITS, return_sequences=True)),
                                 tf.keras.layers.SimpleRNN(UNITS)])
    model(ids)
    weights = [(0.5 * rng.standard_normal(w.shape)).astype(np.float32) for w in model.get_weights()]
    model.set_weights(weights)
    for i, w in enumerate(weights):
        store["embedding_bidirectional/w%d" % i] = w
    store["embedding_bidirectional/out"] = model(ids).numpy()


def main():
    rng = np.random.default_rng(2024)
    store = {}
    for name, cfg in cases().items():
        record(name, cfg, store, rng)
    record_embedding(store, rng)
    store["keras_version"] = np.array(tf.keras.__version__)
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "keras_rnn.npz")
    np.savez_compressed(path, **store)
    print("wrote %s (%d arrays, %d cases, Keras %s)" % (path, len(store), len(cases()), tf.keras.__version__))


if __name__ == "__main__":
    main()
