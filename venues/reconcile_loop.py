"""Reconciliation during a run: the desk's book against the broker's, every N seconds.

Where tapeflow's side comes from. The desk's ledger and working orders live inside the dataflow,
on the desk's thread; a reconciler on another thread must not read them mid-update. So the venue
keeps a :class:`BookedView`, fed by the desk itself: ``TradingDesk`` calls the venue's
``on_booked(report)`` for every execution report right after booking it (fills, adoption records,
order state changes). The view is therefore exactly the ledger's net position per symbol and the
desk's working orders *as of the desk's current point*, readable from any thread.

Why a difference must be seen twice. Alpaca's REST state runs ahead of its trade_updates stream,
and the desk books a report a moment after the venue receives it: a fill in flight shows as a
position difference for a few milliseconds. :meth:`Reconciler.check` therefore looks twice,
``confirm_s`` apart, and reports only what both looks saw (``venues.reconcile.confirmed``).

What a difference does. Each *new* confirmed difference (a changed set of differences; the same
one lasting is not raised again) calls ``on_difference(report)`` once, which the run wires to an
alert (``reconciliation_difference``, critical) and, when configured, a halt of the account.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any, Callable, Iterable

from schemas import ExecutionReport
from venues.reconcile import QTY_TOLERANCE, ReconcileReport, confirmed, difference_keys, is_adoption

log = logging.getLogger(__name__)


class BookedView:
    """Net position per symbol and working orders, from the reports the desk booked. Thread-safe.

    Fills count once per ``(venue, fill_id)`` and adoption records once per id, as in the ledger."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._net: dict[str, float] = {}
        self._counted: set[tuple[str, str]] = set()
        self._working: dict[str, ExecutionReport] = {}  # client_order_id -> its latest report, while open
        self._awaited: set[str] = set()

    def expect(self, report_ids: Iterable[str]) -> None:
        """Reports handed to the desk (adoption at start) that it has not booked yet: until it has,
        the view is not the desk's yet and :attr:`settled` is False."""
        with self._lock:
            self._awaited.update(report_ids)

    @property
    def settled(self) -> bool:
        with self._lock:
            return not self._awaited

    def on_report(self, report: ExecutionReport) -> None:
        with self._lock:
            self._awaited.discard(report.id)
            if report.is_fill:
                self._move(report, (report.venue, report.fill_id))
            elif is_adoption(report):
                self._move(report, ("adoption", report.id))
                return  # an adopted position is no order
            if report.state.is_terminal or report.leaves_qty <= QTY_TOLERANCE:
                self._working.pop(report.client_order_id, None)
            else:
                self._working[report.client_order_id] = report

    def _move(self, report: ExecutionReport, key: tuple[str, str]) -> None:
        if key in self._counted:
            return
        self._counted.add(key)
        net = self._net.get(report.symbol, 0.0) + report.side.sign * report.last_qty
        self._net[report.symbol] = 0.0 if abs(net) <= QTY_TOLERANCE else net

    def positions(self) -> dict[str, float]:
        with self._lock:
            return {symbol: qty for symbol, qty in self._net.items() if qty}

    def working_orders(self) -> list[ExecutionReport]:
        with self._lock:
            return list(self._working.values())


class Reconciler:
    """``venue``: anything with ``booked`` (a :class:`BookedView`) and ``reconcile(positions,
    open_orders)`` returning a :class:`ReconcileReport` (``AlpacaVenue``). ``interval_s`` 0: no
    loop, checks only when called. ``sleep(seconds) -> bool`` waits and says whether to stop
    (default: the stop event's wait), so tests run the confirmation without a clock."""

    def __init__(self, venue: Any, on_difference: Callable[[ReconcileReport], None], *, interval_s: float = 60.0,
                 confirm_s: float = 2.0, sleep: Callable[[float], bool] | None = None):
        self.venue = venue
        self.on_difference = on_difference
        self.interval_s = interval_s
        self.confirm_s = confirm_s
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._thread: threading.Thread | None = None
        self._raised: frozenset = frozenset()  # the differences last raised; empty while clean
        self.checks = 0
        self.raised = 0
        self.failures = 0
        self.last: ReconcileReport | None = None

    def look(self) -> ReconcileReport:
        """One comparison of the broker with the desk's booked view (no confirmation)."""
        booked = self.venue.booked
        return self.venue.reconcile(booked.positions(), booked.working_orders())

    def check(self) -> ReconcileReport:
        """Look, and if anything differs look again after ``confirm_s``: the confirmed differences.
        A new set of them is passed to ``on_difference`` once."""
        self.checks += 1
        report = self.look()
        if not report.clean:
            if self._sleep(self.confirm_s):
                return report
            report = confirmed(report, self.look())
        self.observe(report)
        return report

    def observe(self, report: ReconcileReport) -> bool:
        """Raise ``report`` unless it is clean or the differences raised last; True if raised."""
        self.last = report
        now = frozenset(_signature(report))
        if now == self._raised:
            return False
        self._raised = now
        if report.clean:
            log.info("reconciliation: clean again")
            return False
        self.raised += 1
        log.warning("reconciliation: %s", report.summary().replace("\n", "; "))
        self.on_difference(report)
        return True

    # ------------------------------------------------------------------ the loop

    def start(self) -> "Reconciler":
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="reconcile", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.venue.booked.settled:
                continue  # the desk has not booked what was adopted at start yet: not a difference
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - a failed look (network, 5xx) must not end the loop
                self.failures += 1
                log.warning("reconciliation with the broker failed (%s: %s); next in %gs", type(exc).__name__,
                            str(exc)[:200], self.interval_s)


def _signature(report: ReconcileReport) -> Iterable[tuple]:
    yield from difference_keys(report)
    for d in report.position_diffs:  # a position that drifts further is a new difference
        yield ("position_qty", d.symbol, round(d.difference, 9))


def difference_id(report: ReconcileReport) -> str:
    """A short stable id of a set of differences (the same differences, the same alert id)."""
    return hashlib.sha1(repr(sorted(_signature(report))).encode()).hexdigest()[:16]
