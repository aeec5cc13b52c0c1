"""The warehouse writes at a lower OS priority than the tape.

On this project's 2-core target, the warehouse writer thread and embedded ClickHouse's own pool
threads (inserts, merges: chDB runs them inside this process) are runnable at the same time as the
dataflow thread. At equal priority Linux shares the cores between them in slices of a few
milliseconds, so the dataflow thread waited up to 12 ms at a time while an insert of 100k rows ran
(measured with the insert in another process: it is not the GIL), and at 10,000 ticks/s that wait
came straight onto bar end -> order. A nice value 10 higher gives those threads about a tenth of
the dataflow thread's share when both want a core and lets the dataflow thread preempt them on
wake-up; they still get every idle cycle, and the writer's bounded queue (``sinks/background.py``)
still slows the tape down if the warehouse falls behind, so nothing is lost or left unwritten.

Only a lower priority is asked for, which needs no privilege. Linux keeps a nice value per thread
and a new thread inherits its creator's, so the writer thread lowers itself and then, as ClickHouse
starts pool threads lazily, lowers those it finds by name under ``/proc/self/task``. Elsewhere (no
``/proc``) nothing changes.

A whole process (the split topology's sink stage: :func:`lower_process_priority`) needs one step
more. Where Linux schedules by autogroup (``/proc/sys/kernel/sched_autogroup_enabled``, on by default
in most desktop and many server kernels), the cores are first shared between sessions and only then,
inside a session, by nice value; ``tapeflow run --brokers`` starts each stage in a session of its own,
so a sink at nice +10 still got a full share of the cores against each stage on the way from tick to
order. Its inserts and merges then stalled those stages for 40-130 ms at a time, all at once, and
paced at 5,000 ticks/s 4-10 of 150 cross-sections took over 50 ms from tick to order (p99 83-164 ms
in four runs). With the session's autogroup at the same nice value: 0-2 (p99 30-50 ms in five runs
of six, 70 ms in one). A process that never left the kernel's root group (no ``setsid`` on its way
from boot, as in many containers) has no autogroup to lower; it says so and keeps its nice value.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

WAREHOUSE_NICE_INCREMENT = 10
_NICE_MAX = 19

# Thread names ClickHouse gives its pools (``setThreadName``), as chDB runs them here: background
# schedules, merges and mutations, fetches and moves, query pipelines, the memory worker, jemalloc's
# purge threads. Kafka's (``rdk:``), Bytewax's and Python's own threads are not among them.
CLICKHOUSE_THREAD_PREFIXES = (
    "Bg", "MergeMutate", "Fetch", "Move", "Common", "PoolDelayExec", "ThreadPool", "QueryPipeline",
    "MemoryWorker", "jemalloc_bg_thd", "SystemLogFlush", "AsyncLoader", "TraceCollector", "MergeTree",
)

_TASKS = Path("/proc/self/task")
_PER_THREAD = sys.platform.startswith("linux") and _TASKS.is_dir()
_AUTOGROUP = Path("/proc/self/autogroup")
_AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")
# Linux takes one unprivileged autogroup change per 100 ms on the whole machine (EAGAIN otherwise):
# sinks starting together wait their turn.
_AUTOGROUP_TRIES, _AUTOGROUP_RETRY_S = 20, 0.1


def lower_process_priority(increment: int = WAREHOUSE_NICE_INCREMENT) -> str:
    """Raise this process's nice value by ``increment`` (at most 19) and, where the kernel schedules
    by autogroup and this process leads its own session (so the autogroup holds only what it
    started), the autogroup's to the same value. A process inside someone else's session (a
    user's shell) leaves the autogroup alone: it would lower the shell and all it runs. Returns what
    was done, for the stage's start-up line; a refused autogroup change is logged, and only costs
    the stages on the tick-to-order path their precedence over this process."""
    nice = os.nice(increment)
    if not (sys.platform.startswith("linux") and _AUTOGROUP.exists()):
        return f"nice {nice}"
    try:
        enabled = _AUTOGROUP_ENABLED.read_text().strip() == "1"
    except OSError:
        enabled = False
    if not enabled:
        return f"nice {nice} (no autogroup scheduling)"
    if os.getsid(0) != os.getpid():
        return f"nice {nice} (autogroup left alone: this process does not lead its session)"
    attempt = 1
    while True:
        try:
            group_nice = autogroup_nice()
            if group_nice is None:
                return f"nice {nice} (in the kernel's root group: no autogroup of its own to lower)"
            if group_nice < nice:
                _AUTOGROUP.write_text(str(nice))
            return f"nice {nice}, autogroup nice {autogroup_nice()}"
        except OSError as exc:
            if exc.errno == errno.EAGAIN and attempt < _AUTOGROUP_TRIES:
                attempt += 1
                time.sleep(_AUTOGROUP_RETRY_S)
                continue
            log.warning("could not lower this process's autogroup to nice %d (%s): the kernel schedules by "
                        "session first, so this process still gets a full share of the cores against the "
                        "stages on the tick-to-order path", nice, exc)
            return f"nice {nice} (autogroup unchanged: {exc.strerror})"


def autogroup_nice() -> int | None:
    """The nice value of this process's autogroup (``/autogroup-38 nice 10``), or None for a process
    in no autogroup: one whose session began before any ``setsid`` (a container's entry point and all
    it starts stay in the kernel's root group, which the file shows as empty)."""
    fields = _AUTOGROUP.read_text().split()
    return int(fields[-1]) if fields else None


def lower_priority(native_id: int, increment: int = WAREHOUSE_NICE_INCREMENT) -> bool:
    """Raise thread ``native_id``'s nice value to the process's main thread's + ``increment``
    (at most 19); False where that cannot be done (no such thread, no per-thread priorities).
    Linux only: elsewhere ``setpriority(PRIO_PROCESS, id)`` takes a process id, not a thread's."""
    if not _PER_THREAD:
        return False
    try:
        target = min(os.getpriority(os.PRIO_PROCESS, os.getpid()) + increment, _NICE_MAX)
        if os.getpriority(os.PRIO_PROCESS, native_id) < target:
            os.setpriority(os.PRIO_PROCESS, native_id, target)
        return True
    except (OSError, AttributeError):  # the thread ended, or a platform without setpriority
        return False


class WarehouseThreads:
    """Lowers the calling writer thread and, on each :meth:`lower_new` call, the ClickHouse threads
    not lowered yet (a thread is named a moment after it starts, so others are looked at again)."""

    def __init__(self, increment: int = WAREHOUSE_NICE_INCREMENT):
        self.increment = increment
        self._lowered_ids: set[int] = set()
        self.lowered: list[str] = []  # the names of the threads lowered, for a test or a report

    def lower_self(self) -> None:
        if lower_priority(threading.get_native_id(), self.increment):
            self.lowered.append(threading.current_thread().name)

    def lower_new(self) -> None:
        try:
            tids = [int(entry) for entry in os.listdir(_TASKS)]
        except OSError:  # not Linux
            return
        for tid in tids:
            if tid in self._lowered_ids:
                continue
            try:
                name = (_TASKS / str(tid) / "comm").read_text().strip()
            except OSError:  # ended meanwhile
                continue
            if name.startswith(CLICKHOUSE_THREAD_PREFIXES) and lower_priority(tid, self.increment):
                self._lowered_ids.add(tid)
                self.lowered.append(name)
