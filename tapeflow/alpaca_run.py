"""``tapeflow run --venue alpaca``: the venue, its start reconciliation (``--adopt``) and the
reconciliation loop of the run (venues/reconcile_loop.py).

- At start the broker's open orders and positions are compared with the (empty) ledger. With
  ``adopt`` its positions are taken into the ledger as adoption records and its open orders are
  tracked; without, anything there is a difference: an alert (and a halt when configured).
- Every ``TAPEFLOW_RECONCILE_INTERVAL_S`` seconds (0: never) the broker is compared with the desk's
  booked view; a new confirmed difference raises ``reconciliation_difference`` (critical) through
  the run's AlertMonitor and, with ``TAPEFLOW_RECONCILE_HALT=1``, halts the account: a
  ``TRADING_STATE halted`` command issued by ``reconcile``, handed to the desk with the venue's
  reports (so it cannot be missed the way a spool line written before the run starts would be);
  the desk applies it and lands it in the control table.
"""

from __future__ import annotations

from typing import Callable

from config.settings import Settings
from schemas import ControlCommand, ControlKind, now_ns
from sinks.alerts import Alert, AlertMonitor
from venues.reconcile import ReconcileReport
from venues.reconcile_loop import Reconciler, difference_id

ISSUER = "reconcile"

RECONCILE_SETTINGS = ("reconcile_interval_s", "reconcile_confirm_s", "reconcile_halt")


def reconcile_refusal(settings: Settings, adopt: bool, venue: str, brokers: str | None, no_trading: bool) -> str:
    """Why ``--adopt`` or a TAPEFLOW_RECONCILE_* setting someone set cannot act in this run, or ""."""
    given = sorted(f"TAPEFLOW_{name.upper()}" for name in RECONCILE_SETTINGS if name in settings.model_fields_set)
    if not adopt and not given:
        return ""
    what = ", ".join((["--adopt"] if adopt else []) + given)
    if venue != "alpaca":
        return f"{what}: reconciliation is with Alpaca and needs --venue alpaca (the simulated venue starts flat)"
    if brokers:
        return (f"{what} with --brokers: in the split topology the trading stage reconciles with Alpaca on the "
                "defaults (differences in its log) but cannot adopt positions or be configured yet; use the embedded "
                "run (without --brokers)")
    if no_trading:
        return f"{what}: reconciliation books into the desk's ledger and --no-trading runs no desk"
    return ""


def one_line(report: ReconcileReport) -> str:
    """The report's summary on one line (alert texts and control details are single lines)."""
    head, *lines = report.summary().split("\n")
    return head + (" " + "; ".join(line.strip() for line in lines) if lines else "")


def halt_command(account: str, report: ReconcileReport, key: str) -> ControlCommand:
    now = now_ns()
    return ControlCommand(id=f"reconcile:{account}:halt:{key}", ts_event=now, ts_ingest=now, target=account,
                          kind=ControlKind.TRADING_STATE, name="halted", issued_by=ISSUER,
                          detail=one_line(report)[:1000])


def difference_handler(venue, account: str, alerts: AlertMonitor | None, halt: bool) -> Callable[[ReconcileReport], None]:
    """What a new difference does: an alert, and a halt of ``account`` when ``halt``."""
    raised = [0]

    def on_difference(report: ReconcileReport) -> None:
        raised[0] += 1
        key = f"{difference_id(report)}:{raised[0]}"
        text = one_line(report) + ("; trading halted" if halt else "")
        if alerts is not None:
            alerts.raise_alert(Alert("reconciliation_difference", "critical", text, account, key=key))
        if halt:
            venue.hand_over([halt_command(account, report, key)])

    return on_difference


def start_alpaca_venue(settings: Settings, live: bool, alerts: AlertMonitor | None = None, *, adopt: bool = False,
                       say: Callable[[str], None] = print, venue=None):
    """``(venue, reconciler)``: the started venue, reconciled at start, and its reconciliation loop,
    running (stop both at the end of the run). ``venue``: an AlpacaVenue to use instead of a new one."""
    if venue is None:
        from config.alpaca_settings import require_keys
        from venues.alpaca import AlpacaVenue

        venue = AlpacaVenue(require_keys(), paper=not live, live=live, account=settings.account)
    venue.start()
    report = venue.reconcile({}, [], adopt=adopt)
    say(f"alpaca reconciliation at start: {report.summary()}")
    reconciler = Reconciler(venue, difference_handler(venue, settings.account, alerts, settings.reconcile_halt),
                            interval_s=settings.reconcile_interval_s, confirm_s=settings.reconcile_confirm_s)
    if adopt:
        adopted = list(report.adjustments)
        venue.booked.expect(r.id for r in adopted)
        venue.hand_over(adopted)
        unpriced = [d.symbol for d in report.position_diffs if d.venue_avg_price <= 0]
        say(f"adopted from Alpaca: {len(adopted)} record(s)"
            + (f"; not adoptable (no average entry price): {', '.join(unpriced)}" if unpriced else ""))
    else:
        reconciler.observe(report)  # the start's differences are raised (and halt) like any later one
    say("alpaca reconciliation every "
        + (f"{settings.reconcile_interval_s:g}s" if settings.reconcile_interval_s > 0 else "- (start only)")
        + (", a difference halts trading" if settings.reconcile_halt else ""))
    return venue, reconciler.start()
