"""`python -m accel.demo`: Keras-style training of an MLP on scikit-learn's handwritten digits.

Trains with `model.fit`, reports the held-out test accuracy, saves a checkpoint, reloads it into a
fresh model and checks that it scores exactly the same, and plots the training curves.

    python -m accel.demo [--device cpu|gpu] [--epochs N] [--out DIR]
    mpiexec -n 2 python -m accel.demo --distribute    # data parallel over MPI ranks (accel.distribute)

Exit status: 0 on success, 1 when the reloaded model disagrees or the accuracy is below
--min-accuracy, 2 when the requested device is not available.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import numpy as np

import accel
from accel import keras

SEED = 0
HIDDEN = (256, 128)


def load_data(seed=SEED):
    """Digits scaled to [0, 1], split 75/25 with the class proportions kept."""
    from sklearn.datasets import load_digits  # noqa: PLC0415
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)


def build_model(learning_rate, run_eagerly=False):
    model = keras.Sequential(
        [keras.Input(shape=(64,))]
        + [keras.layers.Dense(units, activation="relu") for units in HIDDEN]
        + [keras.layers.Dense(10)])
    # run_eagerly=False (Keras' default): fit runs train_step captured by accel.function
    model.compile(optimizer=accel.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], run_eagerly=run_eagerly)
    return model


def epoch_seconds(x, y, learning_rate, batch_size, run_eagerly, epochs=5):
    """Seconds per epoch of a fresh model over `epochs` epochs after a first one (which traces when compiled)."""
    model = build_model(learning_rate, run_eagerly)
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return (time.perf_counter() - t0) / epochs


def plot_history(history, path):
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    h = history.history
    epochs = np.arange(1, len(h["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((ax_loss, "loss", "Loss"), (ax_acc, "accuracy", "Accuracy")):
        ax.plot(epochs, h[key], label="train")
        ax.plot(epochs, h["val_" + key], label="validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("accel: MLP 64-%s-10 on scikit-learn digits" % "-".join(map(str, HIDDEN)))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(epochs, out_dir, learning_rate, batch_size, min_accuracy, distribute=False):
    strategy = None
    if distribute:  # one replica per MPI rank; --batch-size is the global batch, split across the ranks
        from accel import distribute as dist  # noqa: PLC0415

        strategy = dist.MultiWorkerMirroredStrategy()
    chief = strategy is None or strategy.is_chief
    print_ = print if chief else (lambda *a, **k: None)
    x_train, x_test, y_train, y_test = load_data()
    accel.random.set_seed(SEED)  # weights and shuffling repeat from run to run
    # the checkpoint check below wants bit-identical results: every op takes the same path from the first
    # step (fused mode "auto" otherwise switches to the CPU twins whenever numba has loaded in the background)
    accel.config.experimental.enable_op_determinism()
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_model(learning_rate)
    device = accel.backend.current_device().short_name
    if strategy is not None:
        print_("accel.distribute: MultiWorkerMirroredStrategy, %d replicas (MPI ranks), global batch %d = %d x %d"
               % (strategy.num_replicas_in_sync, batch_size, strategy.num_replicas_in_sync,
                  batch_size // strategy.num_replicas_in_sync))
    print_("accel demo: MLP 64-%s-10, Adam(lr=%g), batch %d, on scikit-learn digits: %d train "
          "(10%% of them for validation) / %d test, device %s"
          % ("-".join(map(str, HIDDEN)), learning_rate, batch_size, len(x_train), len(x_test), device))

    t0 = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.1)
    train_s = time.perf_counter() - t0
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    correct = int(np.sum(np.argmax(model.predict(x_test, verbose=0), axis=-1) == y_test))

    ckpt = os.path.join(out_dir, "digits.weights.npz")
    if chief:  # only the chief writes (atomically); every rank then reloads the same file
        os.makedirs(out_dir, exist_ok=True)
        model.save_weights(ckpt)
    if strategy is not None:
        strategy.group.barrier()
    fresh = build_model(learning_rate)
    fresh.load_weights(ckpt)
    reload_loss, reload_acc = fresh.evaluate(x_test, y_test, verbose=0)
    if strategy is None:
        identical = reload_acc == test_acc and reload_loss == test_loss
    else:  # the replicas' evaluate averages shard means: compare the reloaded weights bit for bit instead
        identical = all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(model.weights, fresh.weights))

    png = os.path.join(out_dir, "training.png")
    if chief:
        plot_history(history, png)

    h = history.history
    print_("final epoch: loss %.4f, accuracy %.4f, val_loss %.4f, val_accuracy %.4f"
          % (h["loss"][-1], h["accuracy"][-1], h["val_loss"][-1], h["val_accuracy"][-1]))
    print_("TEST accuracy: %.2f%% (%d/%d), test loss %.4f" % (100 * test_acc, correct, len(y_test), test_loss))
    epochs_run = len(h["loss"])
    print_("training time: %.1f s for %d epochs (%.2f s/epoch)" % (train_s, epochs_run, train_s / epochs_run))
    if strategy is None:
        compiled_s = epoch_seconds(x_train, y_train, learning_rate, batch_size, run_eagerly=False)
        eager_s = epoch_seconds(x_train, y_train, learning_rate, batch_size, run_eagerly=True)
        print_("s/epoch over 5 epochs after a first: %.3f compiled (accel.function, the default) vs %.3f eager "
              "(run_eagerly=True): %.2fx faster" % (compiled_s, eager_s, eager_s / compiled_s))
    print_("checkpoint %s reloaded into a fresh model: test accuracy %.2f%%, loss %.4f (%s)"
          % (ckpt, 100 * reload_acc, reload_loss, "identical" if identical else "MISMATCH"))
    print_("plot: %s" % png)

    if not identical:
        print("error: the reloaded model does not reproduce the trained model's results", file=sys.stderr)
        return 1
    if test_acc < min_accuracy:
        print("error: test accuracy %.4f is below --min-accuracy %.4f" % (test_acc, min_accuracy),
              file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m accel.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", default="demo_out", help="directory for the checkpoint and training.png")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--min-accuracy", type=float, default=0.97,
                        help="exit with status 1 when the test accuracy is lower (0 disables the check)")
    parser.add_argument("--distribute", action="store_true",
                        help="data parallel over the MPI ranks of mpiexec -n N (accel.distribute; "
                             "pip install 'accel-autodiff[distribute]')")
    args = parser.parse_args(argv)

    if args.device == "gpu" and not accel.has_gpu():
        print("error: --device gpu needs a CUDA GPU and CuPy; %s" % (
            "CuPy is not installed" if accel.backend.cupy() is None else "CuPy found no CUDA device"),
            file=sys.stderr)
        return 2
    with accel.device("gpu:0" if args.device == "gpu" else "cpu"):
        return run(args.epochs, args.out, args.learning_rate, args.batch_size, args.min_accuracy, args.distribute)


if __name__ == "__main__":
    sys.exit(main())
