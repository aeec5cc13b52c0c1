"""Operator commands to a running pipeline: the :class:`ControlSender` contract and the embedded
pipeline's control channel, a JSON-lines spool file.

A split deployment (stages over Kafka) hears its commands on the ``control`` topic instead
(``topics.control_sender.KafkaControlSender``); ``tapeflow control``, ``tapeflow models activate``
and the dashboard pick one of the two senders and otherwise build the same command.

``tapeflow control ...`` (and the dashboard) append one :class:`schemas.ControlCommand` per line;
the pipeline's control source reads the lines appended since it started. A file, rather than a
socket, needs no port, survives either side restarting, and is an audit trail of who did what.
Appends are single ``write`` calls of one line under an exclusive ``flock``, so concurrent
writers never interleave.
"""

from __future__ import annotations

import fcntl
import getpass
import os
import uuid
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from schemas import ControlCommand, ControlKind, now_ns


class ControlSender(Protocol):
    """Where operator commands go. ``send`` returns once the command is durably there (appended to
    the spool, acknowledged by the broker) and raises with the reason when it is not; ``where``
    names the destination for the operator's log."""

    @property
    def where(self) -> str: ...

    def send(self, command: ControlCommand) -> ControlCommand: ...


class ControlChannel:
    """The embedded pipeline's spool (a :class:`ControlSender`)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @property
    def where(self) -> str:
        return f"spool {self.path}"

    def send(self, command: ControlCommand) -> ControlCommand:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = command.to_json() + b"\n"
        with open(self.path, "ab") as spool:
            fcntl.flock(spool, fcntl.LOCK_EX)
            try:
                spool.write(line)
            finally:
                fcntl.flock(spool, fcntl.LOCK_UN)
        return command

    def end_offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def read_from(self, offset: int) -> tuple[list[ControlCommand], list[str], int]:
        """Commands in complete lines after ``offset``, unreadable lines (as text), the new offset."""
        if not self.path.exists():
            return [], [], offset
        with open(self.path, "rb") as spool:
            spool.seek(offset)
            data = spool.read()
        end = data.rfind(b"\n")
        if end < 0:
            return [], [], offset  # a line still being written
        commands, bad = [], []
        for line in data[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                commands.append(ControlCommand.model_validate_json(line))
            except ValidationError:
                bad.append(line.decode(errors="replace"))
        return commands, bad, offset + end + 1


def operator_name() -> str:
    try:
        return os.environ.get("TAPEFLOW_OPERATOR") or getpass.getuser()
    except Exception:  # no user database entry (containers): still say something
        return "unknown"


def make_command(kind: ControlKind, *, target: str = "global", name: str = "", value: float = 0.0,
                 issued_by: str | None = None, detail: str = "") -> ControlCommand:
    now = now_ns()
    return ControlCommand(
        id=f"ctl:{uuid.uuid4().hex}",
        ts_event=now,
        ts_ingest=now,
        target=target,
        kind=kind,
        name=name,
        value=value,
        issued_by=issued_by or operator_name(),
        detail=detail,
    )
