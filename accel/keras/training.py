"""`Trainer`: the Keras 3 compile / fit / evaluate / predict loop, mixed into `accel.keras.Model`.

The mixin relies only on the model's own interface: `self(x, training=...)`,
`self.trainable_variables`, `get_weights` / `set_weights` and `save_weights` / `load_weights`
(the last two for callbacks).
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from accel import optimizers as optimizers_module
from accel import random
from accel.data import Dataset
from accel.function import TRACED_VALUE_ERRORS, function
from accel.keras import callbacks as callbacks_module
from accel.keras import losses as losses_module
from accel.keras import metrics as metrics_module
from accel.keras.loss_scale_optimizer import LossScaleOptimizer
from accel.keras.symbolic import flatten, map_structure
from accel.ops.api import add_n, cast, concat, convert_to_tensor, gather, reduce_sum
from accel.recorder import state as _rec
from accel.tape import GradientTape
from accel.tensor import Tensor


def _to_tensor(value):
    """Input data as a tensor; floats of other widths become float32, as Keras casts them to floatx."""
    t = convert_to_tensor(value) if isinstance(value, Tensor) else convert_to_tensor(np.asarray(value))
    if t.dtype.is_floating and t.dtype.name != losses_module.FLOATX:
        t = cast(t, losses_module.FLOATX)
    return t


def _num_samples(*structures):
    sizes = {int(leaf.shape[0]) for s in structures if s is not None for leaf in flatten(s)}
    if len(sizes) != 1:
        raise ValueError("Data cardinality is ambiguous: the arrays have different numbers of samples %s"
                         % sorted(sizes))
    return sizes.pop()


class _Batches:
    """The (x, y, sample_weight) batches of an epoch, in order or shuffled."""

    def __init__(self, x, y=None, sample_weight=None, batch_size=32):
        self.data = tuple(None if d is None else map_structure(_to_tensor, d) for d in (x, y, sample_weight))
        self.num_samples = _num_samples(*self.data)
        if self.num_samples == 0:
            raise ValueError("The data has no samples")
        self.batch_size = int(batch_size)
        self.steps = math.ceil(self.num_samples / self.batch_size)

    def epoch(self, rng=None):
        data = self.data
        if rng is not None:
            perm = convert_to_tensor(rng.permutation(self.num_samples))
            data = tuple(None if d is None else map_structure(lambda t: gather(t, perm), d) for d in data)
        for step in range(self.steps):
            rows = slice(step * self.batch_size, min((step + 1) * self.batch_size, self.num_samples))
            yield tuple(None if d is None else map_structure(lambda t, rows=rows: t[rows], d) for d in data)


class _DatasetBatches:
    """The (x, y, sample_weight) batches of an accel.data.Dataset (already batched by the user): `steps` of
    them per epoch, or all. For training (`persistent`) one iterator runs on across epochs, as Keras does."""

    def __init__(self, dataset, steps=None, what="fit", persistent=False):
        card = dataset._cardinality
        if steps is None and card < 0:
            raise ValueError("%s: the dataset is %s; pass steps_per_epoch (or steps) to say how many batches make "
                             "an epoch" % (what, "infinite" if card == -1 else "of unknown length"))
        self.dataset = dataset
        self.steps = int(steps) if steps is not None else card
        self._fixed = steps is not None
        self._persistent = persistent
        self._it = None
        self.exhausted = False

    def epoch(self, rng=None):
        if not self._fixed:
            for element in self.dataset:
                yield unpack_x_y_sample_weight(element)
            return
        if self._it is None or not self._persistent:
            self._it = iter(self.dataset)
        for step in range(self.steps):
            element = next(self._it, None)
            if element is None and step == 0 and self.dataset._cardinality > 0:
                self._it = iter(self.dataset)  # a dataset of known length starts over (Keras's EpochIterator)
                element = next(self._it, None)
            if element is None:
                warnings.warn("Your input ran out of data; interrupting training. Make sure the dataset can "
                              "generate at least steps_per_epoch * epochs batches (use .repeat()).", stacklevel=3)
                if self.dataset._cardinality > 0:
                    self._it = None  # this epoch ends short; the next one starts a fresh pass, as in Keras
                else:
                    self.exhausted = True  # of unknown length: nothing more to train on
                return
            yield unpack_x_y_sample_weight(element)


def _batches_of(x, y, sample_weight, batch_size, steps, what):
    """_Batches for arrays, _DatasetBatches for an accel.data.Dataset (which must bring its own y)."""
    if isinstance(x, Dataset):
        if y is not None or sample_weight is not None:
            raise ValueError("%s: the `y` and `sample_weight` arguments are not supported when x is a dataset "
                             "(it yields (x, y) or (x, y, sample_weight) batches)" % what)
        # batch_size is ignored with a dataset (it is batched already), as in Keras 3
        return _DatasetBatches(x, steps, what, persistent=what == "fit")
    return _Batches(x, y, sample_weight, batch_size or 32)


def _split_validation(data, validation_split):
    """Keras's split: the last `validation_split` fraction of the samples, taken before shuffling."""
    arrays = [map_structure(_to_tensor, d) if d is not None else None for d in data]
    n = _num_samples(*arrays)
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at == 0 or split_at == n:
        raise ValueError("validation_split=%s leaves no samples for training or for validation (%d samples)"
                         % (validation_split, n))
    train = tuple(None if d is None else map_structure(lambda t: t[:split_at], d) for d in arrays)
    val = tuple(None if d is None else map_structure(lambda t: t[split_at:], d) for d in arrays)
    return train, val


def _unpack_validation_data(validation_data):
    if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
        raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                         "val_sample_weight)")
    return tuple(validation_data) + (None,) * (3 - len(validation_data))


def _resolve_verbose(verbose):
    return 1 if verbose == "auto" else int(verbose)


def unpack_x_y_sample_weight(data):
    """(x, y, sample_weight) from a batch given as (x,), (x, y) or (x, y, sample_weight)."""
    if not isinstance(data, tuple):
        return data, None, None
    return tuple(data) + (None,) * (3 - len(data))


def _pack(x, y, sample_weight):
    """The batch as Keras hands it to `train_step`: (x, y) without weights, (x,) without targets."""
    if y is None:
        return (x,)
    return (x, y) if sample_weight is None else (x, y, sample_weight)


def _pythonify(logs):
    """Floats from tensors; nested dicts (such as the compiled metrics' results) are flattened. Inside
    accel.function (a compiled train_step) the tensors stay tensors, as Keras' pythonify_logs leaves
    symbolic ones: the loop converts them after the call."""
    out = {}
    tracing = _rec.trace is not None
    for k, v in logs.items():
        if isinstance(v, dict):
            out.update(_pythonify(v))
        else:
            out[k] = v if tracing and isinstance(v, Tensor) else float(v)
    return out


def _serialize_compiled(value, module):
    """A compile() loss or metrics argument as JSON: names as they are, objects as Keras' {module, class_name,
    config}, functions by name; lists and dicts (by output name) element by element."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_serialize_compiled(v, module) for v in value]
    if isinstance(value, dict):
        return {k: _serialize_compiled(v, module) for k, v in value.items()}
    if hasattr(value, "get_config") and not isinstance(value, type):
        return {"module": module, "class_name": type(value).__name__, "config": value.get_config(),
                "registered_name": None}
    name = getattr(value, "__name__", None)
    if name is None:
        raise TypeError("get_compile_config: cannot serialise %r; use a name or a Loss/Metric object" % (value,))
    return name


def _deserialize_compiled(value, what):
    """The inverse of _serialize_compiled: objects only from accel's own loss and metric classes."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return [_deserialize_compiled(v, what) for v in value]
    if isinstance(value, dict) and "class_name" in value:
        if value["class_name"] == "function":  # Keras' form for a plain loss or metric function
            return value.get("config")
        table = losses_module.ALL_OBJECTS_DICT if what == "loss" else metrics_module.ALL_OBJECTS_DICT
        cls = table.get(value["class_name"])
        if cls is None or not isinstance(cls, type):
            raise ValueError("compile_config: unknown %s class %r" % (what, value["class_name"]))
        config = value.get("config") or {}
        if not isinstance(config, dict):
            raise ValueError("compile_config: the config of %s %r must be a dict" % (what, value["class_name"]))
        return cls.from_config(config)
    if isinstance(value, dict):
        return {k: _deserialize_compiled(v, what) for k, v in value.items()}
    raise ValueError("compile_config: cannot read the %s %r" % (what, value))


class CompileMetrics(metrics_module.Metric):
    """The metrics given to `compile`, resolved on the first batch, when the output shapes are known.

    As in Keras 3 it is one entry of `model.metrics` (named "compile_metrics"), and its result is a
    dict from each metric's name to its value.
    """

    def __init__(self, identifiers):
        super().__init__(name="compile_metrics")
        self._identifiers = list(identifiers)
        self.metrics = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.metrics is None:
            self.metrics = [metrics_module.get_for_outputs(m, y_true, y_pred) for m in self._identifiers]
        for m in self.metrics:
            m.update_state(y_true, y_pred, sample_weight=sample_weight)

    def result(self):
        return {m.name: m.result() for m in self.metrics or []}

    def reset_state(self):
        for m in self.metrics or []:
            m.reset_state()


class OutputsLoss(losses_module.Loss):
    """The compiled loss of a model with several outputs: sum of weight_i * loss_i(y_i, pred_i)."""

    def __init__(self, model, losses, weights):
        """`losses`: one identifier (a name, function or Loss) or None per output, in output order."""
        super().__init__(name="loss")
        self.model, self.weights = model, weights
        losses = [None if v is None else losses_module.get(v) for v in losses]
        self.losses = [None if fn is None else fn if isinstance(fn, losses_module.Loss)
                       else losses_module.LossFunctionWrapper(fn) for fn in losses]
        # Keras 3 tracks each output's unweighted loss as "<output>_loss" when there are several losses
        named = [n for n, fn in zip(model.output_names, self.losses) if fn is not None]
        self.trackers = ([metrics_module.Mean(name="%s_loss" % n) for n in named] if len(named) > 1 else [])
        self._tracker_of = dict(zip(named, self.trackers))

    def __call__(self, y_true, y_pred, sample_weight=None):
        preds = flatten(y_pred)
        trues = self.model._align(y_true, "y")
        sws = self.model._align(sample_weight, "sample_weight")
        total = None
        for name, fn, w, t, p, sw in zip(self.model.output_names, self.losses, self.weights, trues, preds, sws):
            if fn is None or t is None:
                continue
            term = fn(t, p, sample_weight=sw)
            tracker = self._tracker_of.get(name)
            if tracker is not None:
                # Keras weighs by the batch size, which is None inside TF's traced train step: every batch
                # counts once (recorded: tests/data/keras_training.npz)
                tracker.update_state(term)
            term = term * w
            total = term if total is None else total + term
        if total is None:
            raise ValueError("compile: no output of model %s has both a loss and a target" % self.model.name)
        return total

class OutputsMetrics(metrics_module.Metric):
    """Per-output compiled metrics; results are named '<output>_<metric>' as in Keras 3."""

    def __init__(self, model, per_output):
        """`per_output`: the metrics (one, a list, or None) of each output, in output order."""
        super().__init__(name="compile_metrics")
        self.model, self.names = model, model.output_names
        self.per_output = [CompileMetrics(m if isinstance(m, (list, tuple)) else [m]) if m else None
                           for m in per_output]

    def update_state(self, y_true, y_pred, sample_weight=None):
        preds = flatten(y_pred)
        trues = self.model._align(y_true, "y")
        sws = self.model._align(sample_weight, "sample_weight")
        for m, t, p, sw in zip(self.per_output, trues, preds, sws):
            if m is not None and t is not None:
                m.update_state(t, p, sample_weight=sw)

    def result(self):
        out = {}
        for m, name in zip(self.per_output, self.names):
            if m is not None:
                out.update({"%s_%s" % (name, k): v for k, v in m.result().items()})
        return out

    def reset_state(self):
        for m in self.per_output:
            if m is not None:
                m.reset_state()


class Trainer:
    """compile / fit / evaluate / predict for a model (mixed into `accel.keras.Model`).

        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, batch_size=32, epochs=5, validation_split=0.2)
        history.history["val_accuracy"]
    """

    def __init__(self):
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        self._compiled = False
        self._compile_loss = None
        self._compile_metrics = None
        self._loss_tracker = None

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, run_eagerly=None, jit_compile=None,
                auto_scale_loss=True):
        """Sets the optimizer, the loss and the metrics for training.

        `optimizer`, `loss` and each metric are objects or names ('adam', 'sgd', 'mse',
        'sparse_categorical_crossentropy', 'accuracy', ...). `run_eagerly` and `jit_compile` are
        accepted for compatibility: accel always runs eagerly. Under the "mixed_float16" policy the
        optimizer is wrapped in a LossScaleOptimizer (unless `auto_scale_loss=False`), as in Keras 3.
        """
        if loss is None:
            raise ValueError("compile: a loss is required")
        self.optimizer = optimizers_module.get(optimizer)
        policy = getattr(self, "dtype_policy", None)
        if auto_scale_loss and policy is not None and policy.name == "mixed_float16":
            if not isinstance(self.optimizer, LossScaleOptimizer):
                self.optimizer = LossScaleOptimizer(self.optimizer, name="loss_scale_optimizer")
        self.loss = loss
        self._compile_args = {"loss": loss, "metrics": metrics, "loss_weights": None}  # for get_compile_config
        loss_obj = losses_module.get(loss)
        self._compile_loss = (loss_obj if isinstance(loss_obj, losses_module.Loss)
                              else losses_module.LossFunctionWrapper(loss_obj))
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError("compile: metrics must be a list, got %r" % (metrics,))
        self._compile_metrics = CompileMetrics(metrics) if metrics else None
        self._loss_tracker = metrics_module.Mean(name="loss")
        self.stop_training = False
        self._compiled = True
        # Keras' default: train/test/predict steps run compiled (accel.function); run_eagerly=True keeps them eager
        self.run_eagerly = bool(run_eagerly)
        self._jit_compile = jit_compile
        self._step_functions = {}

    def get_compile_config(self):
        """compile()'s arguments in Keras 3's JSON form (config.json's `compile_config`), or None if not compiled.
        Loss and metric objects are written as {module, class_name, config}, functions and names as strings."""
        if not self._compiled:
            return None
        args = self._compile_args
        return {"optimizer": optimizers_module.serialize(self.optimizer),
                "loss": _serialize_compiled(args["loss"], "keras.losses"),
                "loss_weights": args["loss_weights"],
                "metrics": _serialize_compiled(args["metrics"], "keras.metrics"),
                "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}

    def compile_from_config(self, config):
        """compile() from get_compile_config()'s dict (also Keras 3's), then builds the optimizer on the
        trainable variables so saved optimizer state can be restored into it."""
        if not isinstance(config, dict):
            raise ValueError("compile_from_config: expected a dict, got %s" % type(config).__name__)
        if config.get("weighted_metrics"):
            raise NotImplementedError("compile_from_config: weighted_metrics are not supported by accel (got %r)"
                                      % (config["weighted_metrics"],))
        optimizer = config.get("optimizer", "rmsprop")
        if isinstance(optimizer, dict) and optimizer.get("class_name") == "LossScaleOptimizer":
            optimizer = LossScaleOptimizer.from_config(optimizer.get("config") or {})
        elif isinstance(optimizer, dict):
            optimizer = optimizers_module.deserialize(optimizer)
        kwargs = {}
        if config.get("loss_weights") is not None:
            kwargs["loss_weights"] = config["loss_weights"]
        self.compile(optimizer=optimizer, loss=_deserialize_compiled(config.get("loss"), "loss"),
                     metrics=_deserialize_compiled(config.get("metrics"), "metric"), **kwargs)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # --- state ---------------------------------------------------------------------------------
    @property
    def metrics(self):
        """The loss tracker ("loss"), each output's loss tracker ("<output>_loss", with several outputs' losses)
        and, when `compile` was given metrics, their `CompileMetrics`."""
        if not self._compiled:
            return []
        per_output = list(getattr(self._compile_loss, "trackers", ()))  # "<output>_loss" with several losses
        return [self._loss_tracker] + per_output + ([self._compile_metrics] if self._compile_metrics else [])

    @property
    def metrics_names(self):
        return [m.name for m in self.metrics]

    def reset_metrics(self):
        for m in self.metrics:
            m.reset_state()

    def _assert_compiled(self, what):
        if not self._compiled:
            raise RuntimeError("You must call `compile()` before calling `%s()`." % what)

    def get_metrics_result(self):
        """{name: value} of the loss tracker and every compiled metric."""
        return _pythonify({m.name: m.result() for m in self.metrics})

    # --- steps (override train_step / test_step to customise fit and evaluate, as in Keras) -------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss of a batch plus the model's `losses` (regularizers, add_loss), as Keras 3 sums
        them (override for a custom objective)."""
        loss = self._compile_loss(y, y_pred, sample_weight=sample_weight)
        extra = self.losses
        if extra:
            loss = add_n([loss] + [cast(reduce_sum(e), loss.dtype) for e in extra])
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates the compiled metrics with a batch and returns `get_metrics_result()`."""
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight=sample_weight)
        return self.get_metrics_result()

    def _track_loss(self, x, loss):
        # the epoch's loss is the mean of the batch losses weighted by batch size
        self._loss_tracker.update_state(loss, sample_weight=flatten(x)[0].shape[0])

    def _step_function(self, kind):
        """self.train_step / test_step as the loops call it: wrapped in accel.function unless run_eagerly.
        A first trace that reads a traced value into Python (a custom metric calling float()) is undone
        (the model's, optimizer's and metrics' variables restored) and the model runs eagerly from then on,
        with a warning."""
        dist = sys.modules.get("accel.distribute")  # built under a strategy: each replica runs it on its shard
        if dist is not None and kind != "predict_step" and dist.keras_strategy(self) is not None:
            return dist.keras_step(self, kind)
        step = getattr(self, kind)
        if getattr(self, "run_eagerly", True):
            return step
        fns = self.__dict__.setdefault("_step_functions", {})
        fn = fns.get(kind)
        if fn is None:
            fn = fns[kind] = function(step, jit_compile=getattr(self, "_jit_compile", None))

        def run(data):
            if fn.experimental_get_tracing_count():
                return fn(data)
            saved = [(v, v.numpy()) for v in self._state_variables()]
            try:
                return fn(data)
            except TRACED_VALUE_ERRORS as e:
                for v, a in saved:
                    v.assign(a)
                warnings.warn("%s: %s cannot run compiled (%s); running eagerly (compile(run_eagerly=True) "
                              "says so up front)" % (type(self).__name__, kind, str(e).split(" would ")[0]),
                              RuntimeWarning, stacklevel=3)
                self.run_eagerly = True
                return step(data)

        return run

    def _state_variables(self):
        seen, out = set(), []
        groups = [self.variables, getattr(self.optimizer, "variables", [])]
        groups += [m.variables for m in self.metrics if hasattr(m, "variables")]
        for group in groups:
            for v in group:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    def train_step(self, data):
        """One optimizer step on a batch `(x, y[, sample_weight])`; returns the running logs."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        with GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            # Keras: the optimizer scales the loss (LossScaleOptimizer, loss_scale_factor) and unscales the grads
            scaled = self.optimizer.scale_loss(loss)
        self._track_loss(x, loss)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def test_step(self, data):
        """Updates the metrics with a batch `(x, y[, sample_weight])`; returns the running logs."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
        self._track_loss(x, loss)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    # --- loops ---------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1):
        """Trains for `epochs` epochs on NumPy arrays, accel tensors or an accel.data.Dataset of (x, y[, w])
        batches; returns the `History`.

        History keys: "loss", one per metric, and "val_loss", "val_<metric>" with validation data.
        Shuffling draws from accel's global random stream: `accel.random.set_seed` makes it repeat (a dataset
        is used in its own order: shuffle it with dataset.shuffle).
        """
        self._assert_compiled("fit")
        is_dataset = isinstance(x, Dataset)
        if y is None and not is_dataset:
            raise ValueError("fit: pass the targets y, or an accel.data.Dataset of (x, y) batches as x")
        if validation_data is None and validation_split:
            if is_dataset:
                raise ValueError("fit: validation_split is only supported for arrays and tensors, not datasets; "
                                 "pass validation_data")
            train_data, validation_data = _split_validation((x, y, sample_weight), validation_split)
            x, y, sample_weight = train_data
        train = _batches_of(x, y, sample_weight, batch_size, steps_per_epoch, "fit")
        val = None
        if validation_data is not None:
            if isinstance(validation_data, Dataset):
                val = _DatasetBatches(validation_data, validation_steps, "fit (validation_data)")
            else:
                vx, vy, vw = _unpack_validation_data(validation_data)
                val = _Batches(vx, vy, vw, validation_batch_size or batch_size or 32)

        verbose = _resolve_verbose(verbose)
        dist = sys.modules.get("accel.distribute")
        if dist is not None:  # under a strategy: batches checked before any step; only the chief prints and writes
            train, verbose, callbacks = dist.keras_fit(self, train, verbose, callbacks)
        cbs = callbacks_module.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                                            verbose=verbose, epochs=epochs, steps=train.steps)
        # the shuffle order repeats under accel.random.set_seed
        rng = np.random.default_rng(int(random.uniform((), 0, 2**31 - 1, dtype="int64"))) if shuffle else None

        self.stop_training = False
        logs = None
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            cbs.on_epoch_begin(epoch)
            ran = False
            for step, batch in enumerate(train.epoch(rng)):
                ran = True
                cbs.on_train_batch_begin(step)
                logs = _pythonify(self._step_function("train_step")(_pack(*batch)))
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:  # a callback (TerminateOnNaN) may stop within the epoch, as in Keras
                    break
            if logs is None:
                raise ValueError("fit: the training data produced no batches")
            if getattr(train, "exhausted", False):
                self.stop_training = True
                if not ran:
                    break
            logs = dict(logs)
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._run_test(val, cbs)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return cbs.history

    def _run_test(self, batches, cbs):
        self.reset_metrics()
        cbs.on_test_begin()
        for step, batch in enumerate(batches.epoch()):
            cbs.on_test_batch_begin(step)
            logs = _pythonify(self._step_function("test_step")(_pack(*batch)))
            cbs.on_test_batch_end(step, logs)
        cbs.on_test_end(logs)
        return logs

    @staticmethod
    def _flatten_logs(logs, return_dict):
        if return_dict:
            return logs
        values = list(logs.values())  # "loss" first, then the metrics in compile order
        return values[0] if len(values) == 1 else values

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """The loss and metrics over the data (arrays or a Dataset): a float, a list [loss, *metrics], or a dict."""
        self._assert_compiled("evaluate")
        batches = _batches_of(x, y, sample_weight, batch_size, steps, "evaluate")
        verbose = _resolve_verbose(verbose)
        dist = sys.modules.get("accel.distribute")
        if dist is not None:
            batches, verbose, callbacks = dist.keras_fit(self, batches, verbose, callbacks)
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                                            epochs=1, steps=batches.steps)
        return self._flatten_logs(self._run_test(batches, cbs), return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """The model's outputs over `x` (arrays, or a Dataset of x or (x, ...) batches), batch by batch, as NumPy
        (a list or dict for several outputs)."""
        batches = _batches_of(x, None, None, batch_size, steps, "predict")
        verbose = _resolve_verbose(verbose)
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                                            epochs=1, steps=batches.steps)
        cbs.on_predict_begin()
        outputs = []
        for step, (bx, _, _) in enumerate(batches.epoch()):
            cbs.on_predict_batch_begin(step)
            outputs.append(self(bx, training=False))
            cbs.on_predict_batch_end(step, {"outputs": outputs[-1]})
        cbs.on_predict_end()
        if isinstance(outputs[0], dict):
            return {k: concat([o[k] for o in outputs], 0).numpy() for k in outputs[0]}
        if isinstance(outputs[0], (list, tuple)):
            return [concat([o[i] for o in outputs], 0).numpy() for i in range(len(outputs[0]))]
        return concat(outputs, 0).numpy()

    def train_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """One training step on exactly this batch; returns the batch's loss and metrics."""
        self._assert_compiled("train_on_batch")
        self.reset_metrics()
        (batch,) = _Batches(x, y, sample_weight, batch_size=_num_samples(x)).epoch()
        return self._flatten_logs(_pythonify(self.train_step(_pack(*batch))), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss and metrics of exactly this batch, without training."""
        self._assert_compiled("test_on_batch")
        self.reset_metrics()
        (batch,) = _Batches(x, y, sample_weight, batch_size=_num_samples(x)).epoch()
        return self._flatten_logs(_pythonify(self.test_step(_pack(*batch))), return_dict)

    def predict_on_batch(self, x):
        """The model's output for exactly this batch, as NumPy."""
        ((bx, _, _),) = _Batches(x, batch_size=_num_samples(x)).epoch()
        out = self(bx, training=False)
        return map_structure(lambda t: t.numpy(), out)
