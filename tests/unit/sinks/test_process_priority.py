"""The sink stage's process lowers its session's autogroup with its nice value, and only its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sinks.thread_priority import autogroup_nice

AUTOGROUPS = Path("/proc/sys/kernel/sched_autogroup_enabled")
pytestmark = pytest.mark.skipif(
    not AUTOGROUPS.exists() or AUTOGROUPS.read_text().strip() != "1" or not Path("/proc/self/autogroup").exists(),
    reason="this kernel does not schedule by autogroup (/proc/sys/kernel/sched_autogroup_enabled is not 1)",
)

# Lowers its priority by 7, prints what it reports and its nice and autogroup nice, then waits to be read.
CHILD = textwrap.dedent("""
    import os, sys
    from sinks.thread_priority import lower_process_priority, autogroup_nice
    done = lower_process_priority(7)
    print(done, os.getpriority(os.PRIO_PROCESS, 0), autogroup_nice(), sep="|", flush=True)
""")


def run_child(own_session: bool) -> tuple[str, int, int]:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True,
                         start_new_session=own_session, cwd=Path(__file__).resolve().parents[3])
    done, nice, group = out.stdout.strip().split("|")
    return done, int(nice), int(group)


def test_a_process_that_leads_its_own_session_lowers_its_autogroup_too():
    own_nice = os.getpriority(os.PRIO_PROCESS, 0)
    done, nice, group = run_child(own_session=True)
    assert nice == min(own_nice + 7, 19)
    assert group == nice, done  # the kernel shares the cores between sessions first: the group must be lowered
    assert f"autogroup nice {nice}" in done


def test_a_process_in_its_callers_session_leaves_that_session_alone():
    before = autogroup_nice()
    done, nice, group = run_child(own_session=False)
    assert nice == min(os.getpriority(os.PRIO_PROCESS, 0) + 7, 19)
    assert group == before == autogroup_nice()  # the caller's (a user's shell's) session keeps its priority
    assert "does not lead its session" in done
