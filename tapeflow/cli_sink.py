"""``tapeflow flow sink --members N``: the warehouse sink as members of a Kafka consumer group
(Quix Streams, sinks/group_sink.py), opt-in beside the default Bytewax sink.

Start more processes with the same ``--prefix`` and ``--run-id`` (one group) to spread the
partitions over them, against a ClickHouse server. Embedded chDB opens a warehouse folder in one
process only: there the group's members are threads of one process (``--members``), and a second
process on the same folder is refused with the reason.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from pathlib import Path

import typer

IDLE_STOP_S = 3.0  # --until-end: a member stops once no message has come for this long
LOCK_FILE = ".tapeflow-sink.lock"


# The options of `tapeflow flow` that mean nothing to the consumer-group sink, and why.
GROUP_SINK_REFUSALS = {
    "workers": "the consumer-group sink scales by members: --members N in one process against chDB, or more "
               "`tapeflow flow sink --members 1` processes against a ClickHouse server",
    "addresses": "the consumer-group sink is no Bytewax cluster: start more members instead",
    "process_id": "the consumer-group sink is no Bytewax cluster: start more members instead",
    "recovery_dir": "the consumer-group sink commits its offsets to its Kafka consumer group "
                    "(tapeflow-sink.PREFIXRUN_ID), after ClickHouse has each batch",
    "start_offsets": "the consumer-group sink starts where its group committed (a new group: at the topics' "
                     "beginning)",
    "dashboard_port": "the consumer-group sink serves no dashboard: run the Bytewax sink (no --members) or "
                      "`tapeflow dashboard` against a ClickHouse server",
}
# The settings (TAPEFLOW_<NAME>) only the Bytewax sink acts on.
GROUP_SINK_SETTING_REFUSALS = {
    "metrics_port": "the consumer-group sink serves no Prometheus /metrics",
    "alert_webhook_url": "the consumer-group sink raises no alerts (the Bytewax sink's rules watch its records)",
    "alert_dead_letters_per_minute": "the consumer-group sink raises no alerts",
    "epoch_interval_s": "the consumer-group sink has no Bytewax epoch: it commits every TAPEFLOW_SINK_MAX_AGE_S",
}


def group_sink_refusal(given: set[str], settings_given: set[str]) -> str | None:
    """Why the options or settings given cannot go with ``--members`` (None: they all can)."""
    for name, reason in GROUP_SINK_REFUSALS.items():
        if name in given:
            return f"--{name.replace('_', '-')} with --members: {reason}"
    for name, reason in GROUP_SINK_SETTING_REFUSALS.items():
        if name in settings_given:
            return f"TAPEFLOW_{name.upper()} with --members: {reason}"
    return None


def run_group_sink(*, brokers: str, prefix: str, warehouse_url: str, database: str, run_id: str, members: int,
                   until_end: bool, max_rows: int, commit_interval_s: float, store_raw: bool) -> None:
    """Run ``members`` consumer-group members in this process until Ctrl-C/SIGTERM, the end of the
    run's tape (every stage's end-of-tape markers landed) or, with ``until_end``, the end of the
    topics (no message for :data:`IDLE_STOP_S`)."""
    from sinks.group_sink import SinkMembers, sink_group
    from sinks.warehouse import Warehouse, parse_url
    from topics.end_of_tape import RunTapeEnds
    from topics.kafka_records import KafkaEndpoint

    target = parse_url(warehouse_url)
    lock = None
    if target.backend == "chdb" and target.chdb_path != ":memory:":
        lock = _hold_chdb_folder(Path(target.chdb_path), members)
    elif target.backend == "chdb":
        _refuse("a sink into chdb://:memory: lands rows nobody can read: give a warehouse folder or server")
    wh = Warehouse.connect(warehouse_url, database=database)
    wh.apply_ddl()
    endpoint = KafkaEndpoint(tuple(brokers.split(",")), prefix, tail=not until_end)
    tape = RunTapeEnds(reads_feed=store_raw)
    group = SinkMembers(wh, endpoint, run_id, members, commit_interval_s=commit_interval_s, max_rows=max_rows,
                        idle_stop_s=IDLE_STOP_S if until_end else 0.0, store_raw=store_raw, tape=tape)
    # SIGTERM and Ctrl-C stop every member: each commits what ClickHouse has and leaves the group.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: threading.Thread(target=group.stop, daemon=True).start())
    typer.echo(f"tapeflow flow sink: consumer group {sink_group(prefix, run_id)}, {members} member(s) here, "
               f"warehouse {wh.backend}", err=True)
    try:
        group.run()
        if tape.complete:
            typer.echo(f"tapeflow flow sink: end of tape {tape.tape} landed: every stage's markers read "
                       f"({', '.join(tape.stages)})", err=True)
    finally:
        typer.echo(f"tapeflow flow sink: stopped; {group.messages_landed:,} messages landed, "
                   f"{group.messages_relanded:,} of them again under the tokens of batches logged before", err=True)
        wh.close()
        if lock is not None:
            os.close(lock)


def _refuse(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _hold_chdb_folder(path: Path, members: int) -> int:
    """An exclusive lock on the chDB folder for this process's members, or exit 2 saying why."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        _refuse(f"another sink process holds the chDB warehouse {path}: chDB opens a folder in one process "
               "only, so a consumer group over it runs its members in that process (--members N); to spread "
               "members over processes or hosts, point them at a ClickHouse server (--warehouse http://...)")
    return fd
