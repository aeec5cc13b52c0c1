"""A chaos run: the split pipeline replays a seeded tape over a real broker while stages are killed.

The harness owns its broker (a :class:`tapeflow.broker.LocalBroker` in its folder), runs the
undisturbed embedded pipeline over the tape first (run ``reference``), then ``tapeflow run
--brokers`` over the same tape (run ``chaos``) while a killer thread follows a seeded plan: at
random moments it SIGKILLs one stage, sometimes two at once, sometimes the broker (killed, then
started again on the same folder and port a few seconds later). The run's supervisor
(:mod:`tapeflow.supervisor`) brings each stage back from its recovery snapshot. When the tape has
ended, :func:`tapeflow.chaos_verify.verify_run` judges the warehouse against the reference: every
table equal row for row, no id duplicated, the ledger equal to a recomputation from the fills.

Figures: the kill points survived, the recovery time of each kill (SIGKILL to the stage running
again and its lag back under ``CAUGHT_UP_LAG``), and the duplicate work (messages its stages
produced beyond the records that landed: what resumed stages produced again).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BROKER = "broker"
CAUGHT_UP_LAG = 200  # messages: a paced stage at rest trails by less than a poll's worth
RECOVERY_TIMEOUT_S = 120.0
RUN_GRACE_S = 300.0  # past the tape's own length: start-up, restarts, the end of the tape landing


@dataclass(frozen=True)
class KillPoint:
    at_s: float  # seconds after the chaos run started
    targets: tuple[str, ...]  # stage names, or "broker"


def kill_plan(seed: int, stages: tuple[str, ...], points: int, span_s: tuple[float, float],
              pair_share: float = 0.2, broker_share: float = 0.1) -> list[KillPoint]:
    """``points`` kill points at seeded random moments within ``span_s``; each kills one stage (any,
    the sink included), or two at once (``pair_share``), or the broker (``broker_share``)."""
    rng = random.Random(seed)
    plan = []
    for _ in range(points):
        at = rng.uniform(*span_s)
        roll = rng.random()
        if roll < broker_share:
            targets: tuple[str, ...] = (BROKER,)
        elif roll < broker_share + pair_share and len(stages) > 1:
            targets = tuple(rng.sample(stages, 2))
        else:
            targets = (rng.choice(stages),)
        plan.append(KillPoint(round(at, 3), targets))
    return sorted(plan, key=lambda point: point.at_s)


@dataclass
class Recovery:
    target: str
    killed_at: float
    seconds: float | None  # None: not back (within RECOVERY_TIMEOUT_S, or the run ended first)


@dataclass
class ChaosResult:
    seed: int
    plan: list[KillPoint]
    recoveries: list[Recovery] = field(default_factory=list)
    executed: list[KillPoint] = field(default_factory=list)  # the kill points that landed while the run ran
    problems: list[str] = field(default_factory=list)
    run_exit: int | None = None
    run_seconds: float = 0.0
    reproduced: dict[str, int] = field(default_factory=dict)  # topic -> messages beyond the landed records
    landed_twice: dict[str, int] = field(default_factory=dict)  # append-only table -> rows landed again
    log_dir: Path | None = None

    @property
    def passed(self) -> bool:
        return self.run_exit == 0 and not self.problems

    def summary(self) -> str:
        back = [r.seconds for r in self.recoveries if r.seconds is not None]
        verdict = "PASSED" if self.passed else "FAILED"
        return (f"chaos seed {self.seed}: {verdict}; {len(self.executed)} of {len(self.plan)} kill points landed, "
                f"{len(back)} recoveries timed, "
                f"run {self.run_seconds:.1f}s (exit {self.run_exit}); problems: {self.problems or 'none'}; "
                f"re-produced {self.reproduced}; tick rows landed twice {self.landed_twice}")


def stage_pid(log_dir: Path, stage: str) -> int | None:
    """The stage's current process, from the pid file the supervisor rewrites at each (re)start."""
    try:
        return int((log_dir / f"{stage}.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class ChaosHarness:
    """One chaos run in ``root`` over a tape of ``ticks`` synthetic ticks (seed ``tape_seed``),
    paced at ``rate`` ticks/s so that stages are at rest between kills. A chaos run kills one stage
    more often than the default restart budget allows (5 in 5 minutes: a stage that dies that often
    in production should stop the run), so it runs with ``restarts_max``."""

    def __init__(self, root: Path, ticks: int = 30_000, rate: float = 2_000.0, tape_seed: int = 5,
                 say=lambda line: print(line, file=sys.stderr, flush=True), restarts_max: int = 50):
        self.root = Path(root)
        self.ticks = ticks
        self.rate = rate
        self.tape_seed = tape_seed
        self.say = say
        self.warehouse = f"chdb://{self.root / 'warehouse'}"
        self.env = {**os.environ, "TAPEFLOW_WAREHOUSE": self.warehouse,
                    "TAPEFLOW_CONTROL_PATH": str(self.root / "control.jsonl")}
        # the reference run is embedded: the split run's settings go to the chaos run only
        self.split_env = {**self.env, "TAPEFLOW_STAGE_RESTARTS_MAX": str(restarts_max)}

    def tape_options(self) -> list[str]:
        return ["--feed", "synthetic", "--seed", str(self.tape_seed), "--max-ticks", str(self.ticks),
                "--rate", str(self.rate), "--no-dashboard", "--progress-interval", "5"]

    def reference(self) -> None:
        """The undisturbed embedded run of the same tape."""
        done = subprocess.run([sys.executable, "-m", "tapeflow.cli", "run", *self.tape_options(), "--run-id",
                               "reference"], cwd=self.root, env=self.env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"the reference run failed:\n{done.stderr[-3000:]}")

    def run(self, seed: int, plan: list[KillPoint], broker) -> ChaosResult:
        """``broker``: the LocalBroker the run uses (so a kill point can kill and restart it)."""
        result = ChaosResult(seed, plan, log_dir=self.root / "data" / "logs" / "chaos")
        command = [sys.executable, "-m", "tapeflow.cli", "run", *self.tape_options(), "--run-id", "chaos",
                   "--brokers", broker.bootstrap]
        began = time.monotonic()
        with open(self.root / "chaos-run.log", "w") as log:
            run = subprocess.Popen(command, cwd=self.root, env=self.split_env, stdout=log, stderr=subprocess.STDOUT)
            # kill points count from the moment every stage is up (has committed a first snapshot):
            # killing a process still importing its libraries tests nothing the supervisor does not
            started = self._stages_up(run, began)
            killer = threading.Thread(target=self._kill_all, args=(plan, result, broker, started, run), daemon=True)
            killer.start()
            # a run that has not ended well after its tape is a failure (a stage waiting for ever),
            # not a reason to wait for ever: stop it, and name the stages still running
            try:
                result.run_exit = run.wait(timeout=self.ticks / self.rate + RUN_GRACE_S)
            except subprocess.TimeoutExpired:
                running = [stage for stage in ("market", "signals", "trading", "sink")
                           if alive(stage_pid(result.log_dir, stage))]
                result.problems.append(f"the run did not end within {RUN_GRACE_S:.0f}s after its tape; stages still "
                                       f"running: {running}; logs in {result.log_dir}")
                run.kill()  # its stages follow it (parent-death signal)
                result.run_exit = run.wait()
            killer.join(timeout=RECOVERY_TIMEOUT_S)
            for timer in self._timers:
                timer.join(timeout=RECOVERY_TIMEOUT_S)
        result.run_seconds = time.monotonic() - began
        if result.run_exit != 0 and not result.problems:
            result.problems.append(f"the chaos run exited {result.run_exit}: see {self.root / 'chaos-run.log'}")
        return result

    def _stages_up(self, run, began: float, timeout_s: float = 180.0) -> float:
        recovery = self.root / "data" / "recovery"
        while time.monotonic() - began < timeout_s and run.poll() is None:
            up = {p.parent.name for p in recovery.rglob("part-*.sqlite3")}
            if {"market", "signals", "trading", "sink"} <= up:
                break
            time.sleep(0.2)
        self.say(f"chaos: stages up {time.monotonic() - began:.1f}s after the run started")
        return time.monotonic()

    def _kill_all(self, plan: list[KillPoint], result: ChaosResult, broker, started: float, run) -> None:
        """Kills on schedule; each recovery is timed on a thread of its own, so a slow one does not
        hold back the next kill (only a broker restart does: the stages wait for it too)."""
        log_dir = result.log_dir
        self._timers = []
        killed: set[int] = set()
        for point in plan:
            delay = started + point.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if run.poll() is not None:
                return
            killed_at = time.monotonic()
            pids, landed = {}, False
            for target in point.targets:
                if target == BROKER:
                    self.say(f"chaos: t={point.at_s:.1f}s kill -9 the broker")
                    broker_pid = broker.status(check_ready=False).pid
                    if broker_pid:
                        os.kill(broker_pid, signal.SIGKILL)
                        landed = True
                else:
                    # a stage killed a moment ago is not killed again until it has come back
                    pids[target] = self._next_victim(log_dir, target, killed, run)
                    if pids[target] is not None:
                        self.say(f"chaos: t={point.at_s:.1f}s kill -9 {target} (pid {pids[target]})")
                        os.kill(pids[target], signal.SIGKILL)
                        killed.add(pids[target])
                        landed = True
            if not landed:
                continue
            result.executed.append(point)
            if BROKER in point.targets:
                time.sleep(2.0)  # the broker stays away for a moment: every stage must wait for it
                broker.start()
            for target in point.targets:
                timer = threading.Thread(target=self._time_recovery, daemon=True,
                                         args=(target, pids.get(target), log_dir, killed_at, started, run, broker,
                                               result))
                timer.start()
                self._timers.append(timer)

    @staticmethod
    def _next_victim(log_dir: Path, stage: str, killed: set[int], run, wait_s: float = 60.0) -> int | None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and run.poll() is None:
            pid = stage_pid(log_dir, stage)
            if pid is not None and pid not in killed and alive(pid):
                return pid
            time.sleep(0.1)
        return None

    def _time_recovery(self, target, old_pid, log_dir, killed_at, started, run, broker, result) -> None:
        seconds = self._recovered(target, old_pid, log_dir, killed_at, run, broker)
        result.recoveries.append(Recovery(target, killed_at - started, seconds))
        self.say(f"chaos: {target} back in {seconds:.1f}s" if seconds is not None
                 else f"chaos: {target} not timed (the run ended first, or it did not come back)")

    def _recovered(self, target: str, old_pid: int | None, log_dir: Path, killed_at: float, run,
                   broker) -> float | None:
        """Seconds from the kill until the target runs again with its lag under CAUGHT_UP_LAG."""
        from topics.lag import stage_lag

        deadline = killed_at + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline and run.poll() is None:
            if target == BROKER:
                if broker.status(check_ready=True).ready:
                    return time.monotonic() - killed_at
            else:
                pid = stage_pid(log_dir, target)
                if pid != old_pid and alive(pid):
                    folders = [p.parent for p in (self.root / "data" / "recovery").rglob("part-*.sqlite3")
                               if p.parent.name == target]
                    try:
                        lag = sum(r.lag for r in stage_lag(broker.bootstrap, {target: folders[-1]})) if folders else 0
                    except Exception:  # the broker may be briefly away; ask again
                        lag = CAUGHT_UP_LAG + 1
                    if lag <= CAUGHT_UP_LAG:
                        return time.monotonic() - killed_at
            time.sleep(0.2)
        return None


REPRODUCIBLE_TOPICS = {"md.trades": "md_trades", "md.quotes": "md_quotes", "md.bars": "md_bars",
                       "features": "features", "signals": "signals"}


def judge(harness: ChaosHarness, result: ChaosResult, bootstrap: str) -> ChaosResult:
    """Compare the chaos run with the reference and count the re-produced messages."""
    from sinks.warehouse import Warehouse
    from tapeflow.chaos_verify import landed_twice, verify_run
    from topics.admin import topic_messages

    wh = Warehouse.connect(harness.warehouse)
    try:
        result.problems += verify_run(wh, "reference", "chaos")
        result.landed_twice = landed_twice(wh, "chaos")
        for topic, table in REPRODUCIBLE_TOPICS.items():
            messages, partitions = topic_messages(bootstrap, topic)
            landed = wh.query(f"SELECT uniqExact(id) FROM {table} WHERE run_id = 'chaos'").scalar()
            # each partition also carries one end-of-tape marker per run
            result.reproduced[topic] = max(0, messages - partitions - int(landed))
    finally:
        wh.close()
    return result
