"""SGD (momentum, Nesterov) and Lion, with Keras 3's update formulas."""

from __future__ import annotations

from accel import backend
from accel.optimizers.base import Optimizer, f32


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
        xp = backend.xp_of(p)
        dt = p.dtype.type
        t = bufs[0]
        xp.multiply(g, dt(lr), out=t)
        if self.momentum == 0:
            p -= t
            return
        m = s["momentum"]
        mom = dt(f32(self.momentum))
        m *= mom
        m -= t
        if self.nesterov:
            p -= t
            xp.multiply(m, mom, out=t)
            p += t
        else:
            p += m

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, nesterov=self.nesterov)
        return config


class Lion(Optimizer):
    """p -= lr sign(b1 m + (1 - b1) g); m = b2 m + (1 - b2) g."""

    _scratch = 2

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
        xp = backend.xp_of(p)
        dt = p.dtype.type
        b1, b2 = dt(f32(self.beta_1)), dt(f32(self.beta_2))
        m = s["momentum"]
        t, w = bufs
        xp.multiply(m, b1, out=t)
        xp.multiply(g, dt(1) - b1, out=w)
        t += w
        xp.sign(t, out=t)
        t *= dt(lr)
        p -= t
        m *= b2
        xp.multiply(g, dt(1) - b2, out=w)
        m += w

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2)
        return config
