"""accel: TensorFlow eager code run on `import accel as tf` (the same code as tf_impl's eager variants)."""

from importlib.metadata import version

import accel as tf
import accel.backend
import accel.profiler

from . import _tf_style

NAME = "accel"
DEVICES = ("cpu", "gpu") if accel.backend.has_gpu() else ("cpu",)
MEMORY_TRACEABLE = True


def versions():
    return {"accel": version("accel")}


def configure(threads):
    # accel computes with NumPy (whose BLAS threads bench.compare limits) or CuPy. Fused mode "auto" loads
    # numba in the background on first use; benchmarks measure the steady state, so wait for it here.
    from accel import cpu_kernels

    cpu_kernels.wait_warmed(300)


def synchronize(device):
    accel.backend.synchronize()


def count_ops(step):
    """Device operations (kernel launches on a GPU) in one call of step, from accel.profiler."""
    with accel.profiler.profile() as prof:
        step()
    return prof.total_ops


def plan_counts(step):
    """The captured plan of an accel.function step (its most recent trace): Plan.counts() plus "steps",
    the plan's device-side steps per replay (ops + fused kernels + backward rule calls + host steps)."""
    function = step._step
    plans = [p for cf in function._cache.values() for p in cf.plans]
    if not plans:
        raise ValueError("plan_counts: the step has not been called yet, so nothing was traced")
    c = dict(plans[0].counts())
    c["steps"] = c["ops"] + c["fused_kernels"] + c["rule_calls"] + c["host_steps"]
    return c


MLP = {
    "eager": lambda params, x, y, device: _tf_style.MLPStep(tf, params, x, y, device),
    "accel.function": lambda params, x, y, device: _tf_style.MLPStep(tf, params, x, y, device, compiled=True),
    # jit_compile=True also fuses exp/tanh/erf (a few ulp from eager), as jax.jit and torch.compile do
    "accel.function jit": lambda params, x, y, device: _tf_style.MLPStep(tf, params, x, y, device, compiled=True,
                                                                         jit_compile=True),
}
TAPE = {
    "eager": lambda x0, n_ops, device: _tf_style.Chain(tf, x0, n_ops, device),
    "accel.function": lambda x0, n_ops, device: _tf_style.Chain(tf, x0, n_ops, device, compiled=True),
    "accel.function jit": lambda x0, n_ops, device: _tf_style.Chain(tf, x0, n_ops, device, compiled=True,
                                                                    jit_compile=True),
}
CNN = {
    "eager": lambda params, x, y, device: _tf_style.CNNStep(tf, params, x, y, device),
    "accel.function": lambda params, x, y, device: _tf_style.CNNStep(tf, params, x, y, device, compiled=True),
}
ENCODER = {
    "eager": lambda params, x, y, device: _tf_style.EncoderStep(tf, params, x, y, device),
    "accel.function": lambda params, x, y, device: _tf_style.EncoderStep(tf, params, x, y, device,
                                                                          compiled=True),
}
RECORD = {"eager": lambda x0, device: _tf_style.recorder(tf, x0, device)}
