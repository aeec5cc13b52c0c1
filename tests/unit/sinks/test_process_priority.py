"""The sink stage's process lowers its session's autogroup with its nice value, and only its own."""

from __future__ import annotations

import errno
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


def run_child(own_session: bool) -> tuple[str, int, int | None]:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True,
                         start_new_session=own_session, cwd=Path(__file__).resolve().parents[3])
    done, nice, group = out.stdout.strip().split("|")
    return done, int(nice), None if group == "None" else int(group)


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


class RefusingAutogroup:
    """``/proc/self/autogroup`` as the kernel answers an unprivileged writer: EAGAIN while another change
    is under 100 ms old (``refusals`` times), then, with ``error``, that error for good."""

    def __init__(self, refusals: int, error: int | None = None, root_group: bool = False):
        self.nice, self.refusals, self.error, self.writes = 0, refusals, error, 0
        self.root_group = root_group

    def exists(self) -> bool:
        return True

    def read_text(self) -> str:
        # A process in the kernel's root group (no setsid since boot, as in a container) reads nothing.
        return "" if self.root_group else f"/autogroup-7 nice {self.nice}\n"

    def write_text(self, text: str) -> None:
        self.writes += 1
        if self.refusals:
            self.refusals -= 1
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        if self.error is not None:
            raise OSError(self.error, os.strerror(self.error))
        self.nice = int(text)


@pytest.fixture
def session_leader(monkeypatch):
    """This process as a session leader whose nice value rises to 10 (without lowering the test's own)."""
    from sinks import thread_priority

    monkeypatch.setattr(thread_priority.os, "nice", lambda increment: 10)
    monkeypatch.setattr(thread_priority.os, "getsid", lambda pid: 4242)
    monkeypatch.setattr(thread_priority.os, "getpid", lambda: 4242)
    monkeypatch.setattr(thread_priority, "_AUTOGROUP_RETRY_S", 0.0)
    return thread_priority


def test_a_change_refused_while_another_is_recent_is_tried_again(session_leader, monkeypatch):
    autogroup = RefusingAutogroup(refusals=3)
    monkeypatch.setattr(session_leader, "_AUTOGROUP", autogroup)
    assert session_leader.lower_process_priority(10) == "nice 10, autogroup nice 10"
    assert autogroup.writes == 4 and autogroup.nice == 10


def test_a_refused_change_is_logged_and_reported_not_raised(session_leader, monkeypatch, caplog):
    autogroup = RefusingAutogroup(refusals=1, error=errno.EPERM)
    monkeypatch.setattr(session_leader, "_AUTOGROUP", autogroup)
    done = session_leader.lower_process_priority(10)
    assert done == f"nice 10 (autogroup unchanged: {os.strerror(errno.EPERM)})"
    assert autogroup.nice == 0
    assert "could not lower this process's autogroup to nice 10" in caplog.text


def test_a_process_in_no_autogroup_says_so_and_writes_nothing(session_leader, monkeypatch):
    autogroup = RefusingAutogroup(refusals=0, root_group=True)
    monkeypatch.setattr(session_leader, "_AUTOGROUP", autogroup)
    assert session_leader.autogroup_nice() is None
    assert session_leader.lower_process_priority(10) == (
        "nice 10 (in the kernel's root group: no autogroup of its own to lower)")
    assert autogroup.writes == 0
