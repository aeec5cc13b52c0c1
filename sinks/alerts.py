"""Alerts: what a person must hear about at once, decided from the records that land.

The warehouse sink sees every record of a run in both topologies, so the alert rules watch there:

- a breaker trip: a ``trading_state`` control record issued by risk (``reducing``: warning,
  ``halted``: critical);
- the kill switch: a ``kill_switch`` control record (on: critical, off: info);
- an ``alert`` control record from a stage (risk refusing a command, the split run's supervisor
  restarting a stage, its lag monitor, the Alpaca venue's reconciliation): paged as it is (it is a
  row of the control table already, so it lands once);
- dead letters over a rate: more than ``dead_letters_per_minute`` dlq records within a minute of
  wall-clock time, once per minute, with the top reasons.

Alerts raised outside the tape (``AlertMonitor.raise_alert``: an Alpaca stream reconnecting or
gone silent, a reconciliation difference, a stage's lag growing) take the same way out.

Each alert becomes a ``control`` record of kind ``alert`` (issued by ``alerts``, ``name`` the alert
code, ``detail`` its text), landed with the run, and a POST to the configured webhook
(:class:`sinks.webhook.WebhookNotifier`), which never blocks the tape. Records issued by ``alerts``
are not alerted on again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

from schemas import ControlCommand, ControlKind, DeadLetter, Record, now_ns

ISSUER = "alerts"
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Alert:
    code: str  # breaker_tripped, kill_switch, dead_letters, stage_restarted, stage_lag, alpaca_stream, ...
    severity: str
    text: str
    target: str = "global"
    ts_event: int = 0
    key: str = ""  # what the alert is about (the source record's id): the same cause, the same alert id
    land: bool = True  # False: the alert is a record that lands anyway (a stage's own alert record)

    def to_record(self) -> ControlCommand:
        ts = self.ts_event or now_ns()
        # deterministic for alerts on records: a replayed record lands the same alert row again,
        # which the control table's ReplacingMergeTree keeps once
        return ControlCommand(id=f"alert:{self.code}:{self.target}:{self.key or ts}",
                              ts_event=ts, ts_ingest=now_ns(), target=self.target, kind=ControlKind.ALERT,
                              name=self.code, value=float(SEVERITIES.index(self.severity)), issued_by=ISSUER,
                              detail=f"[{self.severity}] {self.text}")

    def message(self, run_id: str) -> str:
        return f"tapeflow {self.severity.upper()} {self.code} (run {run_id}, {self.target}): {self.text}"


class AlertRules:
    """The pure part: records in, alerts out. ``clock`` is wall-clock seconds (dead-letter rate)."""

    def __init__(self, dead_letters_per_minute: int = 100, clock: Callable[[], float] = time.monotonic):
        self.dead_letters_per_minute = dead_letters_per_minute
        self._clock = clock
        self._dlq_window_start: float | None = None
        self._dlq_reasons: Counter[str] = Counter()
        self._dlq_alerted = False
        self._dlq_first_id = ""

    def observe(self, records: Iterable[Record]) -> list[Alert]:
        alerts = []
        for record in records:
            if isinstance(record, ControlCommand):
                alert = self._control(record)
                if alert is not None:
                    alerts.append(alert)
            elif isinstance(record, DeadLetter):
                alert = self._dead_letter(record)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def _control(self, cmd: ControlCommand) -> Alert | None:
        if cmd.issued_by == ISSUER:
            return None
        if cmd.kind is ControlKind.TRADING_STATE and cmd.issued_by == "risk":
            severity = "critical" if cmd.name == "halted" else "warning" if cmd.name == "reducing" else "info"
            return Alert("breaker_tripped" if cmd.name != "active" else "breaker_rearmed", severity,
                         f"account {cmd.target} is now {cmd.name.upper()}: {cmd.detail or 'breaker'}", cmd.target,
                         cmd.ts_event, cmd.id)
        if cmd.kind is ControlKind.KILL_SWITCH:
            on = cmd.value == 1.0
            return Alert("kill_switch", "critical" if on else "info",
                         f"kill switch {'ON' if on else 'off'} for {cmd.target} by {cmd.issued_by}"
                         + (f": {cmd.detail}" if cmd.detail else ""), cmd.target, cmd.ts_event, cmd.id)
        if cmd.kind is ControlKind.ALERT:
            return Alert(cmd.name or "alert", "warning", f"{cmd.detail} (from {cmd.issued_by})", cmd.target,
                         cmd.ts_event, cmd.id, land=False)
        return None

    def _dead_letter(self, letter: DeadLetter) -> Alert | None:
        now = self._clock()
        if self._dlq_window_start is None or now - self._dlq_window_start >= 60.0:
            self._dlq_window_start, self._dlq_reasons, self._dlq_alerted = now, Counter(), False
            self._dlq_first_id = letter.id
        self._dlq_reasons[f"{letter.stage}/{letter.reason}"] += 1
        total = sum(self._dlq_reasons.values())
        if self._dlq_alerted or total <= self.dead_letters_per_minute:
            return None
        self._dlq_alerted = True
        top = ", ".join(f"{reason} {n}" for reason, n in self._dlq_reasons.most_common(3))
        return Alert("dead_letters", "warning", f"over {self.dead_letters_per_minute} dead letters within a minute "
                     f"({top})", "global", letter.ts_event, self._dlq_first_id)


class AlertMonitor:
    """Rules, plus the way out: records to land and webhook posts. Thread-safe ``raise_alert``.

    ``observe(records)`` returns the alert records to land beside them (in the control table), plus
    any raised from outside the tape since the last call. ``notifier`` is anything with
    ``post(text)`` (a WebhookNotifier), or None to land alerts without posting.
    """

    def __init__(self, run_id: str, rules: AlertRules | None = None, notifier=None):
        self.run_id = run_id
        self.rules = rules or AlertRules()
        self.notifier = notifier
        self._lock = threading.Lock()
        self._raised: list[Alert] = []
        self.alerts: list[Alert] = []  # every alert of this process, for tests and the run summary

    def raise_alert(self, alert: Alert) -> None:
        self._post(alert)
        with self._lock:
            self._raised.append(alert)

    def observe(self, records: Iterable[Record]) -> list[ControlCommand]:
        alerts = self.rules.observe(records)
        for alert in alerts:
            self._post(alert)
        with self._lock:
            raised, self._raised = self._raised, []
        return [alert.to_record() for alert in raised + alerts if alert.land]

    def pending(self) -> list[ControlCommand]:
        """Alerts raised from outside the tape and not landed yet (the sink drains them on flush)."""
        with self._lock:
            raised, self._raised = self._raised, []
        return [alert.to_record() for alert in raised]

    def _post(self, alert: Alert) -> None:
        self.alerts.append(alert)
        if self.notifier is not None:
            self.notifier.post(alert.message(self.run_id))


class LagWatch:
    """A split stage whose lag has grown for longer than ``growing_s`` (wall clock) raises one alert;
    it may raise another once its lag has fallen back (caught up) and grows again."""

    def __init__(self, growing_s: float = 30.0):
        self.growing_s = growing_s
        self._since: dict[str, tuple[float, int]] = {}  # stage -> (growing since, lag then)
        self._last: dict[str, int] = {}
        self._alerted: set[str] = set()

    def observe(self, lags: dict[str, int], now: float) -> list[Alert]:
        alerts = []
        for stage, lag in lags.items():
            last = self._last.get(stage)
            self._last[stage] = lag
            if last is None or lag <= last:
                if last is not None and lag < last:
                    self._since.pop(stage, None)
                    if lag == 0:
                        self._alerted.discard(stage)
                continue
            since, at_start = self._since.setdefault(stage, (now, last))
            if now - since >= self.growing_s and stage not in self._alerted:
                self._alerted.add(stage)
                alerts.append(Alert("stage_lag", "warning",
                                    f"stage {stage}: lag grew from {at_start:,} to {lag:,} messages over "
                                    f"{now - since:.0f}s: it is falling behind the tape", f"stage:{stage}",
                                    key=f"{stage}:{int(since)}"))
        return alerts
