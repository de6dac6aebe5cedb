"""Adam, AdamW, Adamax and Nadam, with Keras 3's update formulas and operation order."""

from __future__ import annotations

from accel import backend, cpu_kernels
from accel.optimizers.base import Optimizer, decayed, defupdate, f32
from accel.variables import Variable


def _adam_rule(xp, p, g, m, v, vhat=None, *, alpha, om_b1, om_b2, eps, lr, wd, gg=None):
    """Keras 3's Adam step in its operation order; gg: the squared gradient where the caller has it
    (row-sparse gradients with repeated rows), else g * g."""
    p = decayed(xp, p, wd, lr)
    m = m + (g - m) * om_b1
    v = v + ((g * g if gg is None else gg) - v) * om_b2
    if vhat is None:
        return {"p": p - (m * alpha) / (xp.sqrt(v) + eps), "m": m, "v": v}
    vhat = xp.maximum(vhat, v)
    return {"p": p - (m * alpha) / (xp.sqrt(vhat) + eps), "m": m, "v": v, "vhat": vhat}


_ADAM_SCALARS = ("alpha", "om_b1", "om_b2", "eps", "lr", "wd")
defupdate("adam", _adam_rule, ("p", "g", "m", "v"), _ADAM_SCALARS)
defupdate("adam_amsgrad", _adam_rule, ("p", "g", "m", "v", "vhat"), _ADAM_SCALARS)


class _Betas(Optimizer):
    """The hyperparameters Adam, Adamax and Nadam share, with Keras' defaults."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return config


class Adam(_Betas):
    """m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); [amsgrad: vhat = max(vhat, v)];
    p -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon)."""

    _slice_fn = "square"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, **kwargs)
        self.amsgrad = amsgrad

    def _slot_specs(self, var):
        names = ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())
        return [(n, var.shape, 0.0) for n in names]

    def _fused_update(self, p, g, s, lr, step, wd):
        vhat = s.get("velocity_hat")
        k = self._kernels(p, g, s["momentum"], s["velocity"], *(() if vhat is None else (vhat,)))
        if k is None:
            return False
        alpha = cpu_kernels.adam_alpha(lr, f32(self.beta_1), f32(self.beta_2), step, p.dtype)
        k.adam_update(
            p, g, s["momentum"], s["velocity"], vhat, alpha, self.beta_1, self.beta_2, self.epsilon, lr, wd
        )
        return True

    _multi = True

    def _multi_update(self, kernels, ps, gs, slots, lr, step, wd):
        alpha = cpu_kernels.adam_alpha(lr, f32(self.beta_1), f32(self.beta_2), step, ps[0].dtype)
        kernels.adam_multi_update(
            ps, gs, [s["momentum"] for s in slots], [s["velocity"] for s in slots],
            [s["velocity_hat"] for s in slots] if self.amsgrad else None,
            alpha, self.beta_1, self.beta_2, self.epsilon, lr, wd,
        )

    def _update(self, p, g, fg, s, lr, step, bufs):
        vhat = s.get("velocity_hat")
        alpha = cpu_kernels.adam_alpha(lr, f32(self.beta_1), f32(self.beta_2), step, p.dtype)
        arrays = dict(p=p, g=g, m=s["momentum"], v=s["velocity"], vhat=vhat)
        self._apply_rule("adam" if vhat is None else "adam_amsgrad", arrays, gg=fg, alpha=alpha,
                         om_b1=1 - self.beta_1, om_b2=1 - self.beta_2, eps=self.epsilon, lr=lr)

    _device_kind = "adam"

    def _device_update(self, ps, gs, slots, counter, lr, wd, tables):
        from accel import fused  # noqa: PLC0415

        fused.adam_multi_update_dev(
            ps, gs, [s["momentum"] for s in slots], [s["velocity"] for s in slots],
            [s["velocity_hat"] for s in slots] if self.amsgrad else None,
            counter, lr, self.beta_1, self.beta_2, self.epsilon, wd, tables=tables,
        )

    def _device_hyper(self):
        return (self.beta_1, self.beta_2, self.epsilon, self.amsgrad)

    def get_config(self):
        config = super().get_config()
        config.update(amsgrad=self.amsgrad)
        return config


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.004): p -= p * weight_decay * lr before each step."""

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.004,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
        **kwargs,
    ):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay, **kwargs)
        if self.weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")


class Adamax(_Betas):
    """m += (g - m)(1 - b1); u = max(b2 u, |g|); p -= lr m / ((1 - b1^t)(u + epsilon))."""

    _slice_fn = "abs"

    def _slot_specs(self, var):
        return [("momentum", var.shape, 0.0), ("norm", var.shape, 0.0)]

    def _update(self, p, g, fg, s, lr, step, bufs):
        xp = backend.xp_of(p)
        dt = p.dtype.type
        m, u = s["momentum"], s["norm"]
        t = bufs[0]
        xp.subtract(g, m, out=t)
        t *= dt(1 - self.beta_1)
        m += t
        u *= dt(self.beta_2)
        xp.maximum(u, xp.abs(g, out=t) if fg is None else fg, out=u)
        xp.add(u, dt(self.epsilon), out=t)
        t *= dt(1) - dt(f32(self.beta_1)) ** dt(step)
        xp.divide(m, t, out=t)
        t *= dt(lr)
        p -= t


class Nadam(_Betas):
    """Adam with Nesterov momentum and Keras' momentum schedule u_t = b1 (1 - 0.5 * 0.96^t); the running
    product of the u_t is optimizer state (u_product), updated once per step."""

    _slice_fn = "square"
    _scratch = 2

    def build(self, var_list):
        var_list = list(var_list)
        if "u_product" not in self._globals and var_list:
            with backend.device("cpu"):
                self._globals["u_product"] = Variable(
                    1.0, dtype=var_list[0].dtype, trainable=False, name=self.name + "/u_product"
                )
        super().build(var_list)

    def _slot_specs(self, var):
        return [("momentum", var.shape, 0.0), ("velocity", var.shape, 0.0)]

    def _before_updates(self, step):
        u = self._globals["u_product"]
        dt = u._data.dtype.type
        u._data[...] = u._data * dt(self.beta_1) * (dt(1) - dt(0.5) * dt(0.96) ** dt(step))

    def _update(self, p, g, fg, s, lr, step, bufs):
        xp = backend.xp_of(p)
        dt = p.dtype.type
        b1, b2, decay = dt(f32(self.beta_1)), dt(f32(self.beta_2)), dt(f32(0.96))
        u_t = b1 * (dt(1) - dt(0.5) * decay ** dt(step))
        u_t_1 = b1 * (dt(1) - dt(0.5) * decay ** dt(step + 1))
        u_product_t = dt(self._globals["u_product"]._data)
        u_product_t_1 = u_product_t * u_t_1
        m, v = s["momentum"], s["velocity"]
        t, w = bufs
        xp.subtract(g, m, out=t)
        t *= dt(1) - b1
        m += t
        if fg is None:
            xp.multiply(g, g, out=t)
        else:
            t[...] = fg
        t -= v
        t *= dt(1) - b2
        v += t
        # m_hat = u_t_1 m / (1 - u_product_t_1) + (1 - u_t) g / (1 - u_product_t)
        xp.multiply(m, u_t_1 / (dt(1) - u_product_t_1), out=t)
        xp.multiply(g, (dt(1) - u_t) / (dt(1) - u_product_t), out=w)
        t += w
        # v_hat = v / (1 - b2^t)
        xp.divide(v, dt(1) - b2 ** dt(step), out=w)
        xp.sqrt(w, out=w)
        w += dt(self.epsilon)
        t *= dt(lr)
        t /= w
        p -= t
