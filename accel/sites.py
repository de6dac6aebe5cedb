"""Where in the user's code: the innermost line outside accel, and warnings issued at that line.

The lowest layer of the autodiff diagnostics: the recorder notes sites as it records, and
accel.debugging turns them into reports. Imports nothing of accel.
"""

from __future__ import annotations

import linecache
import os
import sys
import warnings

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


class TapeWarning(UserWarning):
    """A likely autodiff mistake at the moment it happens. Silence with
    `warnings.filterwarnings("ignore", category=accel.debugging.TapeWarning)`."""


def user_frame():
    """The innermost frame outside the accel package (the user's line)."""
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_PKG_DIR):
        f = f.f_back
    return f


def user_site():
    f = user_frame()
    return None if f is None else (f.f_code.co_filename, f.f_lineno)


def format_site(site):
    if site is None:
        return "an unknown line"
    fn, ln = site
    code = linecache.getline(fn, ln).strip()
    return "%s:%d%s" % (os.path.relpath(fn) if not fn.startswith("<") else fn, ln,
                        " (`%s`)" % code if code else "")


def warn_once(message):
    """Warns at the user's line, once per line (the warnings module's default)."""
    f = user_frame()
    if f is None:
        warnings.warn(message, TapeWarning, stacklevel=3)
        return
    warnings.warn_explicit(message, TapeWarning, f.f_code.co_filename, f.f_lineno,
                           module=f.f_globals.get("__name__", "?"), registry=f.f_globals.setdefault(
                               "__warningregistry__", {}))
