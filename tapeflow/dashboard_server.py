"""Serve the dashboard from a thread of the current process.

Embedded mode must: chDB hosts one data path per process, so the dashboard reads the pipeline's
own engine. It is handed the pipeline's :class:`sinks.warehouse.Warehouse` and reads through a
second client handle on the same engine (:func:`dashboard_reader`). clickhouse-connect's chDB client
is thread-safe (a per-handle lock serializes calls, and chDB releases the GIL while a query runs),
so sharing the writer's object would be safe too, but every dashboard query would then wait for,
and hold up, the pipeline's inserts on that one lock; a handle of its own lets the engine run
reads and inserts side by side.

Access: bound to a loopback address the dashboard is open to the local user. Bound anywhere else
it refuses to start without a password (Panel basic auth; the user name typed at login is who
sends kill-switch and limit commands).
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

from dashboards.context import DashboardContext

log = logging.getLogger("tapeflow.dashboard")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5006
START_TIMEOUT_S = 20.0


class DashboardAccessError(ValueError):
    """The dashboard would be reachable from other machines without a password."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def require_credentials(host: str, password: str | bool | None) -> None:
    """``password``: a shared password, or True when users sign in from the users file."""
    if not is_loopback(host) and not password:
        raise DashboardAccessError(
            f"refusing to serve the dashboard on {host} without sign-in: anyone who can reach it could "
            "switch the kill switch. Add users (`tapeflow users add NAME --role trader`), pass --password "
            "(or set TAPEFLOW_DASHBOARD_PASSWORD), or bind to 127.0.0.1."
        )


def dashboard_reader(warehouse: Any) -> tuple[Any, bool]:
    """The warehouse the dashboard should read through and whether the caller owns (must close) it:
    a second handle on the same chDB engine, or ``warehouse`` itself for a server URL (HTTP
    clients are independent already) or if a second handle cannot be opened."""
    if getattr(warehouse, "backend", None) != "chdb":
        return warehouse, False
    try:
        from sinks.warehouse import Warehouse

        return Warehouse.connect(warehouse.url, database=warehouse.database), True
    except Exception as exc:  # still correct through the shared client, only slower under load
        log.warning("dashboard shares the pipeline's warehouse client (no second chDB handle: %s)", exc)
        return warehouse, False


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _wait_listening(host: str, port: int, thread: Any, timeout_s: float) -> None:
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError(f"the dashboard server thread died while starting on {host}:{port}; see the log above")
        try:
            with socket.create_connection((target, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling a socket that is not listening yet: there is no event to wait on
    raise RuntimeError(f"the dashboard did not start listening on {host}:{port} within {timeout_s:g}s "
                       "(is the port taken? try --dashboard-port)")


@dataclass
class DashboardHandle:
    url: str
    host: str
    port: int
    _thread: Any
    _reader: Any = None

    def stop(self) -> None:
        """Stop the server thread and close the dashboard's own warehouse handle."""
        try:
            self._thread.stop()
            self._thread.join(timeout=10)
        finally:
            if self._reader is not None:
                self._reader.close()
                self._reader = None


def start_dashboard(
    ctx: DashboardContext,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    password: str | None = None,
    allow_origins: list[str] | None = None,
    own_reader: bool = True,
) -> DashboardHandle:
    """Serve the dashboard for ``ctx`` in a background thread; returns once it accepts connections.

    ``port`` 0 picks a free port. ``password``: required unless ``host`` is loopback; a JSON file
    of ``{"user": "password"}`` also works (Panel basic auth). ``allow_origins``: host:port values a
    browser may open the websocket from; default the address served (or any, on a wildcard bind).
    """
    import panel as pn

    from dashboards.app import build_dashboard, load_extension

    users = ctx.users if ctx.users is not None and ctx.users.configured else None
    if users is not None and password:
        raise DashboardAccessError(
            f"both a shared password and the users file {users.path} are configured: the users file signs "
            "people in by name; drop --password / TAPEFLOW_DASHBOARD_PASSWORD (or remove the users file)")
    require_credentials(host, password or (users is not None))
    port = port or free_port(host)
    reader, owned = dashboard_reader(ctx.warehouse) if own_reader else (ctx.warehouse, False)
    session_ctx = DashboardContext(**{**vars(ctx), "warehouse": reader})
    if allow_origins is None:
        wildcard = host in ("0.0.0.0", "::", "")
        allow_origins = ["*"] if wildcard else [f"{host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    auth: dict[str, Any] = {}
    if password:
        auth = {"basic_auth": password, "cookie_secret": secrets.token_hex(32)}
    elif users is not None:
        from tapeflow.dashboard_auth import users_auth_provider

        auth = {"auth_provider": users_auth_provider(users), "cookie_secret": secrets.token_hex(32)}
    load_extension()
    thread = pn.serve(
        lambda: build_dashboard(session_ctx),
        port=port, address=host, websocket_origin=allow_origins, show=False, threaded=True, verbose=False,
        title="tapeflow desk", **auth,
    )
    try:
        _wait_listening(host, port, thread, START_TIMEOUT_S)
    except Exception:
        thread.stop()
        if owned:
            reader.close()
        raise
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    url = f"http://{shown}:{port}/"
    access = ("password required" if password else f"users of {users.path} sign in" if users is not None
              else "local access only")
    log.info("dashboard at %s (%s)", url, access)
    return DashboardHandle(url, host, port, thread, reader if owned else None)
