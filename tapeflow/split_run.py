"""``tapeflow run --brokers``: the whole split pipeline against one broker.

Creates the catalog's topics, records where the run's tape starts (``SplitRun.begin``), starts every
stage as its own ``tapeflow flow STAGE`` process (with a recovery directory each under the run's
folder ``<root>/<prefix or default>/<run id>``, so a restart of the same run resumes and another
run starts fresh), publishes the feed to ``md.raw`` from this process,
prints a progress line (ticks published, lag per stage), and, once the feed is done and every
stage has caught up, stops the stages and prints the same summary as the embedded run from the
warehouse the sink wrote.

Stages read their topics live (tail), so a bar or cross-section still open when the run stops stays
open in the stage's recovery snapshot rather than being flushed half-built.

A finite tape (a replay file's end, ``--max-ticks``, ``--duration``) ends explicitly instead: the
feed puts an end-of-tape marker on every partition of ``md.raw`` (:mod:`topics.end_of_tape`), each
stage flushes what an embedded run flushes at its end and passes the marker on, and the run ends
when the sink process, having read every stage's markers and landed everything before them, exits.
A stop (Ctrl-C) is no end of tape: it waits for the stages to catch up, as a live tape does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import typer

from tapeflow.broker import die_with_parent
from tapeflow.supervisor import RestartPolicy, StageGaveUp, StageRestart, StageSupervisor

UNCHAINED_MARKET = ("normalize", "bars", "features")
CHAINS = ("market", "none")  # --chain: the market-data stages in one process (default), or one each
CAUGHT_UP_FOR_S = 2.0
# Stages that build the strategies (signals) or size, limit and value them (the desk's).
STRATEGY_STAGES = ("signals", "trading", "risk", "pnl")


def run_folder(root: Path, prefix: str, run_id: str) -> Path:
    """Where one split run keeps its stages' recovery folders: state of one run on one cluster."""
    return Path(root) / (prefix or "default") / run_id


def stage_folders(root: Path, prefix: str | None = None, run_id: str | None = None) -> tuple[Path, dict[str, Path]]:
    """``(folder, stage -> recovery folder)`` of one run under ``root``: ``run_id``'s (under
    ``prefix``), or the stage folders right under ``root`` (one stack, e.g. compose's volumes), or
    else the run whose stages wrote last (under ``prefix`` when given)."""
    def stages_in(folder: Path) -> dict[str, Path]:
        return {d.name: d for d in sorted(folder.glob("*")) if any(d.glob("part-*.sqlite3"))}

    root = Path(root)
    if run_id is not None:
        folder = run_folder(root, prefix or "", run_id)
        return folder, stages_in(folder)
    flat = stages_in(root)
    if flat:
        return root, flat
    runs = {store.parent.parent for store in root.glob(f"{prefix or '*'}/*/*/part-*.sqlite3")}
    if not runs:
        return root, {}
    latest = max(runs, key=lambda run: max(p.stat().st_mtime for p in run.glob("*/part-*.sqlite3")))
    return latest, stages_in(latest)


@dataclass
class SplitRun:
    """One split run: which stage processes it starts and with which options (:meth:`stage_command`)."""

    brokers: str
    prefix: str
    recovery_root: Path  # this run's folder (see run_folder): one recovery folder per stage in it
    run_id: str
    warehouse: str
    universe: tuple[str, ...] | None
    market_streams: tuple[str, ...]
    log_dir: Path
    silent_after_s: float = 30.0
    separate_trading: bool = False  # risk, execution and pnl as three processes instead of `trading`
    chain: str = "market"  # "none": normalize, bars and features as three processes
    strategy_options: tuple[str, ...] = ()  # --strategy ... (strategies.loading.strategy_options)
    trading: bool = True  # False (--no-trading): no signals or trading stages
    # False (--strategy external:NAME): no signals stage; the strategy's own app writes the signals
    # topic and its end-of-tape markers (tapeflow/cli_external.py)
    signals_stage: bool = True
    store_raw: bool = True  # False (--no-raw): the sink does not land md.raw
    dashboard_port: int | None = None  # the sink serves the dashboard over its warehouse
    venue: str = "sim"  # alpaca: the trading stage routes orders to Alpaca
    live: bool = False  # with venue alpaca: real-money trading
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    metrics_port: int | None = None  # this process's; stage i serves on metrics_port + 1 + i
    calendar: str | None = None  # the feed's trading calendar, handed to every stage as TAPEFLOW_CALENDAR

    def __post_init__(self) -> None:
        if self.chain not in CHAINS:
            raise ValueError(f"unknown chain {self.chain!r}; chains: {', '.join(CHAINS)}")

    @property
    def stages(self) -> tuple[str, ...]:
        """Upstream first, the sink last."""
        market = ("market",) if self.chain == "market" else UNCHAINED_MARKET
        if not self.trading:
            return (*market, "sink")
        trading = ("risk", "execution", "pnl") if self.separate_trading else ("trading",)
        return (*market, *(("signals",) if self.signals_stage else ()), *trading, "sink")

    @property
    def resumable_stages(self) -> tuple[str, ...]:
        """The stages with a recovery folder (their lag is read from it): all but a trading stage at
        Alpaca, which holds the live orders and is reconciled with instead (as embedded)."""
        return tuple(s for s in self.stages if not (s == "trading" and self.venue == "alpaca"))

    @property
    def start_file(self) -> Path:
        from topics.origin import RUN_START_FILE

        return self.recovery_root / RUN_START_FILE

    def begin(self) -> None:
        """Record (first start) or check (restart) the run's cluster, topic ids and start offsets,
        before the feed publishes: stages without a snapshot start at the run's own tape.
        Raises topics.origin.StaleRecovery."""
        from topics.origin import StaleRecovery, fresh_start_hint, start_run

        if self.venue == "alpaca" and self.start_file.exists():
            raise StaleRecovery(f"run {self.run_id} traded at Alpaca and cannot resume: Alpaca holds its orders, and "
                                f"a new run reconciles with them at start. {fresh_start_hint(self.recovery_root)}")
        start_run(self.recovery_root, self.brokers, self.prefix)

    def stage_command(self, stage: str) -> list[str]:
        from tapeflow.cli_flows import STAGE_OPTIONS

        def uses(option: str) -> bool:
            return stage in STAGE_OPTIONS[option]

        command = [sys.executable, "-m", "tapeflow.cli", "flow", stage, "--brokers", self.brokers,
                   "--prefix", self.prefix]
        if stage in self.resumable_stages:
            command += ["--recovery-dir", str(self.recovery_root / stage)]
        if self.start_file.exists():
            command += ["--start-offsets", str(self.start_file)]
        if uses("market_streams"):
            command += ["--market-streams", ",".join(self.market_streams)]
        if uses("silent_after_s"):
            command += ["--silent-after-s", str(self.silent_after_s)]
        if self.universe and uses("symbols"):
            command += ["--symbols", ",".join(self.universe)]
        if stage in ("trading", "execution") and self.venue != "sim":
            command += ["--venue", self.venue] + (["--live"] if self.live else [])
        if stage == "sink":
            command += ["--warehouse", self.warehouse, "--run-id", self.run_id]
            if not self.store_raw:
                command.append("--no-raw")
            if self.dashboard_port is not None:
                command += ["--dashboard-port", str(self.dashboard_port)]
        if stage in STRATEGY_STAGES:
            command += list(self.strategy_options)
        return command

    def stage_env(self) -> dict[str, str]:
        """The stages' environment: this process's, with the run's calendar (risk and the venue
        live in the stages, which do not see the feed)."""
        env = dict(os.environ)
        if self.calendar:
            env["TAPEFLOW_CALENDAR"] = self.calendar
        return env

    def log_path(self, stage: str) -> Path:
        return self.log_dir / f"{stage}.log"

    def start_stage(self, stage: str) -> subprocess.Popen:
        """Start (or restart: the same command resumes from the recovery snapshot) one stage, its
        output appended to its log, its pid in ``<log dir>/<stage>.pid`` (what an operator or the
        chaos harness finds it by)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self.stage_env()
        if self.metrics_port is not None:
            env["TAPEFLOW_METRICS_PORT"] = str(self.metrics_port + 1 + self.stages.index(stage))
        with open(self.log_path(stage), "ab") as log:
            # Stages end with this process even when it is killed outright: a stage left running
            # would keep reading (and, for risk, trading) with no one to stop it. The parent-death
            # signal follows the forking thread: the supervision thread lives as long as the run.
            process = subprocess.Popen(self.stage_command(stage), stdout=log, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True, preexec_fn=die_with_parent)
        (self.log_dir / f"{stage}.pid").write_text(str(process.pid))
        return process

    def lag(self) -> dict[str, int]:
        from topics.lag import stage_lag

        dirs = {d.name: d for d in self.recovery_root.glob("*") if any(d.glob("part-*.sqlite3"))}
        totals: dict[str, int] = {}  # a stage that has not committed a snapshot yet is not in it
        for row in stage_lag(self.brokers, dirs):
            totals[row.stage] = totals.get(row.stage, 0) + row.lag
        return totals


class Supervision:
    """The run's stage processes under a :class:`tapeflow.supervisor.StageSupervisor`, polled by a
    thread of its own: a stage that dies comes back from its snapshot (logged, counted on the
    progress line, and an ``alert`` control record that the sink lands and pages); one that spends
    its restart budget stops the run (``gave_up``)."""

    POLL_S = 0.2

    def __init__(self, split: SplitRun, say=lambda line: typer.echo(line, err=True)):
        self.split = split
        self.say = say
        self.gave_up: StageGaveUp | None = None
        self.stopped = threading.Event()  # set: no more restarts (the run is stopping its stages)
        self._sender = None
        self.supervisor = StageSupervisor(split.stages, split.start_stage, split.restart_policy,
                                          on_restart=self._restarted, log_path=split.log_path)
        self._thread = threading.Thread(target=self._watch, name="stage-supervision", daemon=True)

    def start(self) -> "Supervision":
        self._thread.start()
        return self

    @property
    def processes(self) -> dict[str, subprocess.Popen]:
        return self.supervisor.processes

    def restarts_line(self) -> str:
        restarts = self.supervisor.restarts
        return (" | restarts " + " ".join(f"{stage} {n}" for stage, n in sorted(restarts.items()))) if restarts else ""

    def stop(self) -> None:
        self.stopped.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self.stopped.wait(self.POLL_S):
            try:
                self.supervisor.poll()
            except StageGaveUp as exc:
                self.gave_up = exc
                self.say(f"error: {exc}")
                return

    def _restarted(self, restart: StageRestart) -> None:
        self.say(f"supervisor: {restart.describe()}")
        try:
            from schemas import ControlCommand, ControlKind, now_ns
            from topics.control_sender import KafkaControlSender

            if self._sender is None:
                self._sender = KafkaControlSender(self.split.brokers, self.split.prefix)
            now = now_ns()
            self._sender.send(ControlCommand(
                id=f"supervisor:{self.split.run_id}:{restart.stage}:{restart.restart_number}", ts_event=now,
                ts_ingest=now, target=f"stage:{restart.stage}", kind=ControlKind.ALERT, name="stage_restarted",
                issued_by="supervisor", detail=restart.describe()))
        except Exception as exc:  # the broker may be the thing that is down; the log line stays
            self.say(f"supervisor: could not record the restart of {restart.stage} on the control topic ({exc})")


def run_split(feed, split: SplitRun, max_ticks: int | None, stop: threading.Event, progress_interval: float,
              duration: float | None = None, lag_alert_s: float = 30.0) -> None:
    """``stop``: Ctrl-C (the tape is cut, not ended); ``duration``: seconds after which the tape
    ends (and is marked ended). Stages that die are restarted (:class:`Supervision`); the run fails
    (exit 1) only when one spends its restart budget."""
    tape_over = threading.Event()
    timer = threading.Timer(duration if duration is not None else 0.0, lambda: (tape_over.set(), stop.set()))
    timer.daemon = True
    if duration is not None:
        timer.start()
    from sinks.alerts import LagWatch
    from topics.admin import create_topics
    from topics.producer import TopicPublisher, publish_ticks, undelivered

    create_topics(split.brokers, prefix=split.prefix)
    split.begin()
    if split.metrics_port is not None:
        from sinks.metrics import serve

        serve(split.metrics_port)
        typer.echo(f"metrics on :{split.metrics_port} (this process) and :{split.metrics_port + 1}.."
                   f":{split.metrics_port + len(split.stages)} ({', '.join(split.stages)})", err=True)
    supervision = Supervision(split)
    processes = supervision.processes
    typer.echo(f"stages started: {', '.join(f'{s} (pid {p.pid})' for s, p in processes.items())}; "
               f"logs in {split.log_dir}", err=True)
    supervision.start()
    publisher = TopicPublisher(split.brokers, prefix=split.prefix)
    feed_done = threading.Event()
    lag_watch = LagWatch(lag_alert_s)

    def report() -> None:
        last, last_time = 0, time.monotonic()
        while not (feed_done.is_set() and stop.is_set()):
            time.sleep(progress_interval)
            now, sent = time.monotonic(), publisher.stats.sent
            try:
                lags = split.lag()
                lag = " ".join(f"{stage} {n:,}" for stage, n in sorted(lags.items()))
                _lag_alerts(split, lag_watch.observe(lags, now), supervision)
            except Exception as exc:  # the broker may be briefly away; say so and go on
                lag = f"unavailable ({exc})"
            typer.echo(f"ticks published {sent:,} ({(sent - last) / (now - last_time):,.0f}/s) | lag {lag}"
                       f"{supervision.restarts_line()}", err=True)
            last, last_time = sent, now
            if supervision.gave_up is not None:
                stop.set()

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    failed = False
    try:
        stats = publish_ticks(feed.ticks(), publisher, max_ticks=max_ticks, stop=stop)
        timer.cancel()  # a tape shorter than --duration has ended by itself
        typer.echo(f"feed done: {stats.summary()}", err=True)
        feed_done.set()
        lost = undelivered(stats, publisher.kafka_topic)
        if lost:  # the tape still ends, so what was delivered lands whole, but the run has failed
            typer.echo(f"error: {lost}", err=True)
            failed = True
        if supervision.gave_up is not None:
            failed = True
        elif stop.is_set() and not tape_over.is_set():
            _wait_caught_up(split, supervision, stop)
        else:
            ended_at = time.monotonic()
            publisher.end_tape(split.run_id, split.stages)
            stop.clear()  # from here on, Ctrl-C (or a stage out of restarts) is the only stop
            if _wait_tape_landed(supervision, stop):
                typer.echo(f"end of tape landed: {time.monotonic() - ended_at:.2f} s after the feed's last tick",
                           err=True)
            elif not stop.is_set() or supervision.gave_up is not None:
                failed = True  # the warehouse lacks the end of the tape
    finally:
        feed_done.set()
        stop.set()
        supervision.stop()  # no restarts while the stages are being stopped
        _stop_stages(split.stages, supervision.processes)
    if failed or supervision.gave_up is not None:
        raise typer.Exit(1)


def _lag_alerts(split: SplitRun, alerts, supervision: Supervision) -> None:
    """A stage whose lag keeps growing: an alert record on the control topic (landed and paged by the sink)."""
    from schemas import now_ns
    from topics.control_sender import KafkaControlSender

    for alert in alerts:
        supervision.say(f"alert: {alert.text}")
        record = alert.to_record()
        KafkaControlSender(split.brokers, split.prefix).send(
            record.model_copy(update={"issued_by": "lag-monitor", "ts_ingest": now_ns()}))


def _wait_caught_up(split: SplitRun, supervision: Supervision, stop: threading.Event) -> None:
    """Until every stage's lag has stayed at zero for a moment (upstream stages feed downstream)."""
    since = None
    while True:
        if supervision.gave_up is not None:
            return
        try:
            lag = split.lag()
        except Exception:
            lag = {"?": 1}
        if (lag and len(lag) == len(split.resumable_stages) and not any(lag.values())
                and supervision.supervisor.all_up()):
            since = since or time.monotonic()
            if time.monotonic() - since >= CAUGHT_UP_FOR_S:
                return
        else:
            since = None
        if stop.is_set() and since is None:
            return
        time.sleep(0.5)


def _wait_tape_landed(supervision: Supervision, stop: threading.Event) -> bool:
    """Until the sink process has ended by itself (exit 0), which it does once it has every stage's
    end-of-tape markers and has landed what came before them (flows/split.py ``pass_end_of_tape``);
    a stage that dies meanwhile is restarted and resumes. False if a stage spent its restart budget
    or the run was stopped first."""
    while not stop.is_set():
        if supervision.gave_up is not None:
            return False
        if "sink" in supervision.supervisor.finished():
            return True
        time.sleep(0.05)
    return False


def _stop_stages(stages: tuple[str, ...], processes: dict[str, subprocess.Popen]) -> None:
    for stage in stages:  # upstream first; the sink last, after what the others wrote
        process = processes[stage]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
