"""Keras's names: layers numbered by prefix (`dense`, `dense_1`), class names in snake case."""

from __future__ import annotations

import re

_uids: dict[str, int] = {}


def unique_name(prefix):
    """`prefix`, then `prefix_1`, `prefix_2`, ... as Keras names layers."""
    n = _uids.get(prefix, 0)
    _uids[prefix] = n + 1
    return prefix if n == 0 else "%s_%d" % (prefix, n)


def to_snake_case(name):
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
