"""What every implementation computes: sizes, hyper-parameters, seeded data, the tape chain.

Each implementation module (see IMPLEMENTATIONS) provides:

- NAME: the framework's display name; DEVICES: the devices it can run on ("cpu", "gpu");
  MEMORY_TRACEABLE: whether tracemalloc sees its arrays (NumPy-based engines).
- versions() -> {package: version}; configure(threads); synchronize(device).
- MLP: {variant: factory(params, x, y, device) -> step}; step() runs one training step and
  returns the loss as a Python float; step.params() returns the parameters as NumPy arrays.
- TAPE: {variant: factory(x0, n_ops, device) -> fn}; fn() runs the chain forward and
  backward and returns d sum(chain(x)) / dx as a NumPy array.
- RECORD: {variant: factory(x0, device) -> record}; record(n_ops) runs the chain forward
  while recording it and returns a thunk that runs only the backward pass.
- CNN, ENCODER (optional): {variant: factory(params, x, y, device) -> step}, as MLP, for the
  small convnet (init_cnn, make_images) and the transformer encoder block (init_encoder,
  make_sequences). Every implementation computes exactly the function described there.

Importing a module raises ImportError when its framework is missing.
"""

import importlib

import numpy as np

IMPLEMENTATIONS = ("numpy_floor", "accel_impl", "torch_impl", "jax_impl", "tf_impl", "autograd_impl")
FLOOR = "numpy_floor"

LAYERS = (784, 512, 512, 10)
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-7  # Keras Adam defaults, lr 1e-3

# Small CNN: conv 3x3 1->32 (valid), ReLU, conv 3x3 32->64 (valid), ReLU, max-pool 2x2, flatten (NHWC
# order), dense to 10; mean sparse softmax cross-entropy; Adam as above.
CNN_BATCH = 64
CNN_IMAGE = (28, 28, 1)
CNN_FILTERS = (32, 64)
N_CLASSES = 10

# Transformer encoder block (pre-LN): x + MHA(LN1(x)), then h + W2 GELU(W1 LN2(h)) (exact erf GELU, 4x width);
# mean over the sequence, dense to 10; mean sparse softmax cross-entropy; Adam. The attention projections
# are one (d, 3d) matrix [q | k | v]; heads split d into n_heads contiguous blocks; scores scaled by
# 1/sqrt(d / n_heads).
ENC_BATCH, ENC_SEQ, ENC_DMODEL, ENC_HEADS, ENC_MLP = 16, 128, 256, 4, 4
LN_EPS = 1e-5

TAPE_OPS = 200
TAPE_SIZE = 16
MUL, ADD = 1.0001, 0.001


def init_params(layers=LAYERS, seed=0, dtype=np.float32):
    """[W1, b1, W2, b2, ...]: Glorot-uniform weights and zero biases, as Keras Dense layers start."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(layers[:-1], layers[1:], strict=True):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        params.append(rng.uniform(-limit, limit, (fan_in, fan_out)).astype(dtype))
        params.append(np.zeros(fan_out, dtype))
    return params


def make_batch(batch, n_in=LAYERS[0], n_classes=LAYERS[-1], seed=1, dtype=np.float32):
    """Inputs (batch, n_in) and int64 class labels (batch,)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    y = rng.integers(0, n_classes, batch).astype(np.int64)
    return x, y


def _glorot(rng, shape, fan_in, fan_out, dtype):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


def init_cnn(filters=CNN_FILTERS, image=CNN_IMAGE, n_classes=N_CLASSES, seed=0, dtype=np.float32):
    """[k1 (3,3,c,f1), b1, k2 (3,3,f1,f2), b2, w (flat, n_classes), b]: Glorot-uniform kernels (Keras' fan
    in/out for convolutions), zero biases. The dense rows follow the NHWC flatten order."""
    rng = np.random.default_rng(seed)
    (f1, f2), c = filters, image[2]
    side = (image[0] - 4) // 2
    flat = side * side * f2
    return [_glorot(rng, (3, 3, c, f1), 9 * c, 9 * f1, dtype), np.zeros(f1, dtype),
            _glorot(rng, (3, 3, f1, f2), 9 * f1, 9 * f2, dtype), np.zeros(f2, dtype),
            _glorot(rng, (flat, n_classes), flat, n_classes, dtype), np.zeros(n_classes, dtype)]


def make_images(batch=CNN_BATCH, image=CNN_IMAGE, n_classes=N_CLASSES, seed=1, dtype=np.float32):
    """Images (batch, h, w, c) uniform in [0, 1) and int64 labels (batch,)."""
    rng = np.random.default_rng(seed)
    return rng.random((batch, *image)).astype(dtype), rng.integers(0, n_classes, batch).astype(np.int64)


def init_encoder(d_model=ENC_DMODEL, mlp=ENC_MLP, n_classes=N_CLASSES, seed=0, dtype=np.float32):
    """[ln1_gamma, ln1_beta, w_qkv (d,3d), b_qkv, w_o (d,d), b_o, ln2_gamma, ln2_beta, w1 (d,mlp*d), b1,
    w2 (mlp*d,d), b2, w_head (d,n_classes), b_head]: Glorot-uniform matrices, zero biases, unit gammas."""
    rng = np.random.default_rng(seed)
    d, h = d_model, mlp * d_model
    ones, zeros = (lambda n: np.ones(n, dtype)), (lambda n: np.zeros(n, dtype))
    return [ones(d), zeros(d), _glorot(rng, (d, 3 * d), d, 3 * d, dtype), zeros(3 * d),
            _glorot(rng, (d, d), d, d, dtype), zeros(d), ones(d), zeros(d),
            _glorot(rng, (d, h), d, h, dtype), zeros(h), _glorot(rng, (h, d), h, d, dtype), zeros(d),
            _glorot(rng, (d, n_classes), d, n_classes, dtype), zeros(n_classes)]


def make_sequences(batch=ENC_BATCH, seq=ENC_SEQ, d_model=ENC_DMODEL, n_classes=N_CLASSES, seed=1,
                   dtype=np.float32):
    """Embedded sequences (batch, seq, d_model), standard normal, and int64 labels (batch,)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, seq, d_model)).astype(dtype)
    return x, rng.integers(0, n_classes, batch).astype(np.int64)


def tape_input(size=TAPE_SIZE, seed=2):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size).astype(np.float32)


def chain(h, n_ops, tanh):
    """The tape workload: n_ops elementwise ops cycling x*MUL, x+ADD, tanh(x)."""
    for i in range(n_ops):
        k = i % 3
        if k == 0:
            h = h * MUL
        elif k == 1:
            h = h + ADD
        else:
            h = tanh(h)
    return h


def load(name):
    """The implementation module `name`; ImportError (with the reason) when it cannot run here."""
    return importlib.import_module("%s.%s" % (__name__, name))


def available(table, names=IMPLEMENTATIONS):
    """[(name, module, variant, skip_reason)] for the pytest-benchmark suites; table: MLP, TAPE or RECORD."""
    rows = []
    for name in names:
        try:
            mod = load(name)
        except ImportError as e:
            rows.append((name, None, None, "%s: %s" % (name, e)))
            continue
        for variant in getattr(mod, table):
            rows.append((name, mod, variant, None))
    return rows
