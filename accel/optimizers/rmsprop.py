"""RMSprop, Adagrad and Adadelta, with Keras 3's update formulas (epsilon inside the square root)."""

from __future__ import annotations

from accel import backend
from accel.optimizers.base import Optimizer, decayed, defupdate, f32


def _rmsprop_rule(xp, p, g, v, m=None, mg=None, *, lr, rho, om_rho, momentum, eps, wd, gg=None):
    """Keras 3's RMSprop step: v = rho v + (1 - rho) g^2; [centered: mg = rho mg + (1 - rho) g, v - mg^2
    below]; incr = lr g / sqrt(v + eps); [momentum: m = momentum m + incr, p -= m] else p -= incr."""
    v = rho * v + om_rho * (g * g if gg is None else gg)
    new = {"v": v}
    if mg is not None:
        mg = new["mg"] = rho * mg + om_rho * g
        denom = v - mg * mg + eps
    else:
        denom = v + eps
    incr = (lr * g) / xp.sqrt(denom)
    p = decayed(xp, p, wd, lr)
    if m is not None:
        m = new["m"] = momentum * m + incr
        incr = m
    new["p"] = p - incr
    return new


def _adagrad_rule(xp, p, g, acc, *, lr, eps, wd, gg=None):
    """Keras 3's Adagrad step: acc += g^2; p -= lr g / sqrt(acc + eps)."""
    acc = acc + (g * g if gg is None else gg)
    return {"p": decayed(xp, p, wd, lr) - (lr * g) / xp.sqrt(acc + eps), "acc": acc}


_RMSPROP_SCALARS = ("lr", "rho", "om_rho", "momentum", "eps", "wd")
defupdate("rmsprop", _rmsprop_rule, ("p", "g", "v"), _RMSPROP_SCALARS)
defupdate("rmsprop_momentum", _rmsprop_rule, ("p", "g", "v", "m"), _RMSPROP_SCALARS)
defupdate("rmsprop_centered", lambda xp, p, g, v, mg, **kw: _rmsprop_rule(xp, p, g, v, None, mg, **kw),
          ("p", "g", "v", "mg"), _RMSPROP_SCALARS)
defupdate("rmsprop_centered_momentum", _rmsprop_rule, ("p", "g", "v", "m", "mg"), _RMSPROP_SCALARS)
defupdate("adagrad", _adagrad_rule, ("p", "g", "acc"), ("lr", "eps", "wd"))


def rmsprop_variant(m, mg):
    return "rmsprop" + ("_centered" if mg is not None else "") + ("_momentum" if m is not None else "")


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
        m, mg = s.get("momentum"), s.get("average_gradient")
        arrays = dict(p=p, g=g, v=s["velocity"], m=m, mg=mg)
        self._apply_rule(rmsprop_variant(m, mg), arrays, gg=fg, lr=lr, rho=self.rho, om_rho=1 - self.rho,
                         momentum=self.momentum, eps=self.epsilon)

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
        self._apply_rule("adagrad", dict(p=p, g=g, acc=s["accumulator"]), gg=fg, lr=lr, eps=self.epsilon)

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
