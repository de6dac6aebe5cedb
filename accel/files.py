"""Writing files so that a reader never sees half of one: a temporary file beside the target, fsynced,
then renamed over it (a failed write leaves the old file whole and no temporary behind)."""

from __future__ import annotations

import os
import secrets


def replace_atomically(path, write):
    """Calls write(tmp_path) for a new temporary file in `path`'s folder (created if missing), makes it
    durable and renames it to `path`."""
    path = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, ".%s.%s.tmp" % (base, secrets.token_hex(6)))
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # makes the rename itself durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomically(path, write):
    """replace_atomically for a writer of a binary file object: write(f)."""

    def to_tmp(tmp):
        # mode 0o666 lets the umask decide the permissions, as for any new file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)

    replace_atomically(path, to_tmp)
