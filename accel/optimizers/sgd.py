"""SGD (momentum, Nesterov) and Lion, with Keras 3's update formulas."""

from __future__ import annotations

from accel.optimizers.base import Optimizer, decayed, defupdate, f32


def _sgd_rule(xp, p, g, m=None, *, lr, momentum=0.0, wd, nesterov=False, gg=None):
    """Keras 3's SGD step: p -= g lr, or m = m momentum - g lr and p += m (nesterov: p += m momentum - g lr)."""
    p = decayed(xp, p, wd, lr)
    gl = g * lr
    if m is None:
        return {"p": p - gl}
    m = m * momentum - gl
    return {"p": p + (m * momentum - gl) if nesterov else p + m, "m": m}


def _lion_rule(xp, p, g, m, *, lr, b1, om_b1, b2, om_b2, wd, gg=None):
    """Keras 3's Lion step: p -= lr sign(m b1 + g (1 - b1)); m = m b2 + g (1 - b2)."""
    p = decayed(xp, p, wd, lr)
    return {"p": p - lr * xp.sign(m * b1 + g * om_b1), "m": m * b2 + g * om_b2}


defupdate("sgd", _sgd_rule, ("p", "g"), ("lr", "wd"))
defupdate("sgd_momentum", _sgd_rule, ("p", "g", "m"), ("lr", "momentum", "wd"))
defupdate("sgd_nesterov", _sgd_rule, ("p", "g", "m"), ("lr", "momentum", "wd"), nesterov=True)
defupdate("lion", _lion_rule, ("p", "g", "m"), ("lr", "b1", "om_b1", "b2", "om_b2", "wd"))


class SGD(Optimizer):
    """momentum == 0: p -= lr g. Otherwise m = momentum m - lr g, then p += m, or with nesterov
    p += momentum m - lr g."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not isinstance(momentum, float) or momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum = momentum
        self.nesterov = nesterov

    def _slot_specs(self, var):
        return [("momentum", var.shape, 0.0)] if self.momentum != 0 else []

    def _fused_update(self, p, g, s, lr, step, wd):
        m = s.get("momentum")
        k = self._kernels(p, g, *(() if m is None else (m,)))
        if k is None:
            return False
        k.sgd_update(p, g, lr, m, f32(self.momentum), self.nesterov, wd)
        return True

    def _update(self, p, g, fg, s, lr, step, bufs):
        if self.momentum == 0:
            self._apply_rule("sgd", dict(p=p, g=g), lr=lr)
        else:
            self._apply_rule("sgd_nesterov" if self.nesterov else "sgd_momentum", dict(p=p, g=g, m=s["momentum"]),
                             lr=lr, momentum=f32(self.momentum))

    _device_kind = "sgd"

    def _device_update(self, ps, gs, slots, counter, lr, wd, tables):
        from accel import fused  # noqa: PLC0415

        ms = [s["momentum"] for s in slots] if self.momentum != 0 else None
        fused.sgd_multi_update(ps, gs, ms, lr, f32(self.momentum), self.nesterov, wd, tables=tables)

    def _device_hyper(self):
        return (self.momentum, self.nesterov)

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, nesterov=self.nesterov)
        return config


class Lion(Optimizer):
    """p -= lr sign(b1 m + (1 - b1) g); m = b2 m + (1 - b2) g."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if beta_1 <= 0 or beta_1 > 1:
            raise ValueError(
                "Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer degenerates "
                "to SignSGD. Received: beta_1=%s." % (beta_1,)
            )
        self.beta_1 = beta_1
        self.beta_2 = beta_2

    def _slot_specs(self, var):
        return [("momentum", var.shape, 0.0)]

    def _fused_update(self, p, g, s, lr, step, wd):
        k = self._kernels(p, g, s["momentum"])
        if k is None:
            return False
        k.lion_update(p, g, s["momentum"], lr, f32(self.beta_1), f32(self.beta_2), wd)
        return True

    def _update(self, p, g, fg, s, lr, step, bufs):
        dt = p.dtype.type
        b1, b2 = dt(f32(self.beta_1)), dt(f32(self.beta_2))  # Keras: 1 - cast(beta) in the variable dtype
        self._apply_rule("lion", dict(p=p, g=g, m=s["momentum"]), lr=lr, b1=b1, om_b1=dt(1) - b1, b2=b2,
                         om_b2=dt(1) - b2)

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2)
        return config
