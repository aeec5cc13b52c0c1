"""Supervision of the split topology's stage processes: a stage that dies comes back by itself.

A stage process that exits abnormally (a non-zero exit code, or killed by a signal) while the run
is not stopping is started again with the same command, so it resumes from its recovery snapshot
(Bytewax's recovery store plus the Kafka offsets it holds): nothing is lost, and the money path
does not double because orders and fills carry deterministic ids that every consumer dedups.

A stage that exits 2 refused to run (a bad option, a recovery folder written against another
cluster): its log says why and a restart cannot mend it, so the supervisor gives up at once.
Restarts back off exponentially (``backoff_initial_s``, doubling, capped at ``backoff_max_s``) so
a stage that crashes at once does not spin, and a stage may restart at most ``max_restarts``
times in any ``window_s`` seconds. One restart more means something is wrong that a restart does
not fix (a bad config, a poisoned snapshot, a full disk): the supervisor gives up with
:class:`StageGaveUp`, naming the stage, its last exit and its log, and the caller stops every
other stage. A stage that exits 0 has finished on purpose and is not restarted.

The supervisor does not sleep or spawn threads of its own: ``poll()`` is called by the run's
monitor loop and does whatever is due (detect exits, start a stage whose backoff has elapsed).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5
    window_s: float = 300.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 15.0
    # A stage that refuses to run (exit 2: a bad option, a recovery folder of another cluster) says
    # why in its log, and no restart mends that: give up at once.
    fatal_exit_codes: tuple[int, ...] = (2,)

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.window_s <= 0 or self.backoff_initial_s < 0:
            raise ValueError(f"restart policy needs max_restarts >= 0, window_s > 0, backoff >= 0: {self}")

    def backoff_s(self, recent_restarts: int) -> float:
        """Delay before the next start, given how many restarts the window already holds."""
        return min(self.backoff_max_s, self.backoff_initial_s * 2 ** recent_restarts)


@dataclass(frozen=True)
class StageRestart:
    """One restart of one stage: what ended, how, and when it came back."""

    stage: str
    exit_code: int
    restart_number: int  # 1 for the stage's first restart in this run
    backoff_s: float
    log_path: Path | None
    pid: int

    def describe(self) -> str:
        return (f"stage {self.stage} {describe_exit(self.exit_code)}; restarted after {self.backoff_s:.1f}s "
                f"(restart {self.restart_number}, pid {self.pid}); log {self.log_path}")


class StageGaveUp(RuntimeError):
    """A stage used up its restart budget; the run must stop."""

    def __init__(self, stage: str, exit_code: int, restarts: int, policy: RestartPolicy, log_path: Path | None):
        self.stage = stage
        self.exit_code = exit_code
        if exit_code in policy.fatal_exit_codes:
            super().__init__(f"stage {stage} refused to run ({describe_exit(exit_code)}); a restart would not mend "
                             f"that, so the run stops. Its log says why: {log_path}")
            return
        super().__init__(
            f"stage {stage} {describe_exit(exit_code)} after {restarts} restart(s) within {policy.window_s:.0f}s "
            f"(budget {policy.max_restarts}); stopping the run. Its log: {log_path}. Fix the cause and run the "
            "same command again: every stage resumes from its recovery snapshot.")


def describe_exit(code: int) -> str:
    if code < 0:
        import signal as _signal

        try:
            return f"was killed by {_signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Supervised:
    process: subprocess.Popen
    restarts_at: list[float] = field(default_factory=list)  # monotonic times of restarts in the window
    restart_due: float | None = None  # set while the stage is down, waiting out its backoff
    last_exit: int = 0
    total_restarts: int = 0
    finished: bool = False  # exited 0: done on purpose


class StageSupervisor:
    """Keeps a set of stage processes running; see the module docstring for the rules.

    ``start(stage)`` starts a stage's process (the same command every time); ``on_restart`` hears
    each restart (log it, count it, land it in the warehouse); ``log_path(stage)`` names the log a
    message points the operator at.
    """

    def __init__(self, stages: tuple[str, ...], start: Callable[[str], subprocess.Popen],
                 policy: RestartPolicy = RestartPolicy(),
                 on_restart: Callable[[StageRestart], None] = lambda restart: None,
                 log_path: Callable[[str], Path | None] = lambda stage: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._start = start
        self._on_restart = on_restart
        self._log_path = log_path
        self._clock = clock
        self._stages = {stage: _Supervised(start(stage)) for stage in stages}

    @property
    def processes(self) -> dict[str, subprocess.Popen]:
        """The current process of every stage (a stage waiting out its backoff: its dead one)."""
        return {stage: s.process for stage, s in self._stages.items()}

    @property
    def restarts(self) -> dict[str, int]:
        return {stage: s.total_restarts for stage, s in self._stages.items() if s.total_restarts}

    def all_up(self) -> bool:
        """Every stage's process is running (none dead, none waiting to restart)."""
        return all(s.process.poll() is None for s in self._stages.values())

    def finished(self) -> list[str]:
        return [stage for stage, s in self._stages.items() if s.finished]

    def poll(self) -> list[StageRestart]:
        """Notice exits, schedule and perform restarts; raises StageGaveUp when a budget is spent."""
        now = self._clock()
        done = []
        for stage, s in self._stages.items():
            if s.finished:
                continue
            if s.restart_due is None:
                code = s.process.poll()
                if code is None:
                    continue
                if code == 0:
                    s.finished = True
                    continue
                s.last_exit = code
                s.restarts_at = [t for t in s.restarts_at if now - t < self.policy.window_s]
                if code in self.policy.fatal_exit_codes or len(s.restarts_at) >= self.policy.max_restarts:
                    raise StageGaveUp(stage, code, len(s.restarts_at), self.policy, self._log_path(stage))
                s.restart_due = now + self.policy.backoff_s(len(s.restarts_at))
            if now >= s.restart_due:
                backoff = self.policy.backoff_s(len(s.restarts_at))
                s.process = self._start(stage)
                s.restart_due = None
                s.restarts_at.append(now)
                s.total_restarts += 1
                restart = StageRestart(stage, s.last_exit, s.total_restarts, backoff, self._log_path(stage),
                                       s.process.pid)
                self._on_restart(restart)
                done.append(restart)
        return done
