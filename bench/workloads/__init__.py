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

Importing a module raises ImportError when its framework is missing.
"""

import importlib

import numpy as np

IMPLEMENTATIONS = ("numpy_floor", "accel_impl", "torch_impl", "jax_impl", "tf_impl", "autograd_impl")
FLOOR = "numpy_floor"

LAYERS = (784, 512, 512, 10)
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-7  # Keras Adam defaults, lr 1e-3

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
