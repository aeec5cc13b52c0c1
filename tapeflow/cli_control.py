"""Where ``tapeflow control ...``, ``tapeflow models activate|rollback`` and ``tapeflow dashboard``
send operator commands: the embedded pipeline's spool, or with ``--brokers`` (or
``TAPEFLOW_KAFKA_BOOTSTRAP``) the ``control`` topic the split stages read.

Every command that sends goes through :func:`send_control`, so one place decides the route; a
command declares ``brokers: Optional[str] = BROKERS_OPTION, prefix: str = PREFIX_OPTION`` and passes
them on.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:  # the records load with the command, not with `tapeflow --help`
    from config.control_channel import ControlSender
    from schemas import ControlCommand, ControlKind

BROKERS_ENV = "TAPEFLOW_KAFKA_BOOTSTRAP"

BROKERS_OPTION = typer.Option(
    None, "--brokers", envvar=BROKERS_ENV,
    help=f"Split deployment: produce to the control topic of this Kafka (host:port; env {BROKERS_ENV}). "
    "Without it (or with --brokers '') the command goes to the embedded pipeline's control spool.")
PREFIX_OPTION = typer.Option("", "--prefix", help="With --brokers: the topic prefix of the split run.")


class ControlRouteError(ValueError):
    """Options that name no route (a prefix without brokers): refused, never ignored."""


def route_brokers(brokers: Optional[str] = None, prefix: str = "") -> Optional[str]:
    """The Kafka bootstrap commands go to (``brokers``, else ``TAPEFLOW_KAFKA_BOOTSTRAP``), or None for
    the spool (``--brokers ''`` picks the spool even with the variable set); raises
    :class:`ControlRouteError` for a prefix with no Kafka."""
    if brokers is None:
        brokers = os.environ.get(BROKERS_ENV)
    brokers = brokers or None
    if prefix and not brokers:
        raise ControlRouteError(f"--prefix {prefix!r} names Kafka topics and needs --brokers (or {BROKERS_ENV}); "
                                "the embedded pipeline hears its commands on its spool file")
    return brokers


def control_sender(control_path: str, brokers: Optional[str] = None, prefix: str = "") -> "ControlSender":
    """The Kafka sender with ``brokers`` (else ``TAPEFLOW_KAFKA_BOOTSTRAP``), the spool otherwise."""
    brokers = route_brokers(brokers, prefix)
    if brokers:
        from topics.control_sender import KafkaControlSender

        return KafkaControlSender(brokers, prefix)
    from config.control_channel import ControlChannel

    return ControlChannel(control_path)


def build_command(kind: "ControlKind", *, name: str = "", value: float = 0.0, target: str = "global",
                  detail: str = "", issued_by: Optional[str] = None) -> "ControlCommand":
    """The command as every route carries it; ``issued_by`` defaults to the operator
    (``TAPEFLOW_OPERATOR``, else the login name)."""
    from config.control_channel import make_command

    return make_command(kind, target=target, name=name, value=value, detail=detail, issued_by=issued_by)


def send_control(kind: "ControlKind", *, name: str = "", value: float = 0.0, target: str = "global",
                 detail: str = "", brokers: Optional[str] = None, prefix: str = "") -> tuple["ControlCommand", str]:
    """Build and send one command; returns it and where it went. Exits 2 with the reason when the
    route is refused or the command is not delivered."""
    from config.settings import Settings

    try:
        sender = control_sender(Settings().control_path, brokers, prefix)
        command = sender.send(build_command(kind, name=name, value=value, target=target, detail=detail))
    except (ControlRouteError, RuntimeError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    return command, sender.where
