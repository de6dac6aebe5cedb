"""A lost rank ends the job within 60 s, non-zero, with a message naming it (never a hang)."""

import pathlib
import re

import pytest

from tests.distribute.mpi_util import mpirun

HERE = pathlib.Path(__file__).parent

CASES = [
    # (rank 1 does, what rank 0 or mpiexec must say)
    ("stop", "rank 0 of 2: lost rank 1: no heartbeat"),  # the watchdog (rank 1 alive but silent)
    ("raise", "rank 1 of 2 failed (RuntimeError: replica 1 broke on purpose)"),  # the abort hook
    ("skip", "rank 0 of 2: rank(s) [1] finished while this rank waits in strategy.reduce"),
]


@pytest.mark.parametrize("mode,message", CASES, ids=[c[0] for c in CASES])
def test_a_failing_rank_ends_the_job_with_a_message(mode, message):
    p, secs = mpirun(HERE / "mpi_fault.py", mode, timeout=60)
    text = p.stdout + p.stderr
    assert p.returncode != 0, text
    assert secs < 60, (secs, text)
    assert message in text, text


def test_a_killed_rank_ends_the_job_and_the_banner_names_its_pid():
    """MPICH's mpiexec kills the job as soon as a process dies and reports its PID; the chief's start-up line
    maps PIDs to ranks."""
    p, secs = mpirun(HERE / "mpi_fault.py", "kill", timeout=60)
    text = p.stdout + p.stderr
    assert p.returncode != 0 and secs < 60, (secs, text)
    dead = re.search(r"PID (\d+) RUNNING AT (\S+)\s*=\s*EXIT CODE: 9", text)
    assert dead, text
    assert "rank 1 = pid %s on %s" % dead.groups() in text, text
