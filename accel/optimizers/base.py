"""Optimizer: Keras 3's BaseOptimizer (TensorFlow backend) on accel Variables, updated in place.

One `apply_gradients` call:
  1. checks every (gradient, variable) pair; nothing changes if one is wrong;
  2. skips None gradients (with a warning), raises if all are None;
  3. creates slots for variables it has not seen (zeros unless the optimizer says otherwise);
  4. unscales (loss_scale_factor) and clips (clipnorm | clipvalue | global_clipnorm);
  5. per variable: decoupled weight decay, then the update: a fused one-pass kernel
     (accel.fused on CuPy arrays, accel.cpu_kernels' numba loops on NumPy ones) when one
     qualifies, else in-place xp arithmetic on scratch buffers reused across steps;
  6. EMA of the weights, variable constraints, iterations += 1.

Learning rates live in a float32 Variable (or come from a schedule, float32 too) and are cast
to each variable's dtype, so float64 variables see float64(float32(lr)), as in Keras.
"""

from __future__ import annotations

import itertools
import math
import numbers
import re
import sys
import warnings

import numpy as np

from accel import backend, debugging, profiler
from accel.ops import fusion
from accel import module as _module
from accel.recorder import state as _rec
from accel.dtypes import float32, int64
from accel.optimizers import schedules as _schedules
from accel.optimizers.sparse import IndexedSlices, has_duplicates, scatter_rows
from accel.tape import GradientTape
from accel.tensor import Tensor
from accel.variables import Variable

_name_uids: dict[str, itertools.count] = {}

# Pool slots of the per-(device, dtype) scratch buffers.
_G, _FG, _SCRATCH = 0, 1, 2


def f32(x) -> float:
    """A hyperparameter as Keras' ops.cast(x, variable.dtype) sees it: tf.cast turns a Python float
    into a float32 tensor first, so float64 variables get float64(float32(x))."""
    return float(np.float32(x))


# The fused optimizer updates: kernel name -> (rule, arrays, scalars, static attributes). Each rule is
# the optimizer's Keras-order step written once against a namespace: the generic path runs it on arrays
# (Optimizer._apply_rule), tools/gen_kernels.py turns it into the numba loops of accel.cpu_kernels.
UPDATES: dict = {}


def defupdate(name, rule, arrays, scalars, **static):
    """Declares the fused update `name`: rule(xp, *arrays, **scalars, **static) -> {array: new value}."""
    if name in UPDATES:
        raise ValueError("defupdate: an update named %r is already declared" % name)
    UPDATES[name] = (rule, tuple(arrays), tuple(scalars), tuple(sorted(static.items())))


def decayed(xp, p, wd, lr):
    """Keras' decoupled weight decay, p - p * wd * lr where wd != 0 (a select in generated loops)."""
    return xp.where(wd != 0, p - p * wd * lr, p)


def _auto_name(cls_name):
    """Keras' auto_name: snake case of the class name, then _1, _2, ... for later instances."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls_name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
    n = next(_name_uids.setdefault(s, itertools.count()))
    return s if n == 0 else "%s_%d" % (s, n)


class _Rows:
    """A validated IndexedSlices gradient: backend arrays on the variable's device."""

    __slots__ = ("values", "indices")

    def __init__(self, values, indices):
        self.values = values
        self.indices = indices


class _VarState:
    """What the optimizer keeps for one variable: its slots and whether weight decay applies."""

    __slots__ = ("var", "index", "slots", "decay")

    def __init__(self, var, index, slots):
        self.var = var
        self.index = index
        self.slots = slots  # slot name -> Variable
        self.decay = None  # resolved on first use (exclude_from_weight_decay may run after build)


class Optimizer:
    """Base class: subclasses set `_slot_specs`, `_update` (generic in-place path) and, when a
    fused kernel exists for them, `_fused_update`.

    Subclass hooks:
      _slot_specs(var) -> [(name, shape, initial value)]: per-variable state.
      _update(p, g, fg, s, lr, step, bufs): the update in place with xp arithmetic. p: the
          variable's array; g: the dense gradient in p's dtype (never written); fg: None, or for
          a row-sparse gradient with repeated rows, the rows of `_slice_fn(values)` summed (Keras
          applies that function to each slice before repeated rows add up); s: slot name -> array;
          lr: float; step: iterations + 1; bufs: `_scratch` scratch arrays shaped like p.
      _fused_update(p, g, s, lr, step, wd) -> bool: the one-pass kernel, weight decay included.
    """

    _scratch = 1
    _slice_fn = None  # "square" | "abs"

    def __init__(
        self,
        learning_rate,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=2)
        if kwargs:
            raise ValueError("Argument(s) not recognized: %s" % (kwargs,))
        if gradient_accumulation_steps is not None:
            raise ValueError(
                "gradient_accumulation_steps=%r: gradient accumulation is not supported by "
                "accel's optimizers; accumulate the gradients yourself and call "
                "apply_gradients every N steps" % (gradient_accumulation_steps,)
            )
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                "clipnorm=%s, clipvalue=%s, global_clipnorm=%s" % (clipnorm, clipvalue, global_clipnorm)
            )
        if use_ema:
            if not 0 <= ema_momentum <= 1:
                raise ValueError(
                    "`ema_momentum` must be in the range [0, 1]. Received: ema_momentum=%s" % (ema_momentum,)
                )
            if ema_overwrite_frequency and (
                not isinstance(ema_overwrite_frequency, int) or ema_overwrite_frequency < 1
            ):
                raise ValueError(
                    "`ema_overwrite_frequency` must be an integer >= 1 or None. Received: "
                    "ema_overwrite_frequency=%s" % (ema_overwrite_frequency,)
                )
        self.name = name if name is not None else _auto_name(type(self).__name__)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = None
        # Scalar state lives on the CPU: reading it every step must not wait for a GPU.
        with backend.device("cpu"):
            self._iterations = Variable(0, dtype=int64, trainable=False, name=self.name + "/iteration")
        self._learning_rate = self._new_learning_rate(learning_rate)
        self._states: dict[int, _VarState] = {}  # variable._id -> state, in build order
        self._globals: dict[str, Variable] = {}  # optimizer-wide state (Nadam's u_product)
        self._pool: dict = {}  # (device, dtype, pool slot) -> flat scratch array
        self._exclude_ids: set[int] = set()
        self._exclude_pattern = None

    # ---- learning rate and iterations --------------------------------------------------------
    def _new_learning_rate(self, lr):
        if isinstance(lr, _schedules.LearningRateSchedule) or callable(lr):
            return lr
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise ValueError(
                "Argument `learning_rate` should be float, or an instance of LearningRateSchedule, "
                "or a callable (that takes in the current iteration value and returns the "
                "corresponding learning rate value). Received instead: learning_rate=%r" % (lr,)
            )
        _check_finite_lr(lr)
        with backend.device("cpu"):
            return Variable(float(lr), dtype=float32, trainable=False, name=self.name + "/learning_rate")

    @property
    def iterations(self) -> Variable:
        """int64 Variable: the number of applied steps."""
        return self._iterations

    @property
    def learning_rate(self):
        """The current learning rate: the float32 Variable, or the schedule at `iterations`."""
        lr = self._learning_rate
        if isinstance(lr, Variable):
            return lr
        if isinstance(lr, _schedules.LearningRateSchedule):
            return lr(self._iterations)
        return lr()

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, _schedules.LearningRateSchedule) or callable(value):
            self._learning_rate = value
        elif isinstance(self._learning_rate, _schedules.LearningRateSchedule):
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its "
                "`learning_rate` constructor argument, hence its learning rate is not settable. If "
                "you need the learning rate to be settable, you should instantiate the optimizer "
                "with a float `learning_rate` argument."
            )
        elif isinstance(self._learning_rate, Variable):
            _check_finite_lr(value)
            self._learning_rate.assign(float(value))
        else:
            self._learning_rate = self._new_learning_rate(value)

    def _lr_value(self) -> float:
        lr = self._learning_rate
        if isinstance(lr, Variable):
            return float(lr._data)
        if isinstance(lr, _schedules.LearningRateSchedule):
            return float(lr(int(self._iterations._data)))
        return float(lr())

    # ---- state -------------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return bool(self._states)

    def _slot_specs(self, var):
        raise NotImplementedError("%s must define _slot_specs(var)" % type(self).__name__)

    def build(self, var_list):
        """Creates the slots of every variable in var_list that this optimizer has not seen."""
        n_states = len(self._states)
        for var in var_list:
            if var._id in self._states:
                continue
            _check_variable(var, "build")
            specs = ([("average", var.shape, 0.0)] if self.use_ema else []) + list(self._slot_specs(var))
            dev = backend.device_of(var._data)
            xp = backend.xp_of(var._data)
            slots = {}
            with backend.device(dev):
                for slot, shape, init in specs:
                    arr = xp.full(tuple(shape), init, dtype=var._data.dtype)
                    slots[slot] = Variable(
                        Tensor(arr), trainable=False, name="%s/%s_%s" % (self.name, var._name, slot)
                    )
            self._states[var._id] = _VarState(var, len(self._states), slots)
        if len(self._states) > n_states:
            _module.variables_created(self)  # a restore may hold values for the new slots

    @property
    def variables(self) -> list:
        """Every state Variable: iterations, the learning rate (unless a schedule), then the slots."""
        out = [self._iterations]
        if isinstance(self._learning_rate, Variable):
            out.append(self._learning_rate)
        out.extend(self._globals.values())
        for st in self._states.values():
            out.extend(st.slots.values())
        return out

    def _named_state(self) -> dict:
        """Positional names (like Keras' saved optimizer variables), so state moves between processes."""
        named = {"iterations": self._iterations}
        if isinstance(self._learning_rate, Variable):
            named["learning_rate"] = self._learning_rate
        named.update(self._globals)
        for st in self._states.values():
            for slot, v in st.slots.items():
                named["%d/%s" % (st.index, slot)] = v
        return named

    def get_state(self) -> dict:
        """name -> NumPy copy of every state Variable ("iterations", "learning_rate", "<i>/<slot>"
        for the i-th variable the optimizer was built on)."""
        return {k: backend.to_numpy(v._data).copy() for k, v in self._named_state().items()}

    def set_state(self, state: dict):
        """Restores get_state()'s output; checks every name, shape and dtype before assigning any."""
        named = self._named_state()
        missing = sorted(set(named) - set(state))
        unexpected = sorted(set(state) - set(named))
        if missing or unexpected:
            raise ValueError(
                "set_state: the names do not match this optimizer's state (missing: %s; unexpected: "
                "%s). Build the optimizer on the same variables, in the same order, first."
                % (missing, unexpected)
            )
        arrays = {}
        for k, v in named.items():
            a = np.asarray(backend.to_numpy(state[k]._data) if isinstance(state[k], Tensor) else state[k])
            if a.shape != tuple(v._data.shape) or a.dtype != v._data.dtype:
                raise ValueError(
                    "set_state: %r has shape %s dtype %s, expected shape %s dtype %s"
                    % (k, a.shape, a.dtype, tuple(v._data.shape), v._data.dtype)
                )
            arrays[k] = a
        for k, v in named.items():
            v.assign(arrays[k])

    # ---- weight decay ------------------------------------------------------------------------
    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """No weight decay for these variables, or for variables whose name contains one of var_names."""
        self._exclude_ids = {v._id for v in var_list or ()}
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None
        for st in self._states.values():
            st.decay = None

    def _uses_decay(self, st) -> bool:
        if st.decay is None:
            v = st.var
            st.decay = not (
                v._id in self._exclude_ids
                or (self._exclude_pattern is not None and self._exclude_pattern.search(v.name))
            )
        return st.decay

    def _decay_of(self, st) -> float:
        """The weight decay applied to the variable of state st (0 where it is off or excluded)."""
        return f32(self.weight_decay) if self.weight_decay is not None and self._uses_decay(st) else 0.0

    # ---- applying gradients ------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """Applies [(gradient, variable), ...] (a zip works); returns `iterations`."""
        pairs = list(grads_and_vars)
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(
                    "apply_gradients: item %d is %r; expected a (gradient, variable) pair" % (i, pair)
                )
        return self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def apply(self, grads, trainable_variables=None):
        """Keras' apply: gradients in the order of `trainable_variables` (default: the built ones)."""
        grads = list(grads)
        trace = _rec.trace
        if trace is not None and not trace.paused:
            return self._traced_apply(trace, grads, trainable_variables)
        dist = sys.modules.get("accel.distribute")  # inside strategy.run: all-reduce across the replicas first
        if dist is not None and dist.reducing_gradients():
            grads = dist.all_reduce_gradients(grads)
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer must already be built "
                    "on a list of variables. Call `optimizer.build(trainable_variables)` first."
                )
            variables = [st.var for st in self._states.values()]
        else:
            variables = list(trainable_variables)
        if len(grads) != len(variables):
            raise ValueError("apply: got %d gradients for %d variables" % (len(grads), len(variables)))
        if not grads:
            return self._iterations
        checked = _check_pairs(grads, variables)
        present = [(v, g) for v, g in zip(variables, checked, strict=True) if g is not None]
        if not present:
            raise ValueError(_no_gradients_message(variables))
        self.build(variables)
        missing = [v for v, g in zip(variables, checked, strict=True) if g is None]
        if missing:
            warnings.warn(
                "Gradients do not exist for variables %s when minimizing the loss; they are left "
                "unchanged.\n%s" % ([v.name for v in missing], _causes(missing)),
                stacklevel=2,
            )

        prof = profiler.active()
        if prof is not None:
            prof.label = "optimizer:" + type(self).__name__
        lr = self._lr_value()
        step = int(self._iterations._data) + 1
        scales = self._grad_scales([g for _, g in present])
        self._before_updates(step)
        todo = list(zip(present, scales, strict=True))
        if self._multi and len(todo) > 1:
            todo = self._apply_multi(todo, lr, step)
        for (var, g), scale in todo:
            self._apply_one(self._states[var._id], g, scale, lr, step)
        if self.use_ema:
            self._update_ema(step)
        for var, _ in present:
            if var.constraint is not None:
                var.assign(var.constraint(var))
        self._iterations.assign_add(1)
        return self._iterations

    def _traced_apply(self, trace, grads, trainable_variables):
        """Inside accel.function: applies the update now and records it as one host step that runs the
        same update (fused multi-tensor kernels, schedules, iterations) on every replay."""
        from accel.function import paused  # noqa: PLC0415  (accel.function sits above the optimizers)

        with paused():
            result = self.apply(grads, trainable_variables)
        variables = None if trainable_variables is None else list(trainable_variables)
        kinds, tensors = [], []
        for g in grads:
            if g is None:
                kinds.append(None)
            elif isinstance(g, IndexedSlices):
                kinds.append(("slices", g.dense_shape))
                tensors += [g.values, g.indices]
            else:
                kinds.append("dense")
                tensors.append(g if isinstance(g, Tensor) else Tensor(np.asarray(g)))

        groups = self._replay_groups(grads, variables)
        groups_made_under = self._replay_conditions()

        def replay(*arrays):
            if groups is not None and not _rec.tapes and profiler.active() is None and \
                    groups_made_under == self._replay_conditions():
                self._replay_multi(groups, arrays)
                return
            it = iter(arrays)
            gs = []
            for k in kinds:
                if k is None:
                    gs.append(None)
                elif k == "dense":
                    gs.append(Tensor(next(it)))
                else:
                    values = Tensor(next(it))
                    gs.append(IndexedSlices(values, Tensor(next(it)), k[1]))
            self.apply(gs, variables)

        replay.writes_variables = lambda: list(variables or []) + list(self.variables)
        replay.borrows_inputs = True  # the gradients are read during the update, never kept (plans may reuse them)
        self._capturable_replay(replay, grads, variables)
        trace.call("optimizer " + type(self).__name__, replay, tensors, writes=True)
        return result

    def _replay_groups(self, grads, variables):
        """For a traced step's replay: [(kernels, weight decay, [(gradient index, state)...])] when every
        gradient is dense, of its variable's dtype, and apply would update every variable in a multi-tensor
        group (no clipping, unscaling, EMA or constraint; groups of two or more), so a replay can call those
        kernels without apply's per-call checks and grouping (the plan fixes the gradients' shapes and
        dtypes); else None."""
        if variables is None or not self._multi or self.use_ema or self.loss_scale_factor is not None or any(
                (getattr(self, c) or 0) > 0 for c in ("clipnorm", "clipvalue", "global_clipnorm")):
            return None
        if len(grads) != len(variables) or self._replay_conditions()[-1]:  # an all-reduce comes first
            return None
        groups = {}
        for i, (g, var) in enumerate(zip(grads, variables)):
            if not isinstance(g, Tensor) or var.constraint is not None or var._id not in self._states or \
                    g._data.dtype != var._data.dtype:
                return None
            group = self._multi_group_of(var, g._data)
            if group is None:
                return None
            key, st, _ = group
            groups.setdefault(key, []).append((i, st))
        if any(len(members) < 2 for members in groups.values()):
            return None
        return [(k, wd, members) for (k, _, _, wd), members in groups.items()]

    def _replay_conditions(self):
        """What _replay_groups' choice depends on beyond the arrays: a change sends replays through apply."""
        dist = sys.modules.get("accel.distribute")
        return (backend.fused_mode(), self.weight_decay, self.use_ema, self.loss_scale_factor, self.clipnorm,
                self.clipvalue, self.global_clipnorm, dist is not None and dist.reducing_gradients())

    def _replay_multi(self, groups, grad_arrays):
        """apply's multi-tensor path for the groups _replay_groups found (same kernels, order and scalars)."""
        lr = self._lr_value()
        step = int(self._iterations._data) + 1
        self._before_updates(step)
        for k, wd, members in groups:
            self._multi_update(k, [st.var._data for _, st in members], [grad_arrays[i] for i, _ in members],
                               [{n: v._data for n, v in st.slots.items()} for _, st in members], lr, step, wd)
        self._iterations.assign_add(1)

    # ---- device step: the update from device state only (capturable in a CUDA graph) ----------
    _device_kind = None  # set by the optimizers that have device-step kernels (accel.fused): Adam, SGD
    # methods whose override by a subclass changes the update: such a subclass gets no device step
    _DEVICE_STEP_METHODS = ("apply", "_update", "_fused_update", "_multi_update", "_before_updates",
                            "_slot_specs", "_apply_one", "_apply_multi", "_dense_grad")

    def _capturable_replay(self, replay, grads, variables):
        """Marks the host step `replay` recorded by `_traced_apply`: replay.capturable is True exactly when
        the update can run from device state alone, and then replay.device_run(*grad_arrays) runs it and
        replay.device_key() names the host values and pointers it bakes into the launches (graph mode:
        capture again when the key changes). replay.not_capturable_because says why not, else None."""
        variables = [st.var for st in self._states.values()] if variables is None else list(variables)
        why = self._device_step_blocker(grads, variables)
        replay.capturable = why is None
        replay.not_capturable_because = why
        # the same setup with its arrays on a GPU would be (what a host plan's graph layout counts with)
        replay.capturable_on_gpu = why is None or self._device_step_blocker(grads, variables, False) is None
        if why is None:
            tables = {}  # this step's device pointer tables (accel.fused), per weight-decay group
            replay.device_run = lambda *grad_arrays: self._device_run(variables, grad_arrays, tables)
            replay.device_key = lambda: self._device_key(variables)

    def _device_step_blocker(self, grads, variables, check_device=True):
        """None when apply(grads, variables) can run as the device step (device_run), else why not. Only the
        configuration is checked here, the device last (on the CPU an eligible setup says "not on a GPU";
        check_device=False leaves that out)."""
        cls = type(self)
        if self._device_kind is None:
            return "%s has no device-step kernels (Adam, AdamW and SGD have)" % cls.__name__
        owner = next(c for c in cls.__mro__ if "_device_kind" in c.__dict__)
        for c in cls.__mro__[: cls.__mro__.index(owner)]:
            over = [m for m in self._DEVICE_STEP_METHODS if m in c.__dict__]
            if over:
                return "%s overrides %s of %s" % (c.__name__, ", ".join(over), owner.__name__)
        if not isinstance(self._learning_rate, Variable):
            return "the learning rate is a schedule or a callable (a host value per step)"
        for name in ("clipnorm", "clipvalue", "global_clipnorm"):
            value = getattr(self, name)
            if value and value > 0:
                return "gradient clipping (%s=%r)" % (name, value)
        if self.loss_scale_factor is not None:
            return "loss_scale_factor=%r (the gradients are unscaled on the host)" % (self.loss_scale_factor,)
        if self.use_ema:
            return "use_ema=True (the moving average of the weights is a host-side update)"
        dist = sys.modules.get("accel.distribute")
        if dist is not None and dist.reducing_gradients():
            return "inside a distribution strategy's step (the gradients are all-reduced first)"
        if len(grads) != len(variables) or not variables:
            return "%d gradients for %d variables" % (len(grads), len(variables))
        for g, var in zip(grads, variables, strict=True):
            if g is None:
                return "the gradient of variable %s is None" % var.name
            if isinstance(g, IndexedSlices):
                return "the gradient of variable %s is an IndexedSlices (row-sparse)" % var.name
            if var.constraint is not None:
                return "variable %s has a constraint" % var.name
            if var._id not in self._states:
                return "variable %s is not built" % var.name
        dtypes = sorted({v._data.dtype.name for v in variables})
        if len(dtypes) > 1 or dtypes[0] not in ("float16", "float32", "float64"):
            return "the variables have dtype(s) %s; one of float16, float32, float64 is needed" % ", ".join(dtypes)
        for g, var in zip(grads, variables, strict=True):
            a = g._data if isinstance(g, Tensor) else g
            if getattr(a, "dtype", None) != var._data.dtype:
                return "the gradient of variable %s has dtype %s, the variable %s" % (
                    var.name, getattr(a, "dtype", type(a).__name__), var._data.dtype)
        if backend.fused_mode() == "never":
            return "fused kernels are off (fused mode 'never')"
        if not check_device:
            return None
        devices = set()
        for g, var in zip(grads, variables, strict=True):
            a = g._data if isinstance(g, Tensor) else g
            for what, arr in (("variable", var._data), ("the gradient of variable", a)):
                if not backend.is_cupy_array(arr):
                    return "%s %s is not on a GPU (a %s)" % (what, var.name, type(arr).__name__)
                devices.add(backend.device_of(arr))
        if len(devices) > 1:
            return "the variables and gradients are on %d devices" % len(devices)
        return None

    def _device_groups(self, variables, grad_arrays):
        """{weight decay: (params, grads, slot dicts)}: one multi-tensor launch per group."""
        groups = {}
        for var, g in zip(variables, grad_arrays, strict=True):
            st = self._states[var._id]
            wd = self._decay_of(st)
            ps, gs, ss = groups.setdefault(wd, ([], [], []))
            ps.append(var._data)
            gs.append(g)
            ss.append({k: v._data for k, v in st.slots.items()})
        return groups

    def _device_counter(self, like):
        """The iterations Variable's array, moved once to `like`'s GPU (its value stays; the plain path reads
        it back with a sync from then on). Moving copies from the host, so it cannot happen during a capture."""
        from accel import fused  # noqa: PLC0415

        it = self._iterations
        dev = backend.device_of(like)
        if backend.device_of(it._data) != dev:
            if fused.capturing():
                raise RuntimeError(
                    "device_run: the iterations counter of optimizer %r is not on the GPU yet; run device_run once "
                    "outside the CUDA graph capture first" % self.name
                )
            it._data = backend.to_device(it._data, dev)
        return it._data

    def _device_run(self, variables, grad_arrays, tables=None):
        """The device step: the update of every variable, slots included, and iterations += 1, all launched
        on the current stream with no host read of device state and, once warmed with these arrays, no
        host-to-device copy. Updates in place: the arrays the launches point at never change. tables: the
        holder of the device pointer tables (one per weight-decay group), kept by the caller across calls."""
        from accel import fused  # noqa: PLC0415

        grad_arrays = [g._data if isinstance(g, Tensor) else g for g in grad_arrays]
        if len(grad_arrays) != len(variables):
            raise ValueError("device_run: got %d gradient arrays for %d variables" % (len(grad_arrays), len(variables)))
        counter = self._device_counter(variables[0]._data)
        lr = self._lr_value()  # the float32 learning-rate Variable lives on the CPU: no device read
        tables = {} if tables is None else tables
        for wd, (ps, gs, ss) in self._device_groups(variables, grad_arrays).items():
            self._device_update(ps, gs, ss, counter, lr, wd, tables.setdefault(wd, {}))
        fused.step_increment(counter)

    def _device_update(self, ps, gs, slots, counter, lr, wd, tables):
        """Launches the device-step kernels of one weight-decay group (slots: one dict of slot arrays per p;
        tables: the group's holder of device pointer tables, for accel.fused)."""
        raise NotImplementedError

    def _device_hyper(self) -> tuple:
        """The hyperparameters the device-step launches bake in (beyond lr and weight decay)."""
        return ()

    def _device_key(self, variables) -> tuple:
        """What device_run bakes into its launches: host scalars and device pointers (gradients excluded).
        A CUDA graph captured under one key is stale under another."""
        def ptr(a):
            return a.data.ptr if backend.is_cupy_array(a) else id(a)

        per_var = []
        for var in variables:
            st = self._states[var._id]
            wd = self._decay_of(st)
            per_var.append((ptr(var._data), wd) + tuple(ptr(v._data) for v in st.slots.values()))
        return (type(self).__name__, self._lr_value(), self._device_hyper(), ptr(self._iterations._data),
                tuple(per_var))

    def minimize(self, loss, var_list, tape=None):
        """Computes the gradients of `loss` (a callable, or a tensor recorded by `tape`) and applies them."""
        if not callable(loss) and tape is None:
            raise ValueError(
                "minimize: `tape` is required when `loss` is a tensor; pass a callable that "
                "returns the loss, or the GradientTape that recorded it"
            )
        if callable(loss):
            with GradientTape() as tape:
                if callable(var_list):
                    var_list = var_list()
                tape.watch(list(var_list))
                loss = loss()
        if callable(var_list):
            var_list = var_list()
        var_list = list(var_list)
        grads = tape.gradient(loss, var_list)
        return self.apply_gradients(zip(grads, var_list, strict=True))

    def scale_loss(self, loss):
        """loss * loss_scale_factor (when set); apply_gradients divides the gradients back."""
        return loss if self.loss_scale_factor is None else loss * self.loss_scale_factor

    def _before_updates(self, step):
        """Optimizer-wide state updated once per step, before the variables' updates (Nadam)."""

    def _grad_scales(self, grads):
        """Per gradient: the factor that unscales and norm-clips it (None when it is 1)."""
        unscale = 1.0 if self.loss_scale_factor is None else 1.0 / self.loss_scale_factor
        if self.clipnorm and self.clipnorm > 0:
            scales = []
            for g in grads:
                l2 = math.sqrt(_sum_squares(g)) * abs(unscale)
                scales.append(unscale * float(self.clipnorm / np.maximum(np.float64(l2), self.clipnorm)))
        elif self.global_clipnorm and self.global_clipnorm > 0:
            norm = np.float64(math.sqrt(sum(_sum_squares(g) for g in grads))) * abs(unscale)
            c = self.global_clipnorm
            with np.errstate(divide="ignore", invalid="ignore"):
                # Keras: finite norms give min(1, c / norm); inf or NaN norms give NaN
                scale = c * np.minimum(1.0 / norm, 1.0 / c) + (norm - norm)
            scales = [unscale * float(scale)] * len(grads)
        else:
            scales = [unscale] * len(grads)
        return [None if s == 1.0 else s for s in scales]

    def _buf(self, like, slot):
        """A scratch array shaped like `like`, reused across steps and variables."""
        key = (backend.device_of(like), like.dtype, slot)
        flat = self._pool.get(key)
        if flat is None or flat.size < like.size:
            with backend.device(key[0]):
                flat = self._pool[key] = backend.xp_of(like).empty(max(like.size, 1), like.dtype)
        return flat[: like.size].reshape(like.shape)

    def _dense_grad(self, p, g, scale):
        """(dense gradient in p's dtype, fg) after unscaling/clipping; see the class docstring for fg."""
        xp = backend.xp_of(p)
        c = self.clipvalue if self.clipvalue and self.clipvalue > 0 else None
        # Keras' global clipping multiplies every gradient by a tensor, which densifies an IndexedSlices
        # (repeated rows add up) before the update sees it.
        keep_slices = not (self.global_clipnorm and self.global_clipnorm > 0)
        if isinstance(g, _Rows):
            vals = g.values.astype(p.dtype, copy=False)
            if scale is not None:
                vals = vals * p.dtype.type(scale)
            if c is not None:
                vals = xp.clip(vals, -c, c)
            dense = scatter_rows(self._buf(p, _G), g.indices, vals)
            fg = None
            if keep_slices and self._slice_fn is not None and has_duplicates(g.indices):
                fvals = xp.square(vals) if self._slice_fn == "square" else xp.abs(vals)
                fg = scatter_rows(self._buf(p, _FG), g.indices, fvals)
            return dense, fg
        if scale is None and c is None and g.dtype == p.dtype:
            return g, None
        buf = self._buf(p, _G)
        if scale is not None:
            xp.multiply(g, p.dtype.type(scale), out=buf)
            g = buf
        if c is not None:
            xp.clip(g, -c, c, out=buf)
        elif g is not buf:
            buf[...] = g
        return buf, None

    def _apply_one(self, st, g, scale, lr, step):
        var = st.var
        if _rec.tapes:
            var._data = var._data.copy()  # an active tape may hold the old array for its backward pass
        p = var._data
        g, fg = self._dense_grad(p, g, scale)
        s = {k: v._data for k, v in st.slots.items()}
        wd = self._decay_of(st)
        if fg is None and self._fused_update(p, g, s, lr, step, wd):
            return
        bufs = [self._buf(p, _SCRATCH + i) for i in range(self._scratch)]
        if profiler.active() is not None:  # count the generic update's array passes (views, same memory)
            p, g, bufs = profiler.counted(p), profiler.counted(g), [profiler.counted(b) for b in bufs]
            s = {k: profiler.counted(v) for k, v in s.items()}
        if wd:
            # Keras: variable - variable * wd * lr
            dt = p.dtype.type
            backend.xp_of(p).multiply(p, dt(wd) * dt(lr), out=bufs[0])
            p -= bufs[0]
        self._update(p, g, fg, s, lr, step, bufs)

    def _apply_multi(self, todo, lr, step):
        """Updates, one multi-tensor kernel call per group, the parameters whose dense gradients need
        no unscaling or clipping and whose arrays qualify for the same kernels, dtype, device and
        weight decay (groups of two or more); returns the items left for `_apply_one`."""
        groups, rest = {}, []
        clip = self.clipvalue and self.clipvalue > 0
        for item in todo:
            (var, g), scale = item
            p = var._data
            if scale is not None or clip or isinstance(g, _Rows) or g.dtype != p.dtype:
                rest.append(item)
                continue
            group = self._multi_group_of(var, g)
            if group is None:
                rest.append(item)
                continue
            key, st, s = group
            groups.setdefault(key, []).append((item, st, g, s))
        for (k, _, _, wd), members in groups.items():
            if len(members) < 2:
                rest.extend(m[0] for m in members)
                continue
            ps = []
            for _, st, _, _ in members:
                if _rec.tapes:
                    st.var._data = st.var._data.copy()  # an active tape may hold the old array
                ps.append(st.var._data)
            self._multi_update(k, ps, [m[2] for m in members], [m[3] for m in members], lr, step, wd)
        return rest

    def _multi_group_of(self, var, g):
        """(group key, state, slot arrays) of the multi-tensor call that would update var with the dense
        gradient array g (same kernels, dtype, device and weight decay share a call), or None where no
        kernel qualifies."""
        p = var._data
        st = self._states[var._id]
        s = {k: v._data for k, v in st.slots.items()}
        # any size: one call for the whole group beats a dozen NumPy passes per small parameter
        k = self._kernels(p, g, *s.values(), any_size=True)
        if k is None:
            return None
        wd = self._decay_of(st)
        return (k, p.dtype, backend.device_of(p), wd), st, s

    _multi = False  # True where the optimizer defines _multi_update

    def _multi_update(self, kernels, ps, gs, slots, lr, step, wd):
        """One call of the multi-tensor kernel over ps (slots: one dict of slot arrays per p)."""
        raise NotImplementedError

    def _fused_update(self, p, g, s, lr, step, wd) -> bool:
        """Runs the optimizer's fused kernel when one qualifies; False sends the step to `_update`."""
        return False

    def _update(self, p, g, fg, s, lr, step, bufs):
        raise NotImplementedError("%s must define _update" % type(self).__name__)

    @staticmethod
    def _apply_rule(name, arrays, gg=None, **scalars):
        """The generic path of a fused update: its rule (UPDATES[name]) on the arrays, written back in
        place, scalars in the parameter's dtype; weight decay is already applied (wd = 0 here)."""
        rule, names, _, static = UPDATES[name]
        p = arrays["p"]
        dt = p.dtype.type
        new = rule(backend.xp_of(p), *(arrays[n] for n in names), gg=gg, wd=dt(0),
                   **{k: dt(v) for k, v in scalars.items()}, **dict(static))
        for n, value in new.items():
            arrays[n][...] = value

    @staticmethod
    def _kernels(*arrays, any_size=False):
        """The kernel module of the fused update for these arrays, or None (accel.ops.fusion.kernels_for)."""
        return fusion.kernels_for(*arrays, any_size=any_size)

    # ---- moving average of the weights ------------------------------------------------------
    def _update_ema(self, step):
        for st in self._states.values():
            p = st.var._data
            avg = st.slots["average"]._data
            dt = p.dtype.type
            mom = dt(self.ema_momentum) if step > 1 else dt(0)  # the first step copies the weights
            buf = self._buf(p, _SCRATCH)
            avg *= mom
            backend.xp_of(p).multiply(p, dt(1) - mom, out=buf)
            avg += buf
        if self.ema_overwrite_frequency and step % self.ema_overwrite_frequency == 0:
            for st in self._states.values():
                st.var.assign(st.slots["average"])

    def finalize_variable_values(self, var_list):
        """With use_ema: overwrites each variable with its moving average."""
        if not self.use_ema:
            return
        for var in var_list:
            st = self._states.get(var._id)
            if st is None:
                raise ValueError(
                    "finalize_variable_values: variable %s is unknown to optimizer %r" % (var.name, self.name)
                )
            var.assign(st.slots["average"])

    # ---- configuration -----------------------------------------------------------------------
    def get_config(self) -> dict:
        lr = self._learning_rate
        if isinstance(lr, Variable):
            lr = float(lr._data)
        elif isinstance(lr, _schedules.LearningRateSchedule):
            lr = _schedules.serialize(lr)
        return {
            "name": self.name,
            "learning_rate": lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = _schedules.deserialize(config["learning_rate"], custom_objects)
        return cls(**config)

    def __repr__(self):
        return "<accel.optimizers.%s name=%r>" % (type(self).__name__, self.name)


# ---- checks ----------------------------------------------------------------------------------


def _check_variable(var, what):
    if not isinstance(var, Variable):
        raise TypeError("%s: expected an accel.Variable, got %s" % (what, type(var).__name__))
    if var._data.dtype.kind != "f":
        raise TypeError(
            "%s: variable %s has dtype %s; only floating-point variables can be optimized"
            % (what, var.name, var._data.dtype)
        )


def _grad_array(g, var, where):
    """g as a backend array on var's device (any real dtype; apply casts it to var's dtype)."""
    if isinstance(g, Tensor):
        a = g._data
    elif backend.is_cupy_array(g) or isinstance(g, np.ndarray):
        a = g
    else:
        try:
            a = np.asarray(g)
        except (TypeError, ValueError) as e:
            raise TypeError("%s for variable %s is not numeric: %s" % (where, var.name, e)) from None
    if a.dtype.kind not in "fiu":
        raise TypeError(
            "%s for variable %s has dtype %s; expected a real number type like the variable's %s"
            % (where, var.name, a.dtype, var._data.dtype)
        )
    dev = backend.device_of(var._data)
    return a if backend.device_of(a) == dev else backend.to_device(a, dev)


def _check_pairs(grads, variables):
    """Each gradient as a backend array or _Rows (None stays None); raises before anything changes."""
    seen = set()
    out = []
    for g, var in zip(grads, variables, strict=True):
        _check_variable(var, "apply_gradients")
        if var._id in seen:
            raise ValueError("apply_gradients: variable %s appears more than once" % var.name)
        seen.add(var._id)
        shape = tuple(var._data.shape)
        if g is None:
            out.append(None)
        elif isinstance(g, IndexedSlices):
            out.append(_check_rows(g, var, shape))
        else:
            a = _grad_array(g, var, "the gradient")
            if tuple(a.shape) != shape:
                raise ValueError(
                    "apply_gradients: the gradient for variable %s has shape %s, expected %s "
                    "(the variable's shape)" % (var.name, tuple(a.shape), shape)
                )
            out.append(a)
    return out


def _check_rows(g, var, shape):
    vals = _grad_array(g.values, var, "the IndexedSlices values")
    idx = _grad_array(g.indices, var, "the IndexedSlices indices")
    if not shape:
        raise ValueError(
            "apply_gradients: variable %s is a scalar; an IndexedSlices gradient needs rows" % var.name
        )
    if idx.dtype.kind not in "iu" or idx.ndim != 1:
        raise ValueError(
            "apply_gradients: the IndexedSlices indices for variable %s must be a 1-D integer "
            "array, got shape %s dtype %s" % (var.name, tuple(idx.shape), idx.dtype)
        )
    if tuple(vals.shape) != (idx.shape[0],) + shape[1:]:
        raise ValueError(
            "apply_gradients: the IndexedSlices values for variable %s have shape %s, expected %s "
            "(one row of the variable's shape %s per index)"
            % (var.name, tuple(vals.shape), (idx.shape[0],) + shape[1:], shape)
        )
    if g.dense_shape is not None:
        ds = tuple(int(d) for d in backend.to_numpy(g.dense_shape._data))
        if ds != shape:
            raise ValueError(
                "apply_gradients: the IndexedSlices gradient for variable %s has dense_shape %s, "
                "expected %s (the variable's shape)" % (var.name, ds, shape)
            )
    if idx.size:
        xp = backend.xp_of(idx)
        lo, hi = int(xp.min(idx)), int(xp.max(idx))
        if lo < 0 or hi >= shape[0]:
            raise ValueError(
                "apply_gradients: the IndexedSlices indices for variable %s must be in [0, %d), got "
                "values from %d to %d" % (var.name, shape[0], lo, hi)
            )
    return _Rows(vals, idx)


def _sum_squares(g) -> float:
    """Sum of squares of a gradient (of its slices for _Rows, as tf.clip_by_norm does), in its dtype."""
    a = g.values if isinstance(g, _Rows) else g
    if a.dtype.kind != "f" or a.dtype.itemsize < 4:
        a = a.astype(np.float32 if a.dtype.kind == "f" else np.float64)
    flat = a.reshape(-1)
    return float(backend.xp_of(flat).vdot(flat, flat))


def _causes(variables):
    """One line per variable: why its gradient is None, from the tape that produced it (accel.debugging)."""
    lines = []
    for v in variables:
        r = debugging.missing_gradient_cause(v)
        if r is None:
            lines.append("  - %s: its gradient was None (not from a GradientTape in this thread, so the cause is "
                         "unknown; tape.explain(loss, var) tells it)" % v.name)
        else:
            lines.append("  - %s: %s" % (v.name, r.message) + ("\n      Fix: %s" % r.fix if r.fix else ""))
    return "\n".join(lines)


def _check_finite_lr(lr):
    # negative rates are allowed, as in Keras (gradient ascent); NaN or inf would wreck every weight
    if not math.isfinite(float(lr)):
        raise ValueError("Argument `learning_rate` must be a finite number; received learning_rate=%r" % (lr,))


def _no_gradients_message(variables):
    return (
        "No gradients provided for any variable: %s. Every gradient is None, so nothing was updated. The "
        "cause for each variable:\n%s\nUsual causes: the loss was computed outside the GradientTape (or before "
        "it started); the variables are not used to compute the loss; the computation went through NumPy "
        "(.numpy(), np.* functions), which the tape cannot follow; or the variables were created with "
        "trainable=False, so the tape did not watch them." % ([v.name for v in variables], _causes(variables))
    )
