"""``tapeflow run --brokers``: the whole split pipeline against one broker.

Creates the catalog's topics, starts every stage as its own ``tapeflow flow STAGE`` process (with a
recovery directory each, so a rerun resumes), publishes the feed to ``md.raw`` from this process,
prints a progress line (ticks published, lag per stage), and, once the feed is done and every
stage has caught up, stops the stages and prints the same summary as the embedded run from the
warehouse the sink wrote.

Stages read their topics live (tail), so a bar or cross-section still open when the run stops stays
open in the stage's recovery snapshot rather than being flushed half-built.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from tapeflow.broker import die_with_parent

UNCHAINED_MARKET = ("normalize", "bars", "features")
CHAINS = ("market", "none")  # --chain: the market-data stages in one process (default), or one each
CAUGHT_UP_FOR_S = 2.0
# Stages that build the strategies (signals) or size, limit and value them (the desk's).
STRATEGY_STAGES = ("signals", "trading", "risk", "pnl")


@dataclass
class SplitRun:
    brokers: str
    prefix: str
    recovery_root: Path
    run_id: str
    warehouse: str
    universe: tuple[str, ...] | None
    market_streams: tuple[str, ...]
    log_dir: Path
    silent_after_s: float = 30.0
    separate_trading: bool = False  # risk, execution and pnl as three processes instead of `trading`
    chain: str = "market"  # "none": normalize, bars and features as three processes
    strategy_options: tuple[str, ...] = ()  # --strategy ... (strategies.loading.strategy_options)
    calendar: str | None = None  # the feed's trading calendar, handed to every stage as TAPEFLOW_CALENDAR

    def __post_init__(self) -> None:
        if self.chain not in CHAINS:
            raise ValueError(f"unknown chain {self.chain!r}; chains: {', '.join(CHAINS)}")

    @property
    def stages(self) -> tuple[str, ...]:
        """Upstream first, the sink last."""
        market = ("market",) if self.chain == "market" else UNCHAINED_MARKET
        trading = ("risk", "execution", "pnl") if self.separate_trading else ("trading",)
        return (*market, "signals", *trading, "sink")

    def stage_command(self, stage: str) -> list[str]:
        command = [sys.executable, "-m", "tapeflow.cli", "flow", stage, "--brokers", self.brokers,
                   "--prefix", self.prefix, "--recovery-dir", str(self.recovery_root / stage),
                   "--market-streams", ",".join(self.market_streams), "--silent-after-s", str(self.silent_after_s)]
        if self.universe:
            command += ["--symbols", ",".join(self.universe)]
        if stage == "sink":
            command += ["--warehouse", self.warehouse, "--run-id", self.run_id]
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

    def start_stages(self) -> dict[str, subprocess.Popen]:
        """Called from the main thread: the parent-death signal follows the forking thread."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        processes = {}
        for stage in self.stages:
            log = open(self.log_dir / f"{stage}.log", "ab")
            # Stages end with this process even when it is killed outright: a stage left running
            # would keep reading (and, for risk, trading) with no one to stop it.
            processes[stage] = subprocess.Popen(self.stage_command(stage), stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True, preexec_fn=die_with_parent, env=self.stage_env())
        return processes

    def lag(self) -> dict[str, int]:
        from topics.lag import stage_lag

        dirs = {d.name: d for d in self.recovery_root.glob("*") if any(d.glob("part-*.sqlite3"))}
        totals: dict[str, int] = {}  # a stage that has not committed a snapshot yet is not in it
        for row in stage_lag(self.brokers, dirs):
            totals[row.stage] = totals.get(row.stage, 0) + row.lag
        return totals


def run_split(feed, split: SplitRun, max_ticks: int | None, stop: threading.Event, progress_interval: float) -> None:
    from topics.admin import create_topics
    from topics.producer import TopicPublisher, publish_ticks

    create_topics(split.brokers, prefix=split.prefix)
    processes = split.start_stages()
    typer.echo(f"stages started: {', '.join(f'{s} (pid {p.pid})' for s, p in processes.items())}; "
               f"logs in {split.log_dir}", err=True)
    publisher = TopicPublisher(split.brokers, prefix=split.prefix)
    feed_done = threading.Event()

    def report() -> None:
        last, last_time = 0, time.monotonic()
        while not (feed_done.is_set() and stop.is_set()):
            time.sleep(progress_interval)
            now, sent = time.monotonic(), publisher.stats.sent
            try:
                lag = " ".join(f"{stage} {n:,}" for stage, n in sorted(split.lag().items()))
            except Exception as exc:  # the broker may be briefly away; say so and go on
                lag = f"unavailable ({exc})"
            typer.echo(f"ticks published {sent:,} ({(sent - last) / (now - last_time):,.0f}/s) | lag {lag}", err=True)
            last, last_time = sent, now
            dead = [s for s, p in processes.items() if p.poll() is not None]
            if dead and not feed_done.is_set():
                typer.echo(f"stage process ended: {', '.join(dead)} (see {split.log_dir})", err=True)
                stop.set()

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        stats = publish_ticks(feed.ticks(), publisher, max_ticks=max_ticks, stop=stop)
        typer.echo(f"feed done: {stats.summary()}", err=True)
        feed_done.set()
        _wait_caught_up(split, processes, stop)
    finally:
        feed_done.set()
        stop.set()
        _stop_stages(split.stages, processes)


def _wait_caught_up(split: SplitRun, processes: dict[str, subprocess.Popen], stop: threading.Event) -> None:
    """Until every stage's lag has stayed at zero for a moment (upstream stages feed downstream)."""
    since = None
    while True:
        if any(p.poll() is not None for p in processes.values()):
            return
        try:
            lag = split.lag()
        except Exception:
            lag = {"?": 1}
        if lag and len(lag) == len(processes) and not any(lag.values()):
            since = since or time.monotonic()
            if time.monotonic() - since >= CAUGHT_UP_FOR_S:
                return
        else:
            since = None
        if stop.is_set() and since is None:
            return
        time.sleep(0.5)


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
