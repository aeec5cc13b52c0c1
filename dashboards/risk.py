"""Risk: trading state and breaker, the kill switch, cancel-all, flatten and resume (each with a
confirmation step), every limit with its current utilisation, limit changes, recent rejects and the
audit log of control records.

A command sent from here takes effect when the desk reads it; the banner shows the state the desk
reports back through the warehouse, not what was clicked.
"""

from __future__ import annotations

import html
import logging

import pandas as pd
import panel as pn
from bokeh.models import NumberFormatter

from dashboards import style
from dashboards.blotter import with_clock
from dashboards.context import DashboardContext
from dashboards.queries import fetch, fetch_one, limit_utilisation, limits_in_force
from dashboards.snapshot import RunSnapshot

log = logging.getLogger("tapeflow.dashboard.risk")

USED = {"type": "progress", "min": 0, "max": 100, "legend": True, "color": [style.UP, style.AMBER, style.DOWN]}
ADJUSTABLE = ("max_order_qty", "max_order_notional", "max_position_qty", "max_position_notional",
              "max_gross_notional", "max_net_notional", "max_open_orders", "max_orders_per_second",
              "max_orders_per_minute", "daily_loss_limit", "max_drawdown_pct", "price_collar_pct")


def current_user() -> str | None:
    """The logged-in user of this browser session (basic auth), if any."""
    return pn.state.user or None


class RiskPage:
    title = "Risk"

    def __init__(self, ctx: DashboardContext):
        self.ctx = ctx
        self.banner = pn.pane.HTML("", sizing_mode="stretch_width")
        self._kill_on = False
        self._pending: tuple[str, object] | None = None  # the action awaiting confirmation

        self.kill_button = pn.widgets.Button(label="Engage kill switch", color="danger", width=220)
        self.confirm_text = pn.pane.HTML("", sizing_mode="stretch_width")
        self.confirm_button = pn.widgets.Button(label="Confirm", color="danger", width=120, visible=False)
        self.cancel_button = pn.widgets.Button(label="Cancel", color="light", width=120, visible=False)
        self.outcome = pn.pane.HTML("", sizing_mode="stretch_width")
        self.kill_button.on_click(self._ask_kill)
        self.confirm_button.on_click(self._confirm)
        self.cancel_button.on_click(self._cancel)

        self.cancel_all_button = pn.widgets.Button(label="Cancel all orders", color="warning", width=170)
        self.flatten_button = pn.widgets.Button(label="Flatten positions", color="danger", width=170)
        self.resume_reason = pn.widgets.TextInput(placeholder="Why trading may resume", width=300)
        self.resume_button = pn.widgets.Button(label="Resume trading", color="success", width=170)
        self.cancel_all_button.on_click(self._ask_cancel_all)
        self.flatten_button.on_click(self._ask_flatten)
        self.resume_button.on_click(self._ask_resume)

        self.limit_name = pn.widgets.Select(label="Limit", options=list(ADJUSTABLE), width=200)
        self.limit_value = pn.widgets.FloatInput(label="New value", value=None, width=150)
        self.limit_button = pn.widgets.Button(label="Set limit", color="warning", width=120, align="end")
        self.limit_button.on_click(self._ask_limit)

        self.limits = pn.widgets.Tabulator(
            pd.DataFrame(columns=["limit", "current", "value", "used_pct", "changed_by"]), height=420,
            formatters={"current": NumberFormatter(format="0,0.[0000]"), "value": NumberFormatter(format="0,0.[0000]"),
                        "used_pct": USED},
            titles={"limit": "Limit", "current": "Now", "value": "Limit value", "used_pct": "Used %",
                    "changed_by": "Changed by"},
            **style.tabulator_options(),
        )
        self.rejects = pn.widgets.Tabulator(
            pd.DataFrame(columns=["time", "client_order_id", "symbol", "side", "quantity", "reasons"]), height=250,
            titles=style.titles(["time", "client_order_id", "symbol", "side", "quantity", "reasons"]),
            **style.tabulator_options(),
        )
        self.control_log = pn.widgets.Tabulator(
            pd.DataFrame(columns=["time", "kind", "target", "name", "value", "issued_by", "detail"]), height=250,
            titles=style.titles(["time", "kind", "target", "name", "value", "issued_by", "detail"]),
            **style.tabulator_options(),
        )
        self.viewer_note = pn.pane.HTML("", sizing_mode="stretch_width")
        if not ctx.operator.may_control(current_user()):
            # a viewer sees the controls greyed out; the desk refuses their commands anyway
            for widget in (self.kill_button, self.limit_button, self.confirm_button, self.cancel_all_button,
                           self.flatten_button, self.resume_button):
                widget.disabled = True
            self.viewer_note.object = ('<div class="tf-note">Signed in as a viewer: only traders may use the '
                                       'kill switch, cancel, flatten, resume and change limits.</div>')
        controls = pn.Column(
            self.viewer_note,
            pn.pane.HTML(style.section("Kill switch")),
            pn.Row(self.kill_button),
            pn.pane.HTML(style.section("Unwind and re-arm")),
            pn.Row(self.cancel_all_button, self.flatten_button),
            pn.Row(self.resume_reason, self.resume_button),
            pn.Row(self.confirm_text),
            pn.Row(self.confirm_button, self.cancel_button),
            pn.pane.HTML(style.section("Change a limit")),
            pn.Row(self.limit_name, self.limit_value, self.limit_button),
            self.outcome,
            width=520,
        )
        self.view = pn.Column(
            self.banner,
            pn.Row(
                controls,
                pn.Column(pn.pane.HTML(style.section("Limits and utilisation")), self.limits,
                          sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            pn.Row(
                pn.Column(pn.pane.HTML(style.section("Recent rejects")), self.rejects, sizing_mode="stretch_width"),
                pn.Column(pn.pane.HTML(style.section("Control log")), self.control_log, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    # ------------------------------------------------------------------------- confirmation

    def _ask(self, action: str, payload: object, question: str) -> None:
        self._pending = (action, payload)
        self.confirm_text.object = f'<div class="tf-banner warn">{html.escape(question)}</div>'
        self.confirm_button.visible = self.cancel_button.visible = True

    def _ask_kill(self, _event=None) -> None:
        turn_on = not self._kill_on
        question = ("Engage the kill switch? Every new order of every account is denied until it is released."
                    if turn_on else "Release the kill switch? New orders will be checked by risk again.")
        self._ask("kill_switch", turn_on, question)

    def _ask_cancel_all(self, _event=None) -> None:
        self._ask("cancel_all", None, f"Cancel every working order of account {self.ctx.account}? Positions stay open.")

    def _ask_flatten(self, _event=None) -> None:
        self._ask("flatten", None, f"Flatten account {self.ctx.account}? Every working order is canceled, then every "
                                   "position closed at market. New orders are still allowed unless the kill switch is on.")

    def _ask_resume(self, _event=None) -> None:
        reason = (self.resume_reason.value or "").strip()
        if not reason:
            self.outcome.object = '<div class="tf-note">Say why trading may resume first.</div>'
            return
        self._ask("resume", reason, f"Resume trading on account {self.ctx.account} (breaker re-armed)? "
                                    "Risk refuses it while today's loss is over daily_loss_limit.")

    def _ask_limit(self, _event=None) -> None:
        if self.limit_value.value is None:
            self.outcome.object = '<div class="tf-note">Enter a value for the limit first.</div>'
            return
        name, value = self.limit_name.value, float(self.limit_value.value)
        try:
            self.ctx.base_limits().with_limit(name, value)
        except ValueError as exc:
            self.outcome.object = f'<div class="tf-banner bad">{html.escape(str(exc))}</div>'
            return
        self._ask("set_limit", (name, value), f"Set {name} to {value:g} for account {self.ctx.account}?")

    def _cancel(self, _event=None) -> None:
        self._pending = None
        self.confirm_text.object = ""
        self.confirm_button.visible = self.cancel_button.visible = False

    def _confirm(self, _event=None) -> None:
        pending, user = self._pending, current_user()
        self._cancel()
        if pending is None:
            return
        action, payload = pending
        try:
            if action == "kill_switch":
                command = self.ctx.operator.kill_switch(bool(payload), user)
            elif action == "cancel_all":
                command = self.ctx.operator.cancel_all(user)
            elif action == "flatten":
                command = self.ctx.operator.flatten(user)
            elif action == "resume":
                command = self.ctx.operator.resume(str(payload), user)
                self.resume_reason.value = ""
            else:
                name, value = payload  # type: ignore[misc]
                command = self.ctx.operator.set_limit(name, value, user)
        except Exception as exc:  # the route says what failed (spool path, broker)
            log.error("operator command %s failed: %s", action, exc)
            self.outcome.object = f'<div class="tf-banner bad">Not sent: {html.escape(str(exc))}</div>'
            return
        what = f"{command.name} {command.value:g}" if action in ("kill_switch", "set_limit") else command.detail
        self.outcome.object = (
            f'<div class="tf-note">Sent {html.escape(command.kind.value)} {html.escape(what.strip())} '
            f'as {html.escape(command.issued_by)}; waiting for the desk to apply it.</div>')

    # ------------------------------------------------------------------------------ refresh

    def reset(self) -> None:
        for table in (self.limits, self.rejects, self.control_log):
            table.value = table.value.iloc[0:0]

    def refresh(self, run_id: str, snap: RunSnapshot) -> None:
        self._kill_on = snap.kill_switch_on
        self.kill_button.label = "Release kill switch" if snap.kill_switch_on else "Engage kill switch"
        self.kill_button.color = "success" if snap.kill_switch_on else "danger"
        self.banner.object = state_banner(snap)
        wh = self.ctx.warehouse
        changes = fetch(wh, "limit_changes", run_id=run_id, account=self.ctx.account)
        limits, changed_by = limits_in_force(changes, self.ctx.base_limits())
        usage = fetch_one(wh, "risk_usage", run_id=run_id)
        order_notional = fetch_one(wh, "max_order_notional", run_id=run_id).get("max_order_notional")
        rows = limit_utilisation(usage, limits, order_notional)
        self.limits.value = pd.DataFrame([{
            "limit": r["limit"], "current": r["current"], "value": r["value"],
            "used_pct": None if r["used"] is None else round(min(r["used"], 1.0) * 100, 1),
            "changed_by": changed_by.get(r["limit"], ""),
        } for r in rows], columns=["limit", "current", "value", "used_pct", "changed_by"])
        self.rejects.value = with_clock(fetch(wh, "rejects", run_id=run_id, strategy="", symbol="", limit=50),
                                        ["time", "client_order_id", "symbol", "side", "quantity", "reasons"])
        self.control_log.value = with_clock(
            fetch(wh, "control_log", run_id=run_id, limit=50),
            ["time", "kind", "target", "name", "value", "issued_by", "detail"])


def state_banner(snap: RunSnapshot) -> str:
    state = snap.trading_state.upper()
    tone = {"ACTIVE": "ok", "REDUCING": "warn"}.get(state, "bad")
    kill = (f'KILL SWITCH ON ({html.escape(snap.kill_switch_target)}, by {html.escape(snap.kill_switch_by)}): '
            'new orders denied' if snap.kill_switch_on else "Kill switch off")
    detail = f' <span class="tf-muted">{html.escape(snap.trading_state_detail)}</span>' if snap.trading_state_detail else ""
    return (f'<div style="display:flex;gap:8px"><div class="tf-banner {tone}" data-state="trading">Trading state: '
            f'{state}{detail}</div><div class="tf-banner {"bad" if snap.kill_switch_on else "ok"}" '
            f'data-state="kill-switch">{kill}</div></div>')
