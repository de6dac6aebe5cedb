"""Keras 3 recurrent layers: SimpleRNN, LSTM, GRU (with their cells) and Bidirectional.

The time loop projects the inputs of all time steps with one matmul, then runs only the recurrent part per
step with accel ops, so the tape differentiates through time. Weights are Keras 3's (`kernel`,
`recurrent_kernel`, `bias`; gates i, f, c, o for LSTM and z, r, h for GRU), so the same weights give the
same outputs.
"""

from __future__ import annotations

import numpy as np

import accel
from accel.keras import activations, initializers
from accel.keras.layers.base import Layer


Orthogonal = initializers.Orthogonal
_initializer = initializers.get


def _rate(value, what):
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError("%s must be in [0, 1], got %r" % (what, value))
    return rate


class _Cell(Layer):
    """One step of a recurrent layer. `call(inputs, states)` is Keras's cell API; the layers use the split
    form instead: `_project` (inputs of all steps at once) and `_step` (the recurrent part of one step)."""

    _gates = 1

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 dropout=0.0, recurrent_dropout=0.0, seed=None, implementation=2, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        if self.units <= 0:
            raise ValueError("%s: units must be positive, got %r" % (type(self).__name__, units))
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializer(kernel_initializer)
        self.recurrent_initializer = _initializer(recurrent_initializer)
        self.bias_initializer = _initializer(bias_initializer)
        self.dropout = _rate(dropout, "%s dropout" % type(self).__name__)
        self.recurrent_dropout = _rate(recurrent_dropout, "%s recurrent_dropout" % type(self).__name__)
        self.seed = seed
        # Keras's implementation 1 (forced by recurrent dropout) draws one dropout mask per gate; the numbers
        # are otherwise those of implementation 2
        self.implementation = 1 if self.recurrent_dropout else int(implementation)
        if self.implementation not in (1, 2):
            raise ValueError("%s: implementation must be 1 or 2, got %r" % (type(self).__name__, implementation))
        self._mask_draws = 0
        self.kernel = self.recurrent_kernel = self.bias = None

    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self):
        return self.units

    def _bias_shape(self):
        return (self._gates * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError("%s %s: the last axis of the input must be known" % (type(self).__name__, self.name))
        g = self._gates * self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], g), initializer=self.kernel_initializer, name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, g), initializer=self.recurrent_initializer, name="recurrent_kernel")
        if self.use_bias:
            self.bias = self.add_weight(shape=self._bias_shape(), initializer=self._bias_initializer(), name="bias")

    # --- dropout masks: drawn once per layer call, the same for every time step (as Keras) ----------------
    def _draw(self, shape, rate, count):
        masks = []
        for _ in range(count):
            seed = None
            if self.seed is not None:
                seed = int(np.random.SeedSequence([self.seed, self._mask_draws]).generate_state(1)[0])
                self._mask_draws += 1
            masks.append(accel.nn.dropout(accel.ones(shape, dtype=self._compute_dtype), rate, seed=seed))
        return masks

    def _prepare(self, batch, training):
        """Per-call constants: dropout masks (one per gate when recurrent dropout is on, Keras's
        implementation 1) and the recurrent kernel split as the step needs it."""
        count = self._gates if self.implementation == 1 else 1
        ctx = {"dp": None, "rec": None}
        if training and 0 < self.dropout < 1:
            ctx["dp"] = self._draw((batch, self.kernel.shape[0]), self.dropout, count)
        if training and 0 < self.recurrent_dropout < 1:
            ctx["rec"] = self._draw((batch, self.units), self.recurrent_dropout, count)
        if ctx["rec"] is not None:
            r = self.recurrent_kernel
            ctx["r_parts"] = accel.split(r, self._gates, axis=1) if self._gates > 1 else [r]
        return ctx

    def _project(self, x, ctx):
        """x (..., batch, input_dim) -> (..., batch, gates * units): every step's input part, with its bias."""
        dp = ctx["dp"]
        if dp is None:
            z = accel.matmul(x, self.kernel)
        elif len(dp) == 1:
            z = accel.matmul(x * dp[0], self.kernel)
        else:
            kernels = accel.split(self.kernel, self._gates, axis=1)
            z = accel.concat([accel.matmul(x * m, k) for m, k in zip(dp, kernels, strict=True)], axis=-1)
        bias = self._input_bias()
        return z if bias is None else z + bias

    def _input_bias(self):
        return self.bias

    def _recurrent(self, h, ctx, gates=None):
        """h @ recurrent_kernel for the first `gates` gates (all by default), dropout applied per gate."""
        gates = self._gates if gates is None else gates
        if ctx["rec"] is None:
            r = self.recurrent_kernel if gates == self._gates else self.recurrent_kernel[:, : gates * self.units]
            return accel.matmul(h, r)
        parts = [accel.matmul(h * m, k) for m, k in zip(ctx["rec"][:gates], ctx["r_parts"][:gates], strict=True)]
        return parts[0] if gates == 1 else accel.concat(parts, axis=-1)

    def get_initial_state(self, batch_size):
        return [accel.zeros((batch_size, self.units), dtype=self._compute_dtype)]

    def call(self, inputs, states, training=False):
        """One step, Keras's cell API: (output, new_states) for inputs (batch, input_dim)."""
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        ctx = self._prepare(inputs.shape[0], training)
        return self._step(self._project(inputs, ctx), states, ctx)


class SimpleRNNCell(_Cell):
    def __init__(self, units, activation="tanh", **kwargs):
        kwargs.pop("recurrent_activation", None)
        kwargs.pop("implementation", None)
        super().__init__(units, activation=activation, **kwargs)

    def _step(self, xz, states, ctx):
        out = xz + self._recurrent(states[0], ctx)
        out = self.activation(out)
        return out, [out]


class LSTMCell(_Cell):
    _gates = 4

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    @property
    def state_size(self):
        return [self.units, self.units]

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        init, u = self.bias_initializer, self.units

        def forget_ones(shape, dtype=None):
            return accel.concat([init((u,), dtype=dtype), accel.ones((u,), dtype=dtype), init((2 * u,), dtype=dtype)],
                                axis=0)

        return forget_ones

    def get_initial_state(self, batch_size):
        return [accel.zeros((batch_size, self.units), dtype=self._compute_dtype) for _ in range(2)]

    def _step(self, xz, states, ctx):
        h, c = states
        i, f, g, o = accel.split(xz + self._recurrent(h, ctx), 4, axis=-1)
        ra = self.recurrent_activation
        c = ra(f) * c + ra(i) * self.activation(g)
        h = ra(o) * self.activation(c)
        return h, [h, c]


class GRUCell(_Cell):
    """With `reset_after=True` (Keras 3's default) the bias is (2, 3 * units): input and recurrent rows."""

    _gates = 3

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _input_bias(self):
        if self.bias is None or not self.reset_after:
            return self.bias
        return self.bias[0]

    def _step(self, xz, states, ctx):
        (h,) = states
        u = self.units
        ra = self.recurrent_activation
        x_z, x_r, x_h = accel.split(xz, 3, axis=-1)
        if self.reset_after:
            inner = self._recurrent(h, ctx)
            if self.bias is not None:
                inner = inner + self.bias[1]
            r_z, r_r, r_h = accel.split(inner, 3, axis=-1)
            z, r = ra(x_z + r_z), ra(x_r + r_r)
            hh = self.activation(x_h + r * r_h)
        else:
            r_z, r_r = accel.split(self._recurrent(h, ctx, gates=2), 2, axis=-1)
            z, r = ra(x_z + r_z), ra(x_r + r_r)
            h_h = h if ctx["rec"] is None else h * ctx["rec"][2]
            hh = self.activation(x_h + accel.matmul(r * h_h, self.recurrent_kernel[:, 2 * u:]))
        h = z * h + (1 - z) * hh
        return h, [h]


def _split_kwargs(kwargs):
    """Weight regularizers and constraints go to the cell (which owns the weights); the rest to the layer."""
    cell = {k: kwargs.pop(k) for k in list(kwargs)
            if (k.endswith("_regularizer") and k != "activity_regularizer") or k.endswith("_constraint")}
    return cell, kwargs


_CELL_SETTINGS = frozenset({
    "units", "activation", "recurrent_activation", "use_bias", "dropout", "recurrent_dropout", "unit_forget_bias",
    "reset_after", "implementation", "kernel_initializer", "recurrent_initializer", "bias_initializer", "seed"})


class RNN(Layer):
    """The time loop around a cell (`SimpleRNNCell`, `LSTMCell`, `GRUCell`).

    `call(sequences, initial_state=None, mask=None, training=False)`: sequences (batch, timesteps, features);
    a mask (batch, timesteps) skips steps: a masked step keeps the previous state and repeats the previous
    output (zeros when `zero_output_for_mask`), as Keras 3's loop does.
    """

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, zero_output_for_mask=False, **kwargs):
        if stateful:
            raise NotImplementedError("%s: stateful=True is not supported by accel; carry the states yourself "
                                      "with return_state=True and initial_state=" % type(self).__name__)
        if not isinstance(cell, _Cell):
            raise TypeError("RNN: cell must be a SimpleRNNCell, LSTMCell or GRUCell, got %r" % (cell,))
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = False
        self.unroll = bool(unroll)  # the loop is always unrolled eagerly; same numbers
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.supports_masking = True

    def __getattr__(self, name):
        # Keras exposes the cell's settings on the layer (lstm.units, lstm.dropout, ...)
        if name in _CELL_SETTINGS:
            cell = self.__dict__.get("cell")
            if cell is not None:
                return getattr(cell, name)
        raise AttributeError("%r object has no attribute %r" % (type(self).__name__, name))

    @property
    def state_size(self):
        s = self.cell.state_size
        return list(s) if isinstance(s, (list, tuple)) else [s]

    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) != 3:
            raise ValueError("%s %s: expected a 3-D input (batch, timesteps, features), got shape %s"
                             % (type(self).__name__, self.name, tuple(sequences_shape)))
        if not self.cell.built:
            self.cell.build((sequences_shape[0], sequences_shape[2]))
            self.cell.built = True

    def compute_mask(self, inputs, mask=None):
        out = mask if self.return_sequences else None
        return [out] + [None] * len(self.state_size) if self.return_state else out

    def get_initial_state(self, batch_size):
        return self.cell.get_initial_state(batch_size)

    def _initial_states(self, initial_state, batch):
        expected = [(batch, s) for s in self.state_size]
        if initial_state is None:
            return self.cell.get_initial_state(batch)
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(states) != len(expected):
            raise ValueError("%s %s: initial_state must hold %d state(s) of shape (batch, units), got %d"
                             % (type(self).__name__, self.name, len(expected), len(states)))
        out = []
        for i, (s, shape) in enumerate(zip(states, expected, strict=True)):
            t = s if isinstance(s, accel.Tensor) else accel.convert_to_tensor(np.asarray(s))
            t = accel.cast(t, self._compute_dtype)
            if tuple(t.shape) != shape:
                raise ValueError("%s %s: initial_state[%d] must have shape %s, got %s"
                                 % (type(self).__name__, self.name, i, shape, tuple(t.shape)))
            out.append(t)
        return out

    def _check_mask(self, mask, batch, steps):
        if mask is None:
            return None
        m = mask if isinstance(mask, accel.Tensor) else accel.convert_to_tensor(np.asarray(mask))
        if m.dtype != accel.bool:
            m = accel.cast(m, accel.bool)
        if tuple(m.shape) != (batch, steps):
            raise ValueError("%s %s: mask must have shape (batch, timesteps) = %s, got %s"
                             % (type(self).__name__, self.name, (batch, steps), tuple(m.shape)))
        return m

    def call(self, sequences, initial_state=None, mask=None, training=False):
        x = sequences
        name = "%s %s" % (type(self).__name__, self.name)
        if x.ndim != 3:
            raise ValueError("%s: expected a 3-D input (batch, timesteps, features), got shape %s"
                             % (name, tuple(x.shape)))
        batch, steps, features = x.shape
        if features != self.cell.kernel.shape[0]:
            raise ValueError("%s: expected %d features on axis -1 of the input, got shape %s"
                             % (name, self.cell.kernel.shape[0], tuple(x.shape)))
        if steps == 0:
            raise ValueError("%s: the input has no time steps (shape %s)" % (name, tuple(x.shape)))
        if not x.dtype.is_floating:
            x = accel.cast(x, self._compute_dtype)
        states = self._initial_states(initial_state, batch)
        mask = self._check_mask(mask, batch, steps)
        cell = self.cell
        ctx = cell._prepare(batch, bool(training))
        # time-major: one matmul projects every step, and each step reads a contiguous (batch, gates*units) slice
        xs = accel.unstack(cell._project(accel.transpose(x, [1, 0, 2]), ctx))
        ms = None if mask is None else accel.unstack(accel.expand_dims(accel.transpose(mask), -1))
        if self.go_backwards:
            xs = xs[::-1]
            ms = None if ms is None else ms[::-1]
        outputs = []
        prev = None
        for t, xz in enumerate(xs):
            out, new = cell._step(xz, states, ctx)
            if ms is not None:
                if self.zero_output_for_mask or prev is None:
                    prev = accel.zeros_like(out)
                out = accel.where(ms[t], out, prev)
                new = [accel.where(ms[t], n, s) for n, s in zip(new, states, strict=True)]
                prev = out
            states = new
            if self.return_sequences or t == steps - 1:
                outputs.append(out)
        output = accel.stack(outputs, axis=1) if self.return_sequences else outputs[-1]
        return (output, *states) if self.return_state else output

    def _config(self):
        return dict(return_sequences=self.return_sequences, return_state=self.return_state,
                    go_backwards=self.go_backwards, unroll=self.unroll, zero_output_for_mask=self.zero_output_for_mask,
                    dtype=self._dtype_policy.name)

    def _copy(self, name, go_backwards):
        """A fresh layer with the same settings (new weights), as Bidirectional makes from its layer."""
        cfg = self._config()
        cfg.update(name=name, go_backwards=go_backwards)
        cell = self.cell
        cell_cfg = dict(units=cell.units, activation=cell.activation, use_bias=cell.use_bias,
                        kernel_initializer=cell.kernel_initializer, recurrent_initializer=cell.recurrent_initializer,
                        bias_initializer=cell.bias_initializer, dropout=cell.dropout,
                        recurrent_dropout=cell.recurrent_dropout, seed=cell.seed)
        if not isinstance(cell, SimpleRNNCell):
            cell_cfg["recurrent_activation"] = cell.recurrent_activation
            cell_cfg["implementation"] = cell.implementation
        if isinstance(cell, LSTMCell):
            cell_cfg["unit_forget_bias"] = cell.unit_forget_bias
        if isinstance(cell, GRUCell):
            cell_cfg["reset_after"] = cell.reset_after
        new = type(self)(**cell_cfg, **cfg)
        new.cell._regularizers = dict(cell._regularizers)
        new._activity_regularizer = self._activity_regularizer
        return new


class SimpleRNN(RNN):
    """Fully connected RNN: h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)."""

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", dropout=0.0, recurrent_dropout=0.0,
                 seed=None, **kwargs):
        cell_kwargs, kwargs = _split_kwargs(kwargs)
        cell = SimpleRNNCell(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                             recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                             dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed,
                             dtype=kwargs.get("dtype"), name="simple_rnn_cell", **cell_kwargs)
        super().__init__(cell, **kwargs)


class LSTM(RNN):
    """Long short-term memory (Hochreiter 1997), Keras 3's formulation: gates i, f, c, o in that order.

    >>> lstm = LSTM(4, return_sequences=True, return_state=True)
    >>> seq, h, c = lstm(accel.ones((2, 5, 3)))
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0, seed=None, implementation=2, **kwargs):
        kwargs.pop("use_cudnn", None)
        cell_kwargs, kwargs = _split_kwargs(kwargs)
        cell = LSTMCell(units, activation=activation, recurrent_activation=recurrent_activation, use_bias=use_bias,
                        kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
                        bias_initializer=bias_initializer, unit_forget_bias=unit_forget_bias, dropout=dropout,
                        recurrent_dropout=recurrent_dropout, seed=seed, implementation=implementation,
                        dtype=kwargs.get("dtype"), name="lstm_cell", **cell_kwargs)
        super().__init__(cell, **kwargs)


class GRU(RNN):
    """Gated recurrent unit, Keras 3's formulation: gates z, r, h; `reset_after=True` applies the reset gate
    after the recurrent matmul (cuDNN's variant, bias (2, 3 * units))."""

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 dropout=0.0, recurrent_dropout=0.0, seed=None, reset_after=True, implementation=2, **kwargs):
        kwargs.pop("use_cudnn", None)
        cell_kwargs, kwargs = _split_kwargs(kwargs)
        cell = GRUCell(units, activation=activation, recurrent_activation=recurrent_activation, use_bias=use_bias,
                       kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
                       bias_initializer=bias_initializer, dropout=dropout, recurrent_dropout=recurrent_dropout,
                       seed=seed, reset_after=reset_after, implementation=implementation, dtype=kwargs.get("dtype"),
                       name="gru_cell", **cell_kwargs)
        super().__init__(cell, **kwargs)


_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Runs a copy of `layer` forwards and another backwards over the sequence and merges their outputs.

    `merge_mode`: "concat" (default), "sum", "mul", "ave", or None (a pair of outputs). With
    `return_state`, the forward layer's final states follow the output, then the backward layer's;
    `initial_state=` takes them in the same order.
    """

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        if not isinstance(layer, RNN):
            raise ValueError("Bidirectional: layer must be an RNN layer (SimpleRNN, LSTM, GRU), got %r" % (layer,))
        if merge_mode not in _MERGE_MODES:
            raise ValueError("Bidirectional: invalid merge_mode %r; expected one of %s"
                             % (merge_mode, ", ".join(repr(m) for m in _MERGE_MODES)))
        if weights is not None:
            raise NotImplementedError("Bidirectional: weights= is not supported; call set_weights after building")
        kwargs.setdefault("dtype", layer.dtype)
        super().__init__(**kwargs)
        base = layer.name.removeprefix("forward_")
        self.forward_layer = layer._copy("forward_" + base, layer.go_backwards)
        if backward_layer is None:
            self.backward_layer = layer._copy("backward_" + layer.name.removeprefix("backward_"),
                                              not layer.go_backwards)
        else:
            if not isinstance(backward_layer, RNN):
                raise ValueError("Bidirectional: backward_layer must be an RNN layer, got %r" % (backward_layer,))
            if backward_layer.go_backwards == layer.go_backwards:
                raise ValueError("Bidirectional: the forward and backward layers must have different go_backwards")
            if (backward_layer.return_sequences, backward_layer.return_state) != (layer.return_sequences,
                                                                                   layer.return_state):
                raise ValueError("Bidirectional: the forward and backward layers must have the same "
                                 "return_sequences and return_state")
            self.backward_layer = backward_layer
        # as Keras: with sequences returned, masked steps of each direction output zeros
        for sub in (self.forward_layer, self.backward_layer):
            sub.zero_output_for_mask = sub.return_sequences
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.stateful = False
        self.supports_masking = True

    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) != 3:
            raise ValueError("Bidirectional %s: expected a 3-D input (batch, timesteps, features), got shape %s"
                             % (self.name, tuple(sequences_shape)))
        for sub in (self.forward_layer, self.backward_layer):
            if not sub.built:
                sub.build(sequences_shape)
                sub.built = True

    def compute_mask(self, inputs, mask=None):
        if self.return_sequences:
            out = mask if self.merge_mode is not None else [mask, mask]
        else:
            out = None if self.merge_mode is not None else [None, None]
        if not self.return_state:
            return out
        states = [None] * (len(self.forward_layer.state_size) * 2)
        return ([out] if self.merge_mode is not None else out) + states

    def call(self, sequences, initial_state=None, mask=None, training=False):
        fwd_state = bwd_state = None
        if initial_state is not None:
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            n = len(self.forward_layer.state_size)
            if len(states) != 2 * n:
                raise ValueError("Bidirectional %s: initial_state must hold %d states (the forward layer's %d, then "
                                 "the backward layer's), got %d" % (self.name, 2 * n, n, len(states)))
            fwd_state, bwd_state = states[:n], states[n:]
        y = self.forward_layer(sequences, initial_state=fwd_state, mask=mask, training=training)
        y_rev = self.backward_layer(sequences, initial_state=bwd_state, mask=mask, training=training)
        states = ()
        if self.return_state:
            states = tuple(y[1:]) + tuple(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = accel.reverse(y_rev, [1])
        if self.merge_mode == "concat":
            out = (accel.concat([y, y_rev], axis=-1),)
        elif self.merge_mode == "sum":
            out = (y + y_rev,)
        elif self.merge_mode == "ave":
            out = ((y + y_rev) / 2,)
        elif self.merge_mode == "mul":
            out = (y * y_rev,)
        else:
            out = (y, y_rev)
        if self.return_state or self.merge_mode is None:
            return out + states
        return out[0]
