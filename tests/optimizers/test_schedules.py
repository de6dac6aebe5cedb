"""accel.optimizers.schedules against Keras 3's formulas (float64 here; the schedules compute in float32)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import accel
from accel.optimizers import schedules as S

STEPS = [0, 1, 2, 5, 9, 10, 11, 25, 99, 100, 101, 250]


def exponential(step, lr0=0.1, decay_steps=10, rate=0.5, staircase=False):
    p = step / decay_steps
    return lr0 * rate ** (math.floor(p) if staircase else p)


def inverse_time(step, lr0=0.1, decay_steps=10, rate=0.5, staircase=False):
    p = step / decay_steps
    return lr0 / (1 + rate * (math.floor(p) if staircase else p))


def polynomial(step, lr0=0.1, decay_steps=10, end=0.001, power=1.0, cycle=False):
    if cycle:
        decay_steps = decay_steps * (1 if step == 0 else math.ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    return (lr0 - end) * (1 - step / decay_steps) ** power + end


def cosine(step, lr0=0.1, decay_steps=10, alpha=0.0, warmup_target=None, warmup_steps=0):
    if warmup_target is not None:
        step = min(step, decay_steps + warmup_steps)
        if step < warmup_steps:
            return (warmup_target - lr0) * step / warmup_steps + lr0
        step -= warmup_steps
        lr0 = warmup_target
    step = min(step, decay_steps)
    return lr0 * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * step / decay_steps)) + alpha)


def restarts(step, lr0=0.1, first=10, t_mul=2.0, m_mul=1.0, alpha=0.0):
    # walk the periods explicitly: period i lasts first * t_mul^i steps
    start, length, i = 0.0, float(first), 0
    while step >= start + length:
        start += length
        length *= t_mul
        i += 1
    frac = (step - start) / length
    return lr0 * ((1 - alpha) * 0.5 * m_mul**i * (1 + math.cos(math.pi * frac)) + alpha)


CASES = [
    (S.ExponentialDecay(0.1, 10, 0.5), exponential),
    (S.ExponentialDecay(0.1, 10, 0.5, staircase=True), lambda s: exponential(s, staircase=True)),
    (S.InverseTimeDecay(0.1, 10, 0.5), inverse_time),
    (S.InverseTimeDecay(0.1, 10, 0.5, staircase=True), lambda s: inverse_time(s, staircase=True)),
    (S.PolynomialDecay(0.1, 10, 0.001), polynomial),
    (S.PolynomialDecay(0.1, 10, 0.001, power=2.0), lambda s: polynomial(s, power=2.0)),
    (
        S.PolynomialDecay(0.1, 10, 0.001, power=0.5, cycle=True),
        lambda s: polynomial(s, power=0.5, cycle=True),
    ),
    (S.CosineDecay(0.1, 10), cosine),
    (S.CosineDecay(0.1, 10, alpha=0.2), lambda s: cosine(s, alpha=0.2)),
    (
        S.CosineDecay(0.0, 10, warmup_target=0.1, warmup_steps=5),
        lambda s: cosine(s, lr0=0.0, warmup_target=0.1, warmup_steps=5),
    ),
    (S.CosineDecayRestarts(0.1, 10), restarts),
    (
        S.CosineDecayRestarts(0.1, 10, t_mul=1.0, m_mul=0.5, alpha=0.1),
        lambda s: restarts(s, t_mul=1.0, m_mul=0.5, alpha=0.1),
    ),
    (S.CosineDecayRestarts(0.1, 10, t_mul=3.0, m_mul=0.9), lambda s: restarts(s, t_mul=3.0, m_mul=0.9)),
]


@pytest.mark.parametrize(
    "sched, ref", CASES, ids=lambda c: type(c).__name__ if isinstance(c, S.LearningRateSchedule) else ""
)
def test_formulas(sched, ref):
    for step in STEPS:
        out = sched(step)
        assert isinstance(out, accel.Tensor) and out.dtype == accel.float32
        assert float(out) == pytest.approx(ref(step), rel=2e-6, abs=1e-9), step


def test_piecewise_constant_boundaries_are_inclusive():
    sched = S.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    got = [float(sched(s)) for s in (0, 10, 11, 20, 21, 1000)]
    assert got == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.1, 0.1])
    assert sched(5).dtype == accel.float32
    with pytest.raises(ValueError, match="1 less"):
        S.PiecewiseConstantDecay([1, 2], [1.0, 2.0])


def test_accepts_tensor_and_variable_steps():
    sched = S.ExponentialDecay(0.1, 10, 0.5, staircase=True)
    for step in (accel.constant(25), accel.Variable(25, dtype=accel.int64), np.int64(25)):
        assert float(sched(step)) == pytest.approx(0.025)


def test_float64_initial_rate_computes_in_float64():
    out = S.ExponentialDecay(np.float64(0.1), 3, 0.3)(7)
    assert out.dtype == accel.float64
    assert float(out) == pytest.approx(0.1 * 0.3 ** (7 / 3), rel=1e-14)


@pytest.mark.parametrize(
    "sched",
    [c[0] for c in CASES] + [S.PiecewiseConstantDecay([3], [0.1, 0.01])],
    ids=lambda c: type(c).__name__,
)
def test_config_round_trip(sched):
    cfg = sched.get_config()
    again = type(sched).from_config(cfg)
    assert again.get_config() == cfg
    clone = S.deserialize(S.serialize(sched))
    assert type(clone) is type(sched) and clone.get_config() == cfg
    assert float(clone(7)) == float(sched(7))


def test_invalid_arguments():
    for make in (
        lambda: S.ExponentialDecay(0.1, 0, 0.5),
        lambda: S.PolynomialDecay(0.1, -1),
        lambda: S.CosineDecay(0.1, 0),
        lambda: S.CosineDecayRestarts(0.1, 0),
        lambda: S.InverseTimeDecay(0.1, 0, 0.5),
    ):
        with pytest.raises(ValueError, match="must be > 0"):
            make()
    with pytest.raises(ValueError, match="Unknown learning rate schedule"):
        S.deserialize({"class_name": "Nope", "config": {}})


def test_against_tensorflow():
    pytest.importorskip("tensorflow")
    import keras  # noqa: PLC0415

    for sched, _ in CASES:
        ks = getattr(keras.optimizers.schedules, type(sched).__name__).from_config(sched.get_config())
        for step in STEPS:
            assert float(sched(step)) == pytest.approx(float(ks(step)), rel=1e-6, abs=1e-9), (sched, step)
