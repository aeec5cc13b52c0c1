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
    trading: bool = True  # False (--no-trading): no signals or trading stages
    strategy: str = "baseline"  # the signals stage's: baseline | lightgbm
    model: str = "lightgbm"
    registry: Path = Path("data/models")
    store_raw: bool = True  # False (--no-raw): the sink does not land md.raw
    dashboard_port: int | None = None  # the sink serves the dashboard over its warehouse
    venue: str = "sim"  # alpaca: the trading stage routes orders to Alpaca
    live: bool = False  # with venue alpaca: real-money trading

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
        return (*market, "signals", *trading, "sink")

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
        if stage == "signals":
            command += ["--strategy", self.strategy]
            if self.strategy != "baseline":
                command += ["--model", self.model, "--registry", str(self.registry)]
        if stage in ("trading", "execution") and self.venue != "sim":
            command += ["--venue", self.venue] + (["--live"] if self.live else [])
        if stage == "sink":
            command += ["--warehouse", self.warehouse, "--run-id", self.run_id]
            if not self.store_raw:
                command.append("--no-raw")
            if self.dashboard_port is not None:
                command += ["--dashboard-port", str(self.dashboard_port)]
        return command

    def start_stages(self) -> dict[str, subprocess.Popen]:
        """Called from the main thread: the parent-death signal follows the forking thread."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        processes = {}
        for stage in self.stages:
            log = open(self.log_dir / f"{stage}.log", "ab")
            # Stages end with this process even when it is killed outright: a stage left running
            # would keep reading (and, for risk, trading) with no one to stop it.
            processes[stage] = subprocess.Popen(self.stage_command(stage), stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True, preexec_fn=die_with_parent)
        self.processes = processes
        return processes

    def failed_stages(self) -> dict[str, int]:
        """Stages that ended with an error (a stopped stage exits 0): ``stage -> exit code``."""
        return {stage: p.returncode for stage, p in getattr(self, "processes", {}).items()
                if p.returncode not in (None, 0)}

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
    split.begin()
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
        if lag and len(lag) == len(split.resumable_stages) and not any(lag.values()):
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
