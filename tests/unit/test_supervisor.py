"""The stage supervisor restarts real processes that crash, backs off, and gives up on a budget."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tapeflow.supervisor import RestartPolicy, StageGaveUp, StageSupervisor, describe_exit

NO_WAIT = RestartPolicy(max_restarts=3, window_s=60.0, backoff_initial_s=0.0)


def python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def crash_times(counter: Path, crashes: int) -> str:
    """A stage that crashes on its first ``crashes`` starts, then runs until killed."""
    return (f"import pathlib, sys, time\np = pathlib.Path({str(counter)!r})\n"
            f"n = int(p.read_text()) if p.exists() else 0\np.write_text(str(n + 1))\n"
            f"sys.exit(7) if n < {crashes} else time.sleep(60)")


def poll_until(supervisor: StageSupervisor, done, timeout_s: float = 20.0) -> list:
    restarts, deadline = [], time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        restarts += supervisor.poll()
        time.sleep(0.02)
    return restarts


def stop(supervisor: StageSupervisor) -> None:
    for process in supervisor.processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_crashing_stage_comes_back_and_the_others_are_left_alone(tmp_path):
    counter = tmp_path / "starts"
    heard = []
    supervisor = StageSupervisor(
        ("bars", "signals"),
        lambda stage: python(crash_times(counter, 2) if stage == "signals" else "import time; time.sleep(60)"),
        NO_WAIT, on_restart=heard.append, log_path=lambda stage: tmp_path / f"{stage}.log")
    bars_pid = supervisor.processes["bars"].pid
    try:
        restarts = poll_until(supervisor, lambda: counter.exists() and counter.read_text() == "3"
                              and supervisor.all_up())
        assert [(r.stage, r.exit_code, r.restart_number) for r in restarts] == [("signals", 7, 1), ("signals", 7, 2)]
        assert heard == restarts
        assert supervisor.restarts == {"signals": 2}
        assert supervisor.processes["bars"].pid == bars_pid
        assert "signals exited with code 7" in restarts[0].describe()
        assert str(tmp_path / "signals.log") in restarts[0].describe()
    finally:
        stop(supervisor)


def test_a_stage_killed_by_a_signal_is_restarted():
    supervisor = StageSupervisor(("sink",), lambda stage: python("import time; time.sleep(60)"), NO_WAIT)
    first = supervisor.processes["sink"]
    try:
        first.kill()
        first.wait()
        restarts = poll_until(supervisor, lambda: supervisor.restarts == {"sink": 1})
        assert restarts[0].exit_code == -9
        assert "killed by SIGKILL" in restarts[0].describe()
        assert supervisor.processes["sink"].pid != first.pid
        assert supervisor.processes["sink"].poll() is None
    finally:
        stop(supervisor)


def test_a_stage_that_always_crashes_spends_its_budget_and_the_supervisor_gives_up(tmp_path):
    supervisor = StageSupervisor(("features",), lambda stage: python("import sys; sys.exit(3)"), NO_WAIT,
                                 log_path=lambda stage: tmp_path / "features.log")
    with pytest.raises(StageGaveUp) as gave_up:
        poll_until(supervisor, lambda: False)
    assert gave_up.value.stage == "features"
    assert supervisor.restarts == {"features": NO_WAIT.max_restarts}
    message = str(gave_up.value)
    assert "features exited with code 3 after 3 restart(s)" in message
    assert str(tmp_path / "features.log") in message


def test_a_stage_that_refuses_to_run_is_not_restarted():
    supervisor = StageSupervisor(("sink",), lambda stage: python("import sys; sys.exit(2)"), NO_WAIT)
    with pytest.raises(StageGaveUp, match="sink refused to run .exited with code 2.; a restart would not mend"):
        poll_until(supervisor, lambda: False)
    assert supervisor.restarts == {}


def test_a_stage_that_exits_cleanly_has_finished_and_is_not_restarted():
    supervisor = StageSupervisor(("pnl",), lambda stage: python("pass"), NO_WAIT)
    poll_until(supervisor, lambda: supervisor.finished() == ["pnl"])
    assert supervisor.finished() == ["pnl"]
    assert supervisor.poll() == [] and supervisor.restarts == {}


def test_restarts_back_off_exponentially_up_to_a_cap_and_old_ones_leave_the_window():
    policy = RestartPolicy(max_restarts=10, window_s=5.0, backoff_initial_s=0.5, backoff_max_s=3.0)
    assert [policy.backoff_s(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]

    now = [0.0]
    starts = []

    class Dead:
        pid = 1

        def poll(self):
            return 1

    def start(stage):
        starts.append(now[0])
        return Dead()

    supervisor = StageSupervisor(("risk",), start, policy, clock=lambda: now[0])
    for t in (0.0, 0.4, 0.5, 0.6, 1.5, 1.6, 1.7, 3.6, 3.7, 9.0, 9.5):
        now[0] = t
        supervisor.poll()
    # seen down at 0 -> back at 0.5 (0.5 s); seen down at 0.6 -> back at 1.6 (1 s); seen down at
    # 1.7 -> back at 3.7 (2 s); at 9.0 the window (5 s) holds none of those restarts, so the
    # backoff starts over at 0.5 s
    assert starts == [0.0, 0.5, 1.6, 3.7, 9.5]


def test_exit_descriptions_name_the_signal_or_the_code():
    assert describe_exit(-15) == "was killed by SIGTERM"
    assert describe_exit(2) == "exited with code 2"


def test_a_policy_that_makes_no_sense_is_refused():
    with pytest.raises(ValueError, match="restart policy"):
        RestartPolicy(max_restarts=-1)
