"""read_only("_name"): the property `return self._name`, which TF's classes have by the dozen."""

from __future__ import annotations

import operator


def read_only(attr, doc=None):
    """A read-only property whose value is self.<attr> (a dotted path works too)."""
    return property(operator.attrgetter(attr), doc=doc)
