"""Operator commands from the dashboard: the kill switch, limit changes, cancel-all, flatten and resume.

Commands go through a :class:`config.control_channel.ControlSender`: the running embedded pipeline's
spool, or in split mode the ``control`` Kafka topic (``topics.control_sender``; ``tapeflow dashboard
--brokers`` picks it, as ``tapeflow control`` does). Either way the command carries who sent it
(``issued_by``) and is logged here, so the warehouse's control table and the log both say who
stopped the desk and when.
"""

from __future__ import annotations

import logging
from typing import Any

from schemas import ControlCommand, ControlKind
from config.control_channel import ControlSender, make_command, operator_name
from config.users import UsersFile

log = logging.getLogger("tapeflow.dashboard.operator")


class OperatorDesk:
    """Sends one account's operator commands through a sender and logs who sent what."""

    def __init__(self, sender: ControlSender, account: str = "paper", users: UsersFile | None = None):
        self.sender = sender
        self.account = account
        self.users = users if users is not None and users.configured else None

    def may_control(self, user: str | None) -> bool:
        """With users configured, only an authenticated trader sends commands; without, anyone local."""
        if self.users is None:
            return True
        known = self.users.user(user)
        return known is not None and known.may_control

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
        if not self.may_control(user):
            log.warning("operator command %s refused: %s is not a trader", kind.value, user)
            raise PermissionError(f"{user or 'an unknown user'} may not send operator commands: only users with "
                                  "the trader role may (`tapeflow users add NAME --role trader`)")
        issued_by = user or operator_name()
        command = make_command(kind, issued_by=issued_by, **fields)
        self.sender.send(command)
        where = self.sender.where
        log.warning("operator %s sent %s %s=%g to %s via %s (command %s)", issued_by, kind.value,
                    command.name or "value", command.value, command.target, where, command.id)
        return command
