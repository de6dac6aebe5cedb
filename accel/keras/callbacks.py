"""Keras 3 callbacks: hooks that `fit`, `evaluate` and `predict` call around epochs and batches."""

from __future__ import annotations

import csv
import math
import os
import sys
import time
import warnings

import numpy as np


class Callback:
    """Base class. `self.model` is the model being trained; `self.params` holds verbose, epochs, steps."""

    def __init__(self):
        self.params = {}
        self.model = None

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self.model = model

    def _does_nothing(self, *args, **kwargs):
        """A hook the base class leaves empty: override it to act there (`logs` is its last argument)."""

    # Keras's hooks: around each epoch, and around each run and batch of fit (train), evaluate (test) and predict
    on_epoch_begin = on_epoch_end = _does_nothing
    on_train_begin = on_train_end = on_train_batch_begin = on_train_batch_end = _does_nothing
    on_test_begin = on_test_end = on_test_batch_begin = on_test_batch_end = _does_nothing
    on_predict_begin = on_predict_end = on_predict_batch_begin = on_predict_batch_end = _does_nothing


_HOOKS = [name for name in vars(Callback) if name.startswith("on_")]


class CallbackList:
    """Calls each hook on every callback, in order.

    Adds a `History` (unless one is given) and, when `verbose` is not 0, a `ProgbarLogger`.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        self.callbacks = list(callbacks or [])
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        self.history = None
        if add_history:
            self.history = next((c for c in self.callbacks if isinstance(c, History)), None)
            if self.history is None:
                self.history = History()
                self.callbacks.append(self.history)
        for c in self.callbacks:
            c.set_model(model)
            c.set_params(params)

    def __iter__(self):
        return iter(self.callbacks)

    def __getattr__(self, name):
        if name not in _HOOKS:
            raise AttributeError(name)

        arity = 2 if ("batch" in name or "epoch" in name) else 1

        def call(*args):
            if len(args) < arity:  # Keras always hands `logs` over ({} where there are none)
                args = args + ({},)
            for c in self.callbacks:
                getattr(c, name)(*args)

        return call


class History(Callback):
    """Records the logs of every epoch: `history.history["loss"]` is a list with one float per epoch."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        self.model.history = self


def _format_logs(logs):
    return " - ".join("%s: %.4f" % (k, v) for k, v in logs.items())


class ProgbarLogger(Callback):
    """Progress display. On a terminal with verbose=1, a tqdm bar per epoch (and for evaluate/predict).

    When stdout is not a terminal, or with verbose=2, one summary line per epoch (and one for
    evaluate) instead; verbose=0 prints nothing.
    """

    def __init__(self):
        super().__init__()
        self._bar = None
        self._in_fit = False
        self._t0 = 0.0

    def _mode(self):
        verbose = self.params.get("verbose", 1)
        if verbose == 0:
            return None
        return "bar" if verbose == 1 and sys.stdout.isatty() else "line"

    def _open_bar(self, desc):
        from tqdm import tqdm  # noqa: PLC0415

        self._bar = tqdm(total=self.params.get("steps"), desc=desc, unit="step", file=sys.stdout, leave=True)

    def _advance(self, logs):
        if self._bar is not None:
            if logs:
                self._bar.set_postfix({k: "%.4f" % v for k, v in logs.items()}, refresh=False)
            self._bar.update(1)

    def _close_bar(self, logs):
        if self._bar is not None:
            if logs:
                self._bar.set_postfix({k: "%.4f" % v for k, v in logs.items()}, refresh=False)
            self._bar.close()
            self._bar = None

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        if self._mode() == "bar":
            self._open_bar("Epoch %d/%d" % (epoch + 1, self.params["epochs"]))

    def on_train_batch_end(self, batch, logs=None):
        self._advance(logs)

    def on_epoch_end(self, epoch, logs=None):
        mode = self._mode()
        if mode == "bar":
            self._close_bar(logs)
        elif mode == "line":
            print("Epoch %d/%d - %.2fs - %s" % (epoch + 1, self.params["epochs"],
                                               time.perf_counter() - self._t0, _format_logs(logs or {})),
                  flush=True)

    def on_test_begin(self, logs=None):
        if self._in_fit:
            return
        self._t0 = time.perf_counter()
        if self._mode() == "bar":
            self._open_bar("Evaluate")

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._advance(logs)

    def on_test_end(self, logs=None):
        if self._in_fit:
            return
        mode = self._mode()
        if mode == "bar":
            self._close_bar(logs)
        elif mode == "line":
            print("Evaluate - %.2fs - %s" % (time.perf_counter() - self._t0, _format_logs(logs or {})),
                  flush=True)

    def on_predict_begin(self, logs=None):
        if self._mode() == "bar":
            self._open_bar("Predict")

    def on_predict_batch_end(self, batch, logs=None):
        self._advance(None)

    def on_predict_end(self, logs=None):
        self._close_bar(None)


class MonitorCallback(Callback):
    """Shared logic of callbacks that watch one logged quantity for improvement."""

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn("%s mode '%s' is unknown, fallback to auto mode." % (type(self).__name__, mode),
                          stacklevel=2)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self._sign = None  # +1 when larger is better, -1 when smaller is

    def _set_direction(self):
        if self.mode != "auto":
            self._sign = 1 if self.mode == "max" else -1
            return
        name = self.monitor.removeprefix("val_")
        if name == "loss":
            self._sign = -1
        metrics = []
        for m in getattr(self.model, "metrics", []):
            metrics.extend(getattr(m, "metrics", None) or [m])  # the compiled metrics' container
        for m in metrics:
            if m.name == name and getattr(m, "_direction", None):
                self._sign = 1 if m._direction == "up" else -1
        if self._sign is None:
            raise ValueError("%s callback received monitor=%s, but accel cannot tell whether that metric "
                             "should be maximized or minimized. Pass mode='max' or mode='min'."
                             % (type(self).__name__, self.monitor))

    def _is_improvement(self, value, reference):
        if self._sign is None:
            self._set_direction()
        if reference is None:
            return True
        return (value - reference) * self._sign > self.min_delta


class EarlyStopping(MonitorCallback):
    """Stops training once `monitor` has not improved by more than `min_delta` for `patience` epochs.

    With `restore_best_weights=True` the model gets back the weights of its best epoch when
    training ends.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, baseline=None, min_delta=min_delta)
        self.baseline = baseline
        self.patience = patience
        self.verbose = verbose
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn("Early stopping conditioned on metric `%s` which is not available. Available "
                          "metrics are: %s" % (self.monitor, ",".join(logs or {})), stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # the wait restarts only when the baseline is beaten too
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print("Epoch %d: early stopping" % (self.stopped_epoch + 1))
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print("Restoring model weights from the end of the best epoch: %d." % (self.best_epoch + 1))
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(MonitorCallback):
    """Saves the model's weights at the end of each epoch to `filepath`.

    `filepath` may hold `str.format` fields: `{epoch}` (1-based) and any logged value, as in
    "ckpt-{epoch:02d}-{val_loss:.3f}.weights.npz". With `save_best_only=True` a file is written only
    when `monitor` improves.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=True,
                 mode="auto", initial_value_threshold=None):
        super().__init__(monitor, mode, baseline=initial_value_threshold)
        if not save_weights_only:
            raise ValueError("ModelCheckpoint: accel saves weights only; pass save_weights_only=True")
        self.filepath = os.fspath(filepath)
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        filepath = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn("Can save best model only with %s available." % self.monitor, stacklevel=2)
            elif not self._is_improvement(current, self.best):
                if self.verbose > 0:
                    print("Epoch %d: %s did not improve from %.5f" % (epoch + 1, self.monitor, self.best))
                return
            else:
                self.best = current
        dirname = os.path.dirname(filepath)
        if dirname:
            os.makedirs(dirname, exist_ok=True)
        self.model.save_weights(filepath)
        if self.verbose > 0:
            print("Epoch %d: saving model to %s" % (epoch + 1, filepath))


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate at the start of each epoch to `schedule(epoch, lr)`.

    `schedule(epoch)` with one argument works too. The rate in use is logged as "learning_rate".
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        try:
            lr = self.schedule(epoch, float(np.asarray(optimizer.learning_rate)))
        except TypeError:  # the one-argument form
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, np.floating)) or math.isnan(lr):
            raise ValueError("The output of the `schedule` function should be a float. Got: %r" % (lr,))
        optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print("Epoch %d: LearningRateScheduler setting learning rate to %s." % (epoch + 1, lr))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))


class TerminateOnNaN(Callback):
    """Stops training at the first batch whose loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            print("Batch %d: Invalid loss, terminating training" % batch)
            self.model.stop_training = True


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by `factor` when `monitor` has not improved by `min_delta` for `patience`
    epochs, then waits `cooldown` epochs; never below `min_lr` (Keras 3's rules)."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if factor >= 1.0:
            raise ValueError("ReduceLROnPlateau does not support a factor >= 1.0. Received factor=%r" % factor)
        if mode not in ("auto", "min", "max"):
            warnings.warn("Learning rate reduction mode %s is unknown, fallback to auto mode." % mode, stacklevel=2)
            mode = "auto"
        self.monitor, self.factor, self.patience, self.verbose = monitor, float(factor), int(patience), verbose
        self.mode, self.min_delta, self.cooldown, self.min_lr = mode, float(min_delta), int(cooldown), float(min_lr)
        self._reset()

    def _reset(self):
        self._minimize = self.mode == "min" or (self.mode == "auto" and "acc" not in self.monitor)
        self.best = math.inf if self._minimize else -math.inf
        self.cooldown_counter = 0
        self.wait = 0

    def _improved(self, current):
        if self._minimize:
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(np.asarray(optimizer.learning_rate))
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn("Learning rate reduction is conditioned on metric `%s` which is not available. "
                          "Available metrics are: %s." % (self.monitor, ",".join(logs)), stacklevel=2)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(np.asarray(optimizer.learning_rate))
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print("\nEpoch %d: ReduceLROnPlateau reducing learning rate to %s." % (epoch + 1, new_lr))
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class CSVLogger(Callback):
    """Writes one CSV row per epoch (`epoch` and every logged value, columns sorted), as Keras does."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append
        self.keys = None
        self._file = None

    def on_train_begin(self, logs=None):
        folder = os.path.dirname(self.filename)
        if folder:
            os.makedirs(folder, exist_ok=True)
        has_rows = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._csv = csv
        self._header_written = has_rows
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            self._writer = self._csv.DictWriter(self._file, fieldnames=["epoch"] + self.keys,
                                                delimiter=self.separator)
            if not self._header_written:
                self._writer.writeheader()
        row = {"epoch": epoch}
        row.update({k: logs.get(k, "NA") for k in self.keys})
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class LambdaCallback(Callback):
    """A callback from functions: `LambdaCallback(on_epoch_end=lambda epoch, logs: ...)`; any hook name
    (`on_train_batch_end`, `on_test_begin`, ...) may be given. `on_batch_begin/end` mean the training batch
    hooks, as in Keras."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, on_train_begin=on_train_begin,
                     on_train_end=on_train_end, on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end)
        hooks["on_train_batch_begin"] = kwargs.pop("on_batch_begin", None) or hooks["on_train_batch_begin"]
        hooks["on_train_batch_end"] = kwargs.pop("on_batch_end", None) or hooks["on_train_batch_end"]
        hooks.update(kwargs)
        for name, fn in hooks.items():
            if not hasattr(Callback, name):
                raise ValueError("LambdaCallback: unknown hook %r" % name)
            if fn is not None:
                setattr(self, name, fn)
