"""System: rows landed per stage, tick-to-order and tick-to-fill latency, dead letters by reason,
consumer lag (split mode) and the model version the strategies are running."""

from __future__ import annotations

import html
import logging
import time

import pandas as pd
import panel as pn
import polars as pl
from bokeh.models import ColumnDataSource, NumberFormatter, NumeralTickFormatter

from dashboards import style
from dashboards.context import DashboardContext
from dashboards.lag import consumer_lag
from dashboards.queries import fetch
from dashboards.snapshot import RunSnapshot

log = logging.getLogger("tapeflow.dashboard.system")
LAG_EVERY_S = 5.0  # the brokers are asked at most this often, whatever the refresh rate
PATHS = (("tick_to_order", "Tick to order"), ("tick_to_fill", "Tick to fill"))


class SystemPage:
    title = "System"

    def __init__(self, ctx: DashboardContext):
        self.ctx = ctx
        self.model = pn.pane.HTML("", sizing_mode="stretch_width")
        self.throughput = pn.widgets.Tabulator(
            pd.DataFrame(columns=["table", "rows", "rows_per_s", "last_write_s_ago"]), height=420,
            formatters={"rows": NumberFormatter(format="0,0", text_align="right"),
                        "rows_per_s": NumberFormatter(format="0,0.0", text_align="right"),
                        "last_write_s_ago": NumberFormatter(format="0.0", text_align="right")},
            titles={"table": "Stage table", "rows": "Rows", "rows_per_s": "Rows/s (last min)",
                    "last_write_s_ago": "Last write (s ago)"},
            **style.tabulator_options(),
        )
        self.histograms: dict[str, ColumnDataSource] = {}
        self.latency_figs = {}
        for path, label in PATHS:
            source = ColumnDataSource({"left": [], "right": [], "n": []})
            fig = style.desk_figure(height=220, title=f"{label} latency (ms)", datetime_x=False, x_axis_type="log")
            fig.xaxis.formatter = NumeralTickFormatter(format="0,0.[00]")
            fig.xaxis.axis_label = "ms (log scale)"
            fig.xaxis.axis_label_text_color = style.MUTED
            fig.quad(left="left", right="right", bottom=0, top="n", source=source, fill_color=style.ACCENT,
                     line_color=style.BG, alpha=0.85)
            fig.tools = [t for t in fig.tools if type(t).__name__ != "HoverTool"]
            self.histograms[path], self.latency_figs[path] = source, fig
        self.dlq = pn.widgets.Tabulator(pd.DataFrame(columns=["stage", "reason", "records", "last"]), height=200,
                                        titles=style.titles(["stage", "reason", "records", "last"]),
                                        **style.tabulator_options())
        self.lag = pn.widgets.Tabulator(pd.DataFrame(columns=["group", "topic", "lag"]), height=200,
                                        titles=style.titles(["group", "topic", "lag"]), **style.tabulator_options())
        self.lag_note = pn.pane.HTML("", sizing_mode="stretch_width")
        self._lag_at = 0.0
        self.view = pn.Column(
            self.model,
            pn.Row(
                pn.Column(pn.pane.HTML(style.section("Throughput per stage (rows landed)")), self.throughput,
                          sizing_mode="stretch_width"),
                pn.Column(*(pn.pane.Bokeh(self.latency_figs[p]) for p, _ in PATHS), sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            pn.Row(
                pn.Column(pn.pane.HTML(style.section("Dead letters by reason")), self.dlq, sizing_mode="stretch_width"),
                pn.Column(pn.pane.HTML(style.section("Consumer lag")), self.lag_note, self.lag,
                          sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )
        if not ctx.brokers:
            self.lag_note.object = '<div class="tf-note">n/a in embedded mode: no Kafka brokers (run with --brokers).</div>'
            self.lag.visible = False

    def reset(self) -> None:
        for source in self.histograms.values():
            source.data = {"left": [], "right": [], "n": []}

    def refresh(self, run_id: str, snap: RunSnapshot) -> None:
        wh = self.ctx.warehouse
        self.throughput.value = throughput_rows(fetch(wh, "throughput", run_id=run_id))
        summary = {r["path"]: r for r in fetch(wh, "latency_summary", run_id=run_id).iter_rows(named=True)}
        histogram = fetch(wh, "latency_histogram", run_id=run_id)
        for path, label in PATHS:
            buckets = histogram.filter(pl.col("path") == path)
            logs = buckets["log_us"].to_list()
            self.histograms[path].data = {
                "left": [10 ** (b - 0.05) / 1000 for b in logs], "right": [10 ** (b + 0.05) / 1000 for b in logs],
                "n": buckets["n"].to_list(),
            }
            s = summary.get(path)
            self.latency_figs[path].title.text = (
                f"{label} latency (ms): n {s['n']:,}   p50 {s['p50_us'] / 1000:,.1f}   p99 {s['p99_us'] / 1000:,.1f}   "
                f"max {s['max_us'] / 1000:,.1f}" if s else f"{label} latency: no orders yet")
        dlq = fetch(wh, "dlq_reasons", run_id=run_id).to_dicts()
        self.dlq.value = pd.DataFrame([{"stage": r["stage"], "reason": r["reason"], "records": r["records"],
                                        "last": style.clock_ms(r["last_t"])} for r in dlq],
                                      columns=["stage", "reason", "records", "last"])
        models = fetch(wh, "model_versions", run_id=run_id).to_dicts()
        self.model.object = model_line(models)
        if self.ctx.brokers and time.monotonic() - self._lag_at >= LAG_EVERY_S:
            self._lag_at = time.monotonic()
            try:
                self.lag.value = pd.DataFrame(consumer_lag(self.ctx.brokers), columns=["group", "topic", "lag"])
                self.lag_note.object = ""
            except Exception as exc:  # a broker that is down must not break the page
                log.warning("consumer lag from %s failed: %s", self.ctx.brokers, exc)
                self.lag_note.object = f'<div class="tf-note">lag unavailable from {html.escape(self.ctx.brokers)}: ' \
                                       f'{html.escape(str(exc))}</div>'


def throughput_rows(frame: pl.DataFrame) -> pd.DataFrame:
    rows = []
    for r in frame.iter_rows(named=True):
        age = None if not r["rows_total"] else max(0.0, (r["now_ms"] - r["last_write_ms"]) / 1000)
        rows.append({"table": r["table_name"], "rows": r["rows_total"], "rows_per_s": r["rows_per_s"],
                     "last_write_s_ago": age})
    rows.sort(key=lambda r: -r["rows"])
    return pd.DataFrame(rows, columns=["table", "rows", "rows_per_s", "last_write_s_ago"])


def model_line(models: list[dict]) -> str:
    if not models:
        return '<div class="tf-note">No signals yet: model version unknown.</div>'
    chips = " ".join(
        f'<span class="tf-chip ok">{html.escape(m["strategy"])} v{html.escape(m["strategy_version"])} · model '
        f'{html.escape(m["model_version"] or "rule-based (no model)")}</span>' for m in models)
    return f'<div class="tf-header" style="border:1px solid #1e2733">Strategies in use: {chips}</div>'
