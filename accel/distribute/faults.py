"""Faults under MPI: a failing replica ends the whole job, with a message naming the rank.

- An uncaught exception in any thread of a rank prints its traceback, names the rank and calls
  MPI_Abort (otherwise the failing rank waits in MPI_Finalize while the others wait in a collective:
  a hang).
- A watchdog thread per rank sends a heartbeat to every other rank over its own duplicate of the
  communicator (MPI messages; accel opens no socket) and checks theirs. A rank whose heartbeats stop
  (killed, crashed in C, stopped) is named and this rank exits non-zero. With MPICH's default launch,
  mpiexec kills the job as soon as one process dies, before any watchdog fires; `mpiexec
  -print-all-exitcodes` then lists each rank's exit code, and `-disable-auto-cleanup` leaves the
  survivors to this watchdog, which prints which rank was lost.
- A rank that finished and said goodbye while this one still waits in a collective is reported too.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import traceback

import numpy as np

EXIT_LOST_RANK = 75  # EX_TEMPFAIL: a peer was lost; the job may be restarted from a checkpoint
_HEARTBEAT, _GOODBYE = 7301, 7302
_PING = np.zeros(1, np.int8)


def _say(msg):
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001  (a closed stdout must not stop the message)
        pass
    os.write(2, (msg.rstrip("\n") + "\n").encode())


class Watchdog:
    """Heartbeats between the ranks of `comm`; see the module doc."""

    def __init__(self, comm, timeout=30.0, interval=0.25):
        from mpi4py import MPI  # noqa: PLC0415

        self.MPI = MPI
        self.comm = comm.Dup()
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = float(timeout)
        self.interval = float(interval)
        now = time.monotonic()
        self.last = {p: now for p in range(self.size) if p != self.rank}
        self.gone = set()
        self.waiting = {}  # thread id -> (what, since)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="accel.distribute watchdog", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def enter(self, what):
        self.waiting[threading.get_ident()] = (what, time.monotonic())

    def leave(self):
        self.waiting.pop(threading.get_ident(), None)

    def _loop(self):
        comm, MPI = self.comm, self.MPI
        status = MPI.Status()
        buf = np.zeros(1, np.int8)
        while not self._stop.wait(self.interval):
            for p in self.last:
                if p not in self.gone:
                    comm.Isend(_PING, dest=p, tag=_HEARTBEAT).Free()
            while comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status):
                src, tag = status.Get_source(), status.Get_tag()
                comm.Recv(buf, source=src, tag=tag)
                self.last[src] = time.monotonic()
                if tag == _GOODBYE:
                    self.gone.add(src)
            now = time.monotonic()
            for p, t in self.last.items():
                if p not in self.gone and now - t > self.timeout:
                    self.die("lost rank %d: no heartbeat from it for %.1f s (killed, crashed or stopped)"
                             % (p, now - t))
            if self.gone:
                for what, since in list(self.waiting.values()):
                    if now - since > min(self.timeout, 10.0):
                        self.die("rank(s) %s finished while this rank waits in %s for %.1f s (a collective "
                                 "the other rank(s) never called)" % (sorted(self.gone), what, now - since))

    def die(self, why):
        _say("accel.distribute: rank %d of %d: %s; exiting with code %d" % (self.rank, self.size, why, EXIT_LOST_RANK))
        os._exit(EXIT_LOST_RANK)

    def close(self):
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        for p in self.last:
            if p not in self.gone:
                self.comm.Isend(_PING, dest=p, tag=_GOODBYE).Free()


_installed = False


def install_abort_hooks(comm):
    """sys.excepthook and threading.excepthook print the error naming the rank, then MPI_Abort the job."""
    global _installed
    if _installed:
        return
    _installed = True
    rank, size = comm.Get_rank(), comm.Get_size()
    prev_sys, prev_thread = sys.excepthook, threading.excepthook

    def abort(exc_type, exc, tb, where):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        _say("%s\naccel.distribute: rank %d of %d failed (%s: %s) in %s; aborting all ranks"
             % (text, rank, size, exc_type.__name__, exc, where))
        comm.Abort(1)

    def sys_hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            return prev_sys(exc_type, exc, tb)
        abort(exc_type, exc, tb, "the main thread")

    def thread_hook(args):
        if args.exc_type is SystemExit:
            return prev_thread(args)
        abort(args.exc_type, args.exc_value, args.exc_traceback, "thread %r" % getattr(args.thread, "name", "?"))

    sys.excepthook = sys_hook
    threading.excepthook = thread_hook
