"""The trading desk app: a header (run, event time, trading state, kill switch, equity) over five
pages, refreshed in place by a periodic callback of each browser session.

A refresh reads the header's figures and the visible page only; it updates the pages' data
sources (Bokeh ``ColumnDataSource`` streams or ``.data``, Tabulator ``.value``) and never rebuilds
the layout, so zoom, filters and scroll positions survive it.
"""

from __future__ import annotations

import html
import logging
import time

import panel as pn

from dashboards import style
from dashboards.blotter import BlotterPage
from dashboards.context import DashboardContext
from dashboards.desk import DeskPage
from dashboards.market import MarketPage
from dashboards.queries import fetch
from dashboards.risk import RiskPage, current_user
from dashboards.snapshot import RunSnapshot
from dashboards.system import SystemPage

log = logging.getLogger("tapeflow.dashboard")
PAGES = (DeskPage, BlotterPage, MarketPage, RiskPage, SystemPage)
LISTS_EVERY_S = 5.0  # runs and the symbol/strategy universe change rarely


def load_extension() -> None:
    """Panel's client-side pieces (Tabulator) and the desk's CSS; once per process, before serving."""
    pn.extension("tabulator", design="bootstrap", theme="dark", raw_css=[style.CSS], notifications=False)


class DashboardSession:
    """One browser tab's dashboard."""

    def __init__(self, ctx: DashboardContext):
        self.ctx = ctx
        self.pages = [page(ctx) for page in PAGES]
        self.run = pn.widgets.Select(label="", options=[], width=280, margin=(4, 6))
        self.header = pn.pane.HTML(self._header_html(None, RunSnapshot(), 0.0, ""), sizing_mode="stretch_width",
                                   margin=0)
        self.tabs = pn.Tabs(*((p.title, p.view) for p in self.pages), dynamic=False, sizing_mode="stretch_width")
        self._lists_at = 0.0
        self._busy = False
        self._next_tick = 0.0  # the periodic refresh skips ticks until then (see tick)
        self.run.param.watch(self._on_run, "value")
        self.tabs.param.watch(lambda _e: self.refresh(), "active")
        blotter = self.pages[1]
        for widget in (blotter.strategy, blotter.symbol, blotter.state):
            widget.param.watch(lambda _e: self.refresh(), "value")
        market = self.pages[2]
        for widget in (market.symbol, market.interval):
            widget.param.watch(lambda _e: self.refresh(), "value")
        self.view = pn.Column(
            pn.Row(self.header, self.run, sizing_mode="stretch_width", styles={"background": style.PANEL}),
            self.tabs,
            sizing_mode="stretch_width", styles={"background": style.BG},
        )

    # ------------------------------------------------------------------------------ refresh

    def _on_run(self, _event) -> None:
        for page in self.pages:
            page.reset()
        self.refresh()

    def _refresh_lists(self) -> None:
        runs = fetch(self.ctx.warehouse, "runs")["run_id"].to_list()
        if self.ctx.run_id and self.ctx.run_id not in runs:
            runs.insert(0, self.ctx.run_id)  # asked for a run that has not landed a bar yet
        if runs != self.run.options:
            current = self.run.value
            self.run.options = runs
            if current not in runs and runs:
                self.run.value = self.ctx.run_id if self.ctx.run_id in runs else runs[0]
        if self.run.value:
            universe = fetch(self.ctx.warehouse, "universe", run_id=self.run.value)
            strategies = universe.filter(universe["kind"] == "strategy")["value"].to_list()
            symbols = universe.filter(universe["kind"] == "symbol")["value"].to_list()
            for page in self.pages:
                if hasattr(page, "set_universe"):
                    page.set_universe(strategies, symbols)

    def tick(self) -> None:
        """The periodic refresh. Queries run on the server's event loop, so a refresh that takes
        longer than the period (a loaded machine, a huge run) would leave no time for clicks: the
        next tick then waits at least as long as the last refresh took."""
        if time.monotonic() >= self._next_tick:
            started = time.monotonic()
            self.refresh()
            self._next_tick = time.monotonic() + (time.monotonic() - started)

    def refresh(self) -> None:
        if self._busy:  # a widget change during a refresh would re-enter it
            return
        self._busy = True
        started = time.perf_counter()
        error = ""
        try:
            if time.monotonic() - self._lists_at >= LISTS_EVERY_S or not self.run.value:
                self._lists_at = time.monotonic()
                self._refresh_lists()
            run_id = self.run.value
            snap = RunSnapshot()
            if run_id:
                snap = RunSnapshot.load(self.ctx.warehouse, run_id, self.ctx.account)
                self.pages[self.tabs.active].refresh(run_id, snap)
        except Exception as exc:  # keep the session alive; say what failed in the header
            log.exception("dashboard refresh failed")
            error = f"{type(exc).__name__}: {exc}"
            snap = RunSnapshot()
        finally:
            self._busy = False
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.header.object = self._header_html(self.run.value, snap, elapsed_ms, error)

    def _header_html(self, run_id: str | None, snap: RunSnapshot, elapsed_ms: float, error: str) -> str:
        f = snap.figures
        state = snap.trading_state.upper()
        state_tone = {"ACTIVE": "ok", "REDUCING": "warn"}.get(state, "bad")
        kill = ('<span class="tf-chip bad" data-chip="kill-switch">KILL SWITCH ON</span>' if snap.kill_switch_on
                else '<span class="tf-chip ok" data-chip="kill-switch">kill switch off</span>')
        equity = style.money(f.get("equity")) if f.get("snapshots") else "—"
        user = current_user() or "local"
        problem = f'<span class="tf-chip bad" title="{html.escape(error)}">refresh failed: ' \
                  f'{html.escape(error[:80])}</span>' if error else ""
        return (
            '<div class="tf-header"><span class="tf-brand">tapeflow desk</span>'
            f'<span class="tf-muted">run</span><b data-header="run">{html.escape(run_id or "no runs yet")}</b>'
            f'<span class="tf-muted">tape</span><b>{style.clock_ms(f.get("last_event"))} UTC</b>'
            f'<span class="tf-muted">account</span><b>{html.escape(self.ctx.account)}</b>'
            f'<span class="tf-muted">equity</span><b data-header="equity">{equity}</b>'
            f'<span class="tf-chip {state_tone}" data-chip="trading-state">{html.escape(state)}</span>{kill}{problem}'
            f'<span style="margin-left:auto" class="tf-muted">{html.escape(user)} · refresh {elapsed_ms:,.0f} ms · '
            f'{time.strftime("%H:%M:%S")}</span></div>'
        )


def build_dashboard(ctx: DashboardContext) -> pn.viewable.Viewable:
    """The app of one browser session; called by the Panel server for each new session."""
    session = DashboardSession(ctx)
    session.refresh()
    callback = pn.state.add_periodic_callback(session.tick, period=ctx.refresh_ms)
    pn.state.on_session_destroyed(lambda _ctx: callback.stop())
    return session.view
