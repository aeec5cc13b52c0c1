"""Operator commands from the dashboard: the kill switch, limit changes, cancel-all, flatten and resume.

Embedded mode appends to the running pipeline's control spool (``config.control_channel``); split mode
produces to the ``control`` Kafka topic. Either way the command carries who sent it
(``issued_by``) and is logged here, so the warehouse's control table and the log both say who
stopped the desk and when.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from schemas import ControlCommand, ControlKind
from config.control_channel import ControlChannel, make_command, operator_name

log = logging.getLogger("tapeflow.dashboard.operator")


class CommandRoute(Protocol):
    def deliver(self, command: ControlCommand) -> str: ...


class SpoolRoute:
    """The embedded pipeline's control spool file."""

    def __init__(self, control_path: str):
        self.channel = ControlChannel(control_path)

    def deliver(self, command: ControlCommand) -> str:
        self.channel.send(command)
        return f"spool {self.channel.path}"


class KafkaRoute:
    """The ``control`` topic of a split deployment; delivery is confirmed before returning."""

    def __init__(self, brokers: str, timeout_s: float = 5.0):
        from confluent_kafka import Producer

        self.brokers = brokers
        self.timeout_s = timeout_s
        self._producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True})

    def deliver(self, command: ControlCommand) -> str:
        from topics.serde import encode

        message = encode("control", command)
        failures: list[Any] = []
        self._producer.produce(
            message.topic, key=message.key, value=message.value, headers=list(message.headers),
            on_delivery=lambda err, _msg: failures.append(err) if err else None,
        )
        if self._producer.flush(self.timeout_s) > 0:
            raise RuntimeError(f"control command not delivered to {self.brokers} within {self.timeout_s:g}s: "
                               "is the broker up?")
        if failures:
            raise RuntimeError(f"control command refused by {self.brokers}: {failures[0]}")
        return f"kafka {self.brokers} topic control"


class OperatorDesk:
    """Sends one account's operator commands through a route and logs who sent what."""

    def __init__(self, route: CommandRoute, account: str = "paper"):
        self.route = route
        self.account = account

    @classmethod
    def for_mode(cls, control_path: str, brokers: str | None, account: str) -> "OperatorDesk":
        return cls(KafkaRoute(brokers) if brokers else SpoolRoute(control_path), account)

    def kill_switch(self, on: bool, user: str | None, target: str = "global") -> ControlCommand:
        return self._send(ControlKind.KILL_SWITCH, user, target=target, value=1.0 if on else 0.0,
                          detail="kill switch " + ("on" if on else "off") + " from the dashboard")

    def set_limit(self, name: str, value: float, user: str | None, target: str | None = None) -> ControlCommand:
        return self._send(ControlKind.SET_LIMIT, user, target=target or self.account, name=name, value=value,
                          detail=f"{name} = {value:g} from the dashboard")

    def cancel_all(self, user: str | None, target: str | None = None) -> ControlCommand:
        return self._send(ControlKind.CANCEL_ALL, user, target=target or self.account,
                          detail="cancel-all from the dashboard")

    def flatten(self, user: str | None, target: str | None = None) -> ControlCommand:
        return self._send(ControlKind.FLATTEN, user, target=target or self.account, detail="flatten from the dashboard")

    def resume(self, reason: str, user: str | None, target: str | None = None) -> ControlCommand:
        if not reason.strip():
            raise ValueError("resume needs a reason: it is the audit trail of why trading restarted")
        return self._send(ControlKind.RESUME, user, target=target or self.account, detail=reason.strip())

    def _send(self, kind: ControlKind, user: str | None, **fields: Any) -> ControlCommand:
        issued_by = user or operator_name()
        command = make_command(kind, issued_by=issued_by, **fields)
        where = self.route.deliver(command)
        log.warning("operator %s sent %s %s=%g to %s via %s (command %s)", issued_by, kind.value,
                    command.name or "value", command.value, command.target, where, command.id)
        return command
