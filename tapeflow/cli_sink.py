"""``tapeflow flow sink``: the warehouse sink as members of a Kafka consumer group (Quix Streams).

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


def refuse(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def sink_refusals(*, workers: int, recovery_dir: Path | None, symbols: str | None, market_streams: str,
                  silent_after_s: float) -> list[str]:
    """The ``tapeflow flow`` options that mean nothing to the consumer-group sink, when given."""
    out = []
    if workers != 1:
        out.append("--workers: the sink scales by consumer-group members: more `tapeflow flow sink` processes "
                   "against a ClickHouse server, or --members N in one process against chDB")
    if recovery_dir is not None:
        out.append("--recovery-dir: the sink's offsets are committed to its Kafka consumer group "
                   "(tapeflow-sink.PREFIXRUN_ID), after ClickHouse has each batch")
    if symbols is not None or market_streams != "trade,quote" or silent_after_s != 30.0:
        out.append("--symbols, --market-streams, --silent-after-s: the sink stores every record of every topic")
    return out


def run_sink(*, brokers: str, prefix: str, warehouse_url: str, database: str, run_id: str, members: int,
             until_end: bool, max_rows: int, commit_interval_s: float) -> None:
    from sinks.group_sink import SinkMembers, sink_group
    from sinks.warehouse import Warehouse, parse_url
    from topics.kafka_records import KafkaEndpoint

    target = parse_url(warehouse_url)
    lock = None
    if target.backend == "chdb" and target.chdb_path != ":memory:":
        lock = _hold_chdb_folder(Path(target.chdb_path), members)
    elif target.backend == "chdb":
        refuse("a sink into chdb://:memory: lands rows nobody can read: give a warehouse folder or server")
    wh = Warehouse.connect(warehouse_url, database=database)
    wh.apply_ddl()
    endpoint = KafkaEndpoint(tuple(brokers.split(",")), prefix, tail=not until_end)
    group = SinkMembers(wh, endpoint, run_id, members, commit_interval_s=commit_interval_s, max_rows=max_rows,
                        idle_stop_s=IDLE_STOP_S if until_end else 0.0)
    # SIGTERM and Ctrl-C stop every member: each commits what ClickHouse has and leaves the group.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: threading.Thread(target=group.stop, daemon=True).start())
    typer.echo(f"tapeflow flow sink: consumer group {sink_group(prefix, run_id)}, {members} member(s) here, "
               f"warehouse {wh.backend}", err=True)
    try:
        group.run()
    finally:
        typer.echo(f"tapeflow flow sink: stopped; {group.messages_landed:,} messages landed, "
                   f"{group.messages_relanded:,} of them again under the tokens of batches logged before", err=True)
        wh.close()
        if lock is not None:
            os.close(lock)


def _hold_chdb_folder(path: Path, members: int) -> int:
    """An exclusive lock on the chDB folder for this process's members, or exit 2 saying why."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        refuse(f"another sink process holds the chDB warehouse {path}: chDB opens a folder in one process "
               "only, so a consumer group over it runs its members in that process (--members N); to spread "
               "members over processes or hosts, point them at a ClickHouse server (--warehouse http://...)")
    return fd
