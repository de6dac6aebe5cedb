"""RMSprop, Adagrad and Adadelta, with Keras 3's update formulas (epsilon inside the square root)."""

from __future__ import annotations

from accel import backend
from accel.optimizers.base import Optimizer, f32


class RMSprop(Optimizer):
    """v = rho v + (1 - rho) g^2; [centered: a = rho a + (1 - rho) g, v - a^2 below];
    incr = lr g / sqrt(v + epsilon); [momentum > 0: mo = momentum mo + incr, p -= mo] else p -= incr."""

    _slice_fn = "square"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def _slot_specs(self, var):
        names = (
            ("velocity",)
            + (("momentum",) if self.momentum > 0 else ())
            + (("average_gradient",) if self.centered else ())
        )
        return [(n, var.shape, 0.0) for n in names]

    def _fused_update(self, p, g, s, lr, step, wd):
        m, mg = s.get("momentum"), s.get("average_gradient")
        k = self._kernels(p, g, s["velocity"], *(a for a in (m, mg) if a is not None))
        if k is None:
            return False
        k.rmsprop_update(
            p, g, s["velocity"], lr, self.rho, self.epsilon, m=m, momentum=self.momentum, mg=mg, wd=wd
        )
        return True

    def _update(self, p, g, fg, s, lr, step, bufs):
        xp = backend.xp_of(p)
        dt = p.dtype.type
        rho, om_rho = dt(self.rho), dt(1 - self.rho)
        v = s["velocity"]
        t = bufs[0]
        v *= rho
        if fg is None:
            xp.multiply(g, g, out=t)
        else:
            t[...] = fg
        t *= om_rho
        v += t
        if self.centered:
            a = s["average_gradient"]
            a *= rho
            xp.multiply(g, om_rho, out=t)
            a += t
            xp.multiply(a, a, out=t)
            xp.subtract(v, t, out=t)
            t += dt(self.epsilon)
        else:
            xp.add(v, dt(self.epsilon), out=t)
        xp.sqrt(t, out=t)
        xp.divide(g, t, out=t)
        t *= dt(lr)
        if self.momentum > 0:
            mo = s["momentum"]
            mo *= dt(self.momentum)
            mo += t
            p -= mo
        else:
            p -= t

    def get_config(self):
        config = super().get_config()
        config.update(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon, centered=self.centered)
        return config


class Adagrad(Optimizer):
    """acc += g^2 (acc starts at initial_accumulator_value); p -= lr g / sqrt(acc + epsilon)."""

    _slice_fn = "square"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def _slot_specs(self, var):
        return [("accumulator", var.shape, f32(self.initial_accumulator_value))]

    def _fused_update(self, p, g, s, lr, step, wd):
        k = self._kernels(p, g, s["accumulator"])
        if k is None:
            return False
        k.adagrad_update(p, g, s["accumulator"], lr, self.epsilon, wd)
        return True

    def _update(self, p, g, fg, s, lr, step, bufs):
        xp = backend.xp_of(p)
        dt = p.dtype.type
        acc = s["accumulator"]
        t = bufs[0]
        if fg is None:
            xp.multiply(g, g, out=t)
            acc += t
        else:
            acc += fg
        xp.add(acc, dt(self.epsilon), out=t)
        xp.sqrt(t, out=t)
        xp.divide(g, t, out=t)
        t *= dt(lr)
        p -= t

    def get_config(self):
        config = super().get_config()
        config.update(initial_accumulator_value=self.initial_accumulator_value, epsilon=self.epsilon)
        return config


class Adadelta(Optimizer):
    """ag = rho ag + (1 - rho) g^2; d = -sqrt(ad + eps) g / sqrt(ag + eps);
    ad = rho ad + (1 - rho) d^2; p += lr d."""

    _slice_fn = "square"
    _scratch = 2

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho = rho
        self.epsilon = epsilon

    def _slot_specs(self, var):
        return [("accumulated_grad", var.shape, 0.0), ("accumulated_delta_var", var.shape, 0.0)]

    def _update(self, p, g, fg, s, lr, step, bufs):
        xp = backend.xp_of(p)
        dt = p.dtype.type
        rho, om_rho, eps = dt(self.rho), dt(1 - self.rho), dt(self.epsilon)
        ag, ad = s["accumulated_grad"], s["accumulated_delta_var"]
        t, w = bufs
        ag *= rho
        if fg is None:
            xp.multiply(g, g, out=t)
        else:
            t[...] = fg
        t *= om_rho
        ag += t
        # delta = -ratio g with ratio = sqrt(ad + eps) / sqrt(ag + eps). Keras keeps delta row-sparse, so
        # repeated rows add their squares: sum(delta_i^2) = ratio^2 fg.
        xp.add(ad, eps, out=t)
        xp.sqrt(t, out=t)
        xp.add(ag, eps, out=w)
        xp.sqrt(w, out=w)
        t /= w
        xp.multiply(t, t, out=w)
        if fg is None:
            w *= g
            w *= g
        else:
            w *= fg
        ad *= rho
        w *= om_rho
        ad += w
        t *= g
        t *= dt(lr)
        p -= t

    def get_config(self):
        config = super().get_config()
        config.update(rho=self.rho, epsilon=self.epsilon)
        return config
