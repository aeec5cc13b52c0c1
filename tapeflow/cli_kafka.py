"""``tapeflow broker|topics|feed``: a local Kafka broker, the catalog's topics, ticks into ``md.raw``.

Registered in ``tapeflow/cli.py`` by ``app.add_typer(kafka_app)`` (no name: the groups and the
``feed`` command join the top level). Heavy imports stay inside the commands so ``tapeflow --help``
stays fast.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Optional

import typer

DEFAULT_BROKER_DIR = Path("data/kafka")
BROKERS_ENV = "TAPEFLOW_KAFKA_BOOTSTRAP"

kafka_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Kafka: local broker, topics, feed.")
broker_app = typer.Typer(no_args_is_help=True, help="A local single-node Apache Kafka broker (no Docker needed).")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics from the catalog.")
kafka_app.add_typer(broker_app, name="broker")
kafka_app.add_typer(topics_app, name="topics")

DataDir = typer.Option(DEFAULT_BROKER_DIR, "--data-dir", help="The broker's folder: config, KRaft log, pid, server.log.")
Brokers = typer.Option(None, "--brokers", envvar=BROKERS_ENV,
                       help=f"Kafka bootstrap HOST:PORT (env {BROKERS_ENV}); default: the local broker of {DEFAULT_BROKER_DIR}.")
Prefix = typer.Option("", "--prefix", help="Namespace for the catalog's topic names, e.g. 'dev1.'.")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _bootstrap(brokers: Optional[str]) -> str:
    if brokers:
        return brokers
    from tapeflow.broker import LocalBroker

    status = LocalBroker(DEFAULT_BROKER_DIR).status(check_ready=False)
    if not status.running:
        _fail(f"no Kafka given: pass --brokers HOST:PORT, set {BROKERS_ENV}, or start a local broker with "
              f"`tapeflow broker start`")
    return status.bootstrap


@broker_app.command("start")
def broker_start(
    data_dir: Path = DataDir,
    port: Optional[int] = typer.Option(None, help="Client port on 127.0.0.1; default: the folder's last port, else a free one."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for the broker to answer."),
) -> None:
    """Start the broker detached and print its bootstrap address.

    The first start resolves Kafka's jars with Maven (once, into ~/.cache/tapeflow/kafka)."""
    from tapeflow.broker import BrokerError, LocalBroker

    try:
        status = LocalBroker(data_dir, port, say=_say).start(timeout_s=timeout)
    except BrokerError as exc:
        _fail(str(exc))
    typer.echo(status.bootstrap)


@broker_app.command("status")
def broker_status(data_dir: Path = DataDir) -> None:
    """Say whether the broker runs and answers.

    Exit 0 when ready, 1 when stopped, 3 when it runs but does not answer."""
    from tapeflow.broker import LocalBroker

    status = LocalBroker(data_dir).status()
    typer.echo(status.line())
    if not status.running:
        raise typer.Exit(1)
    if not status.ready:
        raise typer.Exit(3)


@broker_app.command("stop")
def broker_stop(
    data_dir: Path = DataDir,
    timeout: float = typer.Option(30.0, help="Seconds of controlled shutdown before SIGKILL."),
) -> None:
    """Stop the broker (SIGTERM, then SIGKILL after --timeout).

    Its data stays for the next start."""
    from tapeflow.broker import LocalBroker

    broker = LocalBroker(data_dir, say=_say)
    pid = broker.status(check_ready=False).pid
    if broker.stop(timeout_s=timeout):
        typer.echo(f"broker stopped (pid {pid})")
    else:
        typer.echo(f"no broker running for {broker.data_dir}")


@topics_app.command("create")
def topics_create(
    brokers: Optional[str] = Brokers,
    prefix: str = Prefix,
    partitions: Optional[int] = typer.Option(None, help="Override every topic's partition count."),
) -> None:
    """Create the catalog's topics.

    Existing ones are compared with the catalog and differences reported, never changed."""
    from topics.admin import TopicAdminError, create_topics

    bootstrap = _bootstrap(brokers)
    try:
        results = create_topics(bootstrap, partitions_override=partitions, prefix=prefix)
    except (TopicAdminError, ValueError) as exc:
        _fail(str(exc))
    for result in results:
        typer.echo(result.line())
    created = sum(r.action == "created" for r in results)
    differing = sum(r.action == "differs" for r in results)
    _say(f"{bootstrap}: {created} created, {len(results) - created - differing} already as in the catalog, "
         f"{differing} differ from the catalog")


@topics_app.command("describe")
def topics_describe(brokers: Optional[str] = Brokers, prefix: str = Prefix) -> None:
    """The catalog's topics as the broker holds them (partitions, cleanup policy, retention)."""
    from tapeflow.report import format_table
    from topics.admin import TopicAdminError, describe_topics

    try:
        rows = describe_topics(_bootstrap(brokers), prefix=prefix)
    except TopicAdminError as exc:
        _fail(str(exc))
    typer.echo(format_table(("topic", "partitions", "cleanup.policy", "retention", "status"),
                            [(r.name, "-" if r.partitions is None else r.partitions, r.cleanup_policy, r.retention,
                              r.status) for r in rows]))


def _require_topic(bootstrap: str, topic: str) -> None:
    """Fail before the first tick when the topic is missing: the broker does not auto-create
    topics, and librdkafka would only say "message timed out" for each tick after the timeout."""
    from topics.admin import TopicAdminError, admin_client, existing_topics

    try:
        present = topic in existing_topics(admin_client(bootstrap), bootstrap, timeout_s=15)
    except TopicAdminError as exc:
        _fail(str(exc))
    if not present:
        prefix = topic[: -len("md.raw")]
        _fail(f"topic {topic} does not exist on {bootstrap}; create the catalog's topics with "
              f"`tapeflow topics create --brokers {bootstrap}" + (f" --prefix {prefix}`" if prefix else "`"))


@kafka_app.command("feed")
def feed(
    kind: str = typer.Argument(..., help="synthetic | replay"),
    brokers: Optional[str] = Brokers,
    prefix: str = Prefix,
    max_ticks: Optional[int] = typer.Option(None, help="Stop after this many ticks."),
    rate: Optional[float] = typer.Option(None, help="Synthetic: pace at N ticks/s. Default: as fast as possible."),
    speed: float = typer.Option(0.0, help="Replay: N x real time; 0 = as fast as possible."),
    path: Optional[Path] = typer.Option(None, help="Replay file (Parquet or CSV)."),
    mapping: Optional[str] = typer.Option(None, help="Replay column preset (default: detected from the file)."),
    symbols: Optional[str] = typer.Option(None, help="Synthetic: comma-separated symbol names."),
    seed: int = typer.Option(7, help="Synthetic feed seed."),
    progress_interval: float = typer.Option(1.0, help="Seconds between progress lines."),
    delivery_timeout: float = typer.Option(300.0, help="Seconds a tick may wait for the broker's ack before it counts as failed."),
) -> None:
    """Publish a feed's ticks to md.raw, keyed by symbol (idempotent producer).

    Exits 1 if any tick was not delivered; Ctrl-C stops, flushes and reports."""
    from feeds import make_feed
    from topics.producer import PublishProgress, TopicPublisher, publish_ticks, undelivered

    bootstrap = _bootstrap(brokers)
    symbol_list = tuple(s.strip() for s in symbols.split(",") if s.strip()) if symbols else None
    try:
        if kind == "synthetic":
            tape = make_feed(kind, path=path, symbols=symbol_list, rate=rate, seed=seed)
        else:
            tape = make_feed(kind, path=path, mapping=mapping, speed=speed, rate=rate)
        publisher = TopicPublisher(bootstrap, "md.raw", prefix=prefix,
                                   config={"message.timeout.ms": int(delivery_timeout * 1000)})
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    _require_topic(bootstrap, publisher.kafka_topic)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    _say(f"tapeflow feed {kind} -> {publisher.kafka_topic} at {bootstrap}")
    progress = PublishProgress(publisher.stats, progress_interval).start()
    try:
        stats = publish_ticks(tape.ticks(), publisher, max_ticks=max_ticks, stop=stop)
    finally:
        progress.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say(("stopped: " if stop.is_set() else "done: ") + stats.summary())
    for error in stats.errors[3:]:  # the first three are in the failure line below
        _say(f"  delivery error: {error}")
    lost = undelivered(stats, publisher.kafka_topic)
    if lost:
        _fail(lost, code=1)


if __name__ == "__main__":  # pragma: no cover - `python -m tapeflow.cli_kafka` before it is registered
    kafka_app()
