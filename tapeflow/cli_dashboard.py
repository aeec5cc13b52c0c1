"""``tapeflow dashboard`` and the dashboard that ``tapeflow run`` serves alongside the pipeline."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Optional

import typer

from tapeflow.dashboard_server import DEFAULT_HOST, DEFAULT_PORT, DashboardAccessError, DashboardHandle, start_dashboard
from sinks.urls import redact_url
from config.settings import Settings

PASSWORD_ENV = "TAPEFLOW_DASHBOARD_PASSWORD"


def _context(warehouse: Any, settings: Settings, control_path: str, brokers: Optional[str],
             refresh_ms: int, run_id: Optional[str], prefix: str = ""):
    from config.users import UsersFile, users_path
    from dashboards.context import DashboardContext
    from dashboards.operator import OperatorDesk
    from tapeflow.cli_control import control_sender

    users = UsersFile(users_path())
    users = users if users.configured else None
    operator = OperatorDesk(control_sender(control_path, brokers, prefix), settings.account, users)
    return DashboardContext(warehouse=warehouse, operator=operator, account=settings.account,
                            refresh_ms=refresh_ms, brokers=brokers, run_id=run_id, users=users)


def serve_alongside_run(
    warehouse: Any,
    settings: Settings,
    control_channel: Any,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    password: Optional[str] = None,
    run_id: Optional[str] = None,
    refresh_ms: int = 1000,
    brokers: Optional[str] = None,
    prefix: str = "",
) -> DashboardHandle:
    """Serve the dashboard in this process, reading the pipeline's warehouse and sending operator
    commands to its control channel (with ``brokers``, the split topology's: the control topic).
    Call ``.stop()`` on the handle when the run ends."""
    import os

    logging.getLogger("tapeflow.dashboard").setLevel(logging.INFO)
    # Without brokers: the embedded run's own spool, even with TAPEFLOW_KAFKA_BOOTSTRAP set (that run
    # reads nothing else; '' forces the spool route). With brokers: the split run's control topic.
    ctx = _context(warehouse, settings, str(control_channel.path), brokers or "", refresh_ms, run_id, prefix)
    return start_dashboard(ctx, host=host, port=port, password=password or os.environ.get(PASSWORD_ENV))


def dashboard(
    warehouse: Optional[str] = typer.Option(None, help="Warehouse URL (env TAPEFLOW_WAREHOUSE)."),
    database: Optional[str] = typer.Option(None, help="ClickHouse database (env TAPEFLOW_DATABASE)."),
    brokers: Optional[str] = typer.Option(None, envvar="TAPEFLOW_KAFKA_BOOTSTRAP",
                                          help="Kafka bootstrap servers (split mode; env TAPEFLOW_KAFKA_BOOTSTRAP): "
                                          "control commands go to the control topic and consumer lag is shown."),
    prefix: str = typer.Option("", help="With --brokers: the topic prefix of the split run."),
    host: str = typer.Option(DEFAULT_HOST, help="Address to bind; anything but loopback needs users "
                                                 "(`tapeflow users add`) or --password."),
    port: int = typer.Option(DEFAULT_PORT, help="Port to serve on (0: any free port)."),
    password: Optional[str] = typer.Option(None, "--password", "--token", envvar=PASSWORD_ENV,
                                           help="Basic-auth password (or a JSON file of user: password)."),
    run_id: Optional[str] = typer.Option(None, help="The run to show first; default: the latest."),
    refresh_ms: int = typer.Option(1000, help="Refresh period of the pages, in milliseconds."),
) -> None:
    """Serve the trading desk dashboard over a warehouse until Ctrl-C.

    With a chdb:// warehouse this opens the engine in this process: it works on a finished run, but
    a running `tapeflow run` already holds that path, so use the dashboard it serves instead."""
    from sinks.warehouse import Warehouse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in (("warehouse", warehouse), ("database", database)) if v}
    settings = Settings(**overrides)
    try:
        from config.users import UsersFile, users_path
        from tapeflow.dashboard_server import require_credentials

        require_credentials(host, password or UsersFile(users_path()).configured)
    except (DashboardAccessError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    from tapeflow.cli_control import ControlRouteError, route_brokers

    try:
        route_brokers(brokers, prefix)
    except ControlRouteError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    wh = Warehouse.connect(settings.warehouse, database=settings.database)
    wh.apply_ddl()
    ctx = _context(wh, settings, settings.control_path, brokers, refresh_ms, run_id, prefix)
    try:
        handle = start_dashboard(ctx, host=host, port=port, password=password, own_reader=False)
    except DashboardAccessError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    typer.echo(f"dashboard at {handle.url} (warehouse {redact_url(settings.warehouse)}, database {settings.database}); Ctrl-C stops")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    handle.stop()
    wh.close()
