"""Gradient clipping helpers: clip_by_norm, clip_by_global_norm, global_norm."""

from __future__ import annotations

import math

from accel.ops.core import convert
from accel.ops.creation import ones_like
from accel.ops.elementwise import maximum, sqrt, where
from accel.ops.reduce import reduce_sum


def clip_by_norm(t, clip_norm, axes=None, name=None):
    """Scales t so its L2 norm over `axes` is at most clip_norm."""
    x = convert(t)
    l2sum = reduce_sum(x * x, axes, keepdims=True)
    pred = l2sum > 0
    safe = where(pred, l2sum, ones_like(l2sum))
    norm = where(pred, sqrt(safe), l2sum)
    return x * clip_norm / maximum(norm, clip_norm)


def global_norm(t_list, name=None):
    ts = [convert(t) for t in t_list if t is not None]
    if not ts:
        return convert(0.0)
    total = None
    for t in ts:
        s = reduce_sum(t * t)
        total = s if total is None else total + s
    return sqrt(total)


def clip_by_global_norm(t_list, clip_norm, use_norm=None, name=None):
    """Scales every tensor by clip_norm / max(global_norm, clip_norm); returns (list, global_norm)."""
    t_list = list(t_list)
    gn = global_norm(t_list) if use_norm is None else convert(use_norm)
    g = float(gn)
    if not math.isfinite(g):
        scale = float("nan")
    else:
        scale = clip_norm / max(g, clip_norm)
    return [None if t is None else convert(t) * scale for t in t_list], gn
