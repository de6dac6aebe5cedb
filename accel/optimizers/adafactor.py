"""Adafactor (Shazeer & Stern, 2018) as Keras 3 writes it: factored second moments for rank >= 2."""

from __future__ import annotations

import math

from accel import backend
from accel.optimizers.base import Optimizer, f32


class Adafactor(Optimizer):
    """Per step t, with G = g^2 + epsilon_1 and b = 1 - t^beta_2_decay:
    rank >= 2: r = b r + (1 - b) mean(G, -1); c = b c + (1 - b) mean(G, -2);
               v = (r / mean(r, -1))[..., None] * c[..., None, :]
    rank < 2:  v = b v + (1 - b) G
    u = g / sqrt(v); p -= max(epsilon_2, rms(p)) min(lr, 1/sqrt(t)) u / max(1, rms(u) / clip_threshold).

    relative_step is kept for Keras compatibility; Keras' step size already is min(lr, 1/sqrt(t)),
    so it changes nothing.
    """

    _slice_fn = "square"
    _scratch = 2

    def __init__(
        self,
        learning_rate=0.001,
        beta_2_decay=-0.8,
        epsilon_1=1e-30,
        epsilon_2=1e-3,
        clip_threshold=1.0,
        relative_step=True,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_2_decay = beta_2_decay
        self.epsilon_1 = epsilon_1
        self.epsilon_2 = epsilon_2
        self.clip_threshold = clip_threshold
        self.relative_step = relative_step

    def _slot_specs(self, var):
        shape = tuple(var.shape)
        if len(shape) < 2:
            return [("velocity", shape, 0.0)]
        return [("r", shape[:-1], 0.0), ("c", shape[:-2] + shape[-1:], 0.0), ("velocity", shape, 0.0)]

    def _update(self, p, g, fg, s, lr, step, bufs):
        xp = backend.xp_of(p)
        dt = p.dtype.type
        t, w = bufs
        ts = dt(step)
        rho_t = min(dt(lr), dt(1) / dt(math.sqrt(ts)))
        xp.multiply(p, p, out=t)
        alpha_t = max(dt(f32(self.epsilon_2)), dt(math.sqrt(t.mean()))) * rho_t
        if fg is None:
            xp.multiply(g, g, out=t)
        else:
            t[...] = fg
        t += dt(self.epsilon_1)
        b = dt(1) - ts ** dt(self.beta_2_decay)
        v = s["velocity"]
        if p.ndim >= 2:
            r, c = s["r"], s["c"]
            r *= b
            r += (dt(1) - b) * t.mean(axis=-1)
            c *= b
            c += (dt(1) - b) * t.mean(axis=-2)
            xp.multiply((r / r.mean(axis=-1, keepdims=True))[..., None], c[..., None, :], out=v)
        else:
            v *= b
            t *= dt(1) - b
            v += t
        xp.sqrt(v, out=w)
        xp.divide(g, w, out=t)  # u
        if fg is None:
            xp.multiply(t, t, out=w)
        else:
            # Keras keeps u row-sparse: each repeated slice is squared on its own
            xp.divide(fg, v, out=w)
        rms_u = dt(math.sqrt(w.mean()))
        t *= alpha_t / max(dt(1), rms_u / dt(self.clip_threshold))
        p -= t

    def get_config(self):
        config = super().get_config()
        config.update(
            beta_2_decay=self.beta_2_decay,
            epsilon_1=self.epsilon_1,
            epsilon_2=self.epsilon_2,
            clip_threshold=self.clip_threshold,
            relative_step=self.relative_step,
        )
        return config
